"""A store path the agent would refuse is refused by the console's form, with the agent's
own message, before any store or job exists (issue 17, "stores that cannot be wrong").

A real agent registered with known store roots reports them (``POST limits``); the
orchestrator page shows them; the add-store form, in Chromium, refuses a path outside them
and a relative one, shows only the chosen type's properties, and accepts a path inside.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from orchestrators.roots import store_path_problem
from tests.e2e.conftest import LivePlatform, orchestrator_named, wait_for
from tests.e2e.test_console_browser import browser  # noqa: F401 (the module's Chromium)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _stores_of(api: httpx.Client, orchestrator_id: str) -> list[dict]:
    answer = api.get("stores/", params={"page_size": 500})
    assert answer.status_code == 200, answer.text
    return [s for s in answer.json()["results"] if s["orchestrator"] == orchestrator_id]


def _jobs_of(api: httpx.Client, orchestrator_id: str) -> list[dict]:
    answer = api.get("jobs/", params={"orchestrator": orchestrator_id, "page_size": 500})
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def _log_in(page: object, platform: LivePlatform) -> None:
    from playwright.sync_api import expect

    page.goto("/login/")
    page.fill("input[name=username]", platform.admin_username)
    page.fill("input[name=password]", platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_an_out_of_roots_store_path_is_refused_by_the_form_before_any_job_exists(
    live_platform: LivePlatform,
    agent_factory,
    browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    # The agent's one store root is the test's folder (agent_factory: --store-root).
    root = str(tmp_path)
    inside = tmp_path / "site-certs"
    inside.mkdir()
    outside = "/etc/ssl/certs"
    agent = agent_factory("path-agent")
    agent.start()
    with live_platform.api() as api:
        orchestrator = wait_for(
            lambda: next(
                (
                    o
                    for o in api.get("orchestrators/").json()["results"]
                    if o["name"] == "path-agent"
                ),
                None,
            ),
            timeout=30,
            what="the orchestrator path-agent",
        )
        oid = orchestrator["id"]
        assert api.post(f"orchestrators/{oid}/approve/").status_code == 200
        # The agent reports its roots after each session it opens (POST limits).
        reported = wait_for(
            lambda: (o := api.get(f"orchestrators/{oid}/").json())["store_roots"] and o,
            timeout=60,
            what=f"the agent to report its store roots\n{agent.log()[-2000:]}",
        )
        assert reported["store_roots"] == [root]
        assert reported["max_file_bytes"] >= 1 and reported["limits_reported_at"]
        assert _stores_of(api, oid) == [] and _jobs_of(api, oid) == []

    context = browser.new_context(base_url=live_platform.url)
    page = context.new_page()
    _log_in(page, live_platform)

    # The orchestrator page shows the roots it reported.
    page.goto(f"/orchestrators/{oid}/")
    roots_shown = page.get_by_test_id("store-roots")
    expect(roots_shown).to_have_attribute("data-reported", "yes")
    expect(roots_shown).to_contain_text(root)
    page.screenshot(path=str(tmp_path / "orchestrator-roots.png"), full_page=True)

    # Add a store from there: the form knows the orchestrator and tells its roots.
    page.get_by_test_id("add-store-link").click()
    form = page.get_by_test_id("add-store-form")
    form.locator("select[name=store_type]").select_option("PEM")
    form.locator("select[name=orchestrator]").select_option(
        label="path-agent (path-agent.e2e.test)"
    )
    expect(page.get_by_test_id("store-path-context")).to_contain_text(root)
    # Only the chosen type's properties show, as real fields.
    expect(page.get_by_test_id("properties-PEM")).to_be_visible()
    expect(page.get_by_test_id("properties-PKCS12")).to_be_hidden()
    expect(form.get_by_label("Read subfolders")).to_be_visible()
    form.locator("select[name=store_type]").select_option("PKCS12")
    expect(page.get_by_test_id("properties-PKCS12")).to_be_visible()
    expect(page.get_by_test_id("properties-PEM")).to_be_hidden()
    form.locator("select[name=store_type]").select_option("PEM")
    form.get_by_label("Read subfolders").check()

    # A path outside the roots: the agent's own words, beside the path, and nothing made.
    form.locator("input[name=store_path]").fill(outside)
    form.locator("input[name=inventory_interval_minutes]").fill("1")
    form.get_by_role("button", name="Add store").click()
    form = page.get_by_test_id("add-store-form")
    message = store_path_problem(outside, [root])
    assert message
    refusal = form.locator(".has-error .field-error")
    expect(refusal).to_have_count(1)
    expect(refusal).to_have_text(message[:1].upper() + message[1:])
    expect(form.locator("input[name=store_path]")).to_have_value(outside)
    page.screenshot(path=str(tmp_path / "store-path-refused.png"), full_page=True)
    with live_platform.api() as api:
        assert _stores_of(api, oid) == []
        assert _jobs_of(api, oid) == []

    # A relative path is refused the same way, roots or not.
    form.locator("input[name=store_path]").fill("relative/path")
    form.get_by_role("button", name="Add store").click()
    form = page.get_by_test_id("add-store-form")
    expect(form.locator(".has-error .field-error")).to_contain_text("is not absolute")

    # A path inside the roots is added, its property kept; the table wraps it at slashes.
    form.locator("input[name=store_path]").fill(str(inside))
    form.get_by_role("button", name="Add store").click()
    row = page.locator(f'[data-testid=store-row][data-path="{inside}"]')
    expect(row).to_be_visible()
    assert "/<wbr>" in row.get_by_test_id("store-page-link").inner_html()
    row.locator("[data-testid=store-actions] summary").click()
    expect(row.locator("[data-action=inventory-now]")).to_be_visible()
    page.screenshot(path=str(tmp_path / "stores-table.png"), full_page=True)
    with live_platform.api() as api:
        (store,) = _stores_of(api, oid)
        assert store["store_path"] == str(inside) and store["properties"]["recursive"] is True
        assert orchestrator_named(api, "path-agent")["store_roots"] == [root]
    context.close()
