"""Store management in a real browser (issue 16): an admin adds a certificate to a store
from its page and watches the batch page follow the real agent's job through htmx polling,
until polling stops; the store page then lists the new entry."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.e2e.conftest import AgentProcess, LivePlatform, orchestrator_approved
from tests.e2e.management import (
    inventory_now,
    pfx_certificate,
    pki_made,
    store_made,
)
from tests.e2e.test_console_browser import browser  # noqa: F401 (the Chromium fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_add_to_stores_from_the_certificate_page_with_live_progress(
    live_platform: LivePlatform,
    module_agents: Callable[..., AgentProcess],
    browser,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    folder = module_agents.base / "browser-deploy"  # type: ignore[attr-defined]
    folder.mkdir()
    agent = module_agents("browser-deployer", folder=folder)
    agent.start()
    store_folder = folder / "web"
    store_folder.mkdir()
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "browser-deployer")
        pki = pki_made(live_platform, label="Browser Deploy")
        enrollment = pfx_certificate(api, pki, "shop")
        store = store_made(api, orchestrator["id"], "PEM", str(store_folder))

    context = browser.new_context(base_url=live_platform.url)
    page = context.new_page()
    page.goto("/login/")
    page.fill("input[name=username]", live_platform.admin_username)
    page.fill("input[name=password]", live_platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # The certificate's page: add it (with the key the platform holds) to the store.
    page.goto(f"/certificates/{enrollment['certificate']}/")
    page.locator("[data-testid=deploy-section] summary").click()
    expect(page.get_by_test_id("key-note")).to_contain_text("holds this certificate's private key")
    page.select_option("#id_deploy-stores", store["id"])
    # In a PEM folder the alias is the file's name; the inventory reads *.pem files.
    page.fill("#id_deploy-alias", "shop.pem")
    page.locator("[data-action=deploy]").click()

    # The batch page follows the agent's job by polling, and stops once it has finished.
    expect(page).to_have_url(re.compile(r"/deployments/[0-9a-f-]+/$"))
    rows = page.get_by_test_id("batch-rows")
    expect(rows).to_have_attribute("data-open", "false", timeout=120_000)
    row = page.get_by_test_id("deployment-row")
    expect(row).to_have_count(1)
    assert row.get_attribute("data-state") in ("deployed", "written"), row.inner_text()
    assert "PRIVATE KEY" not in page.content()

    # The store holds it, and the store page lists it after the agent re-read the store.
    assert (store_folder / "shop.pem").is_file(), list(store_folder.iterdir())
    with live_platform.api() as api:
        inventory_now(api, store["id"], agent)
    page.goto(f"/stores/{store['id']}/")
    entry = page.get_by_test_id("entry-row")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("shop.mgmt.e2e.test")
    expect(entry).to_contain_text("shop.pem")
    context.close()
