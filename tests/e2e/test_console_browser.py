"""The console in a real browser: Debian's Chromium, driven by Playwright, on the live platform."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import (
    LivePlatform,
    orchestrator_named,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = os.environ.get("CERTYARD_CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium tries to reach Google's hosts, which these machines cannot.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: `make test` installs it (.ci/system-deps)"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_admin_logs_in_approves_runs_inventory_and_finds_a_certificate(
    live_platform: LivePlatform, agent_factory, browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    folder = tmp_path / "browser-store"
    folder.mkdir()
    wanted = issue("shop.browser.e2e.test", days=45, sans=("shop.browser.e2e.test",))
    (folder / "shop.pem").write_text(wanted.pem)
    (folder / "other.pem").write_text(issue("other.browser.e2e.test").pem)
    agent = agent_factory("browser-agent")
    agent.start()

    context = browser.new_context(base_url=live_platform.url)
    page = context.new_page()
    offsite: list[str] = []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(live_platform.url) else offsite.append(request.url)
        ),
    )

    # Log in.
    page.goto("/")
    expect(page).to_have_url(f"{live_platform.url}/login/?next=/")
    page.fill("input[name=username]", live_platform.admin_username)
    page.fill("input[name=password]", live_platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # Approve the waiting orchestrator, in place.
    page.get_by_role("link", name="Orchestrators", exact=True).first.click()
    row = page.locator('[data-testid=orchestrator-row][data-name="browser-agent"]')
    expect(row).to_have_attribute("data-status", "new")
    row.locator("[data-action=approve]").click()
    row = page.locator('[data-testid=orchestrator-row][data-name="browser-agent"]')
    expect(row).to_have_attribute("data-status", "approved")
    expect(row.get_by_role("status")).to_contain_text("approved")

    # Add a PEM store for it, then run inventory now.
    page.get_by_role("link", name="Stores", exact=True).first.click()
    page.get_by_test_id("add-store-link").click()
    form = page.get_by_test_id("add-store-form")
    form.locator("select[name=store_type]").select_option("PEM")
    form.locator("select[name=orchestrator]").select_option(
        label="browser-agent (browser-agent.e2e.test)"
    )
    form.locator("input[name=client_machine]").fill("browser-agent.e2e.test")
    form.locator("input[name=store_path]").fill(str(folder))
    form.get_by_role("button", name="Add store").click()
    store_row = page.locator(f'[data-testid=store-row][data-path="{folder}"]')
    expect(store_row).to_be_visible()
    store_row.locator("[data-testid=store-actions] summary").click()  # the row's menu
    store_row.locator("[data-action=inventory-now]").click()
    expect(store_row.get_by_role("status")).to_contain_text("Inventory job queued")

    # The jobs page shows the job finishing without a reload (htmx polling).
    page.get_by_role("link", name="Jobs", exact=True).first.click()
    # This store's job: the platform is shared, other tests' jobs have succeeded already.
    this_job = page.locator("[data-testid=job-row][data-state=succeeded]", has_text=str(folder))
    expect(this_job).to_be_visible(timeout=60_000)

    # Find the certificate by its common name.
    page.get_by_role("link", name="Certificates", exact=True).first.click()
    page.get_by_label("Search").fill("shop.browser.e2e.test")
    page.get_by_role("button", name="Search").click()
    rows = page.get_by_test_id("certificate-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-cn", "shop.browser.e2e.test")
    rows.first.get_by_role("link", name="shop.browser.e2e.test").click()
    expect(page.get_by_text(wanted.sha256)).to_be_visible()
    expect(page.get_by_text("shop.pem")).to_be_visible()

    page.screenshot(path=str(tmp_path / "certificate-detail.png"), full_page=True)
    assert offsite == [], f"the console loaded something from elsewhere: {offsite}"
    context.close()


@pytest.fixture(scope="module")
def one_attempt_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """A platform of its own whose jobs get one attempt: a failure is final at once, so the
    failed job can be retried without waiting out the retry delays."""
    platform = start_platform(
        tmp_path_factory.mktemp("one-attempt"), env_overrides={"CERTYARD_JOB_MAX_ATTEMPTS": "1"}
    )
    yield platform
    stop_platform(platform)


def _log_in(page: object, platform: LivePlatform) -> None:
    from playwright.sync_api import expect

    page.goto("/login/")
    page.fill("input[name=username]", platform.admin_username)
    page.fill("input[name=password]", platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_a_failing_store_is_flagged_fixed_retried_and_reported_ok(
    one_attempt_platform: LivePlatform, agent_factory, browser, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    platform = one_attempt_platform
    folder = tmp_path / "real-store"
    folder.mkdir()
    (folder / "month.pem").write_text(issue("month.fix.e2e.test", days=20).pem)
    (folder / "later.pem").write_text(issue("later.fix.e2e.test", days=200).pem)
    missing = tmp_path / "no-such-folder"
    agent = agent_factory("fixing-agent", platform=platform)
    agent.start()
    with platform.api() as api:
        orchestrator = orchestrator_named(api, "fixing-agent")
        assert api.post(f"orchestrators/{orchestrator['id']}/approve/").status_code == 200

    context = browser.new_context(base_url=platform.url)
    page = context.new_page()
    _log_in(page, platform)

    # Add a store at a path that does not exist on the agent's machine; the client machine
    # is left empty (it is the orchestrator's). Run inventory now.
    page.get_by_role("link", name="Stores", exact=True).first.click()
    page.get_by_test_id("add-store-link").click()
    form = page.get_by_test_id("add-store-form")
    form.locator("select[name=store_type]").select_option("PEM")
    form.locator("select[name=orchestrator]").select_option(
        label="fixing-agent (fixing-agent.e2e.test)"
    )
    form.locator("input[name=store_path]").fill(str(missing))
    form.get_by_role("button", name="Add store").click()
    store_row = page.locator(f'[data-testid=store-row][data-path="{missing}"]')
    expect(store_row).to_have_attribute("data-machine", "fixing-agent.e2e.test")
    expect(store_row).to_have_attribute("data-status", "never")
    store_row.locator("[data-testid=store-actions] summary").click()  # the row's menu
    store_row.locator("[data-action=inventory-now]").click()
    expect(store_row.get_by_role("status")).to_contain_text("Inventory job queued")

    # Its one attempt fails: the store is failing, with the agent's error.
    with platform.api() as api:
        store_id = api.get("stores/").json()["results"][0]["id"]
        wait_for(
            lambda: api.get(f"stores/{store_id}/").json()["inventory_status"] == "failing",
            timeout=90,
            what=f"the inventory of a missing folder to fail\n{agent.log()[-2000:]}",
        )
    page.reload()
    store_row = page.locator(f'[data-testid=store-row][data-path="{missing}"]')
    expect(store_row).to_have_attribute("data-status", "failing")
    expect(store_row.get_by_test_id("store-message")).to_contain_text("does not exist")
    page.screenshot(path=str(tmp_path / "stores-failing.png"), full_page=True)

    # The dashboard flags it, and the failed job.
    page.get_by_role("link", name="Dashboard", exact=True).first.click()
    failing = page.get_by_test_id("failing-store")
    expect(failing).to_have_count(1)
    expect(failing.first).to_contain_text(str(missing))
    expect(failing.first).to_contain_text("does not exist")
    expect(page.get_by_test_id("failed-jobs").get_by_test_id("job-row")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "dashboard-failing.png"), full_page=True)

    # Fix the store's path.
    page.get_by_role("link", name="Stores", exact=True).first.click()
    missing_row = page.locator(f'[data-testid=store-row][data-path="{missing}"]')
    missing_row.locator("[data-testid=store-actions] summary").click()
    missing_row.locator("[data-action=edit]").click()
    edit = page.get_by_test_id("edit-store-form")
    page.screenshot(path=str(tmp_path / "store-edit.png"), full_page=True)
    edit.locator("input[name=store_path]").fill(str(folder))
    edit.get_by_role("button", name="Save store").click()
    expect(page.get_by_role("status").first).to_contain_text("saved")
    expect(page.locator(f'[data-testid=store-row][data-path="{folder}"]')).to_be_visible()

    # Retry the failed job from the jobs page: a new job runs, with the new path.
    page.get_by_role("link", name="Jobs", exact=True).first.click()
    failed_row = page.locator("[data-testid=job-row][data-state=failed]")
    expect(failed_row).to_have_count(1)
    failed_row.locator("[data-action=retry]").click()
    expect(page.locator("[data-testid=job-row][data-state=succeeded]")).to_have_count(
        1, timeout=90_000
    )

    # The store is OK now.
    page.get_by_role("link", name="Stores", exact=True).first.click()
    store_row = page.locator(f'[data-testid=store-row][data-path="{folder}"]')
    expect(store_row).to_have_attribute("data-status", "ok")
    expect(store_row.get_by_test_id("store-status")).to_contain_text("OK")
    expect(store_row.get_by_test_id("store-message")).to_have_count(0)

    # The orchestrator's page shows the store and its certificates' expiry.
    store_row.get_by_role("link", name="fixing-agent").click()
    expect(page.get_by_role("heading", name="fixing-agent")).to_be_visible()
    own_store = page.get_by_test_id("orchestrator-stores").get_by_test_id("store-row")
    expect(own_store).to_have_count(1)
    expect(own_store.first).to_have_attribute("data-status", "ok")
    expect(own_store.first).to_contain_text(str(folder))
    expiry = page.get_by_test_id("orchestrator-expiry")
    for tile, count in [("total", "2"), ("expired", "0"), ("7", "0"), ("30", "1"), ("90", "1")]:
        expect(expiry.get_by_test_id(f"count-{tile}").locator(".tile-number")).to_have_text(count)

    page.screenshot(path=str(tmp_path / "orchestrator-detail.png"), full_page=True)
    context.close()
    assert "Traceback" not in platform.log()
