"""The console in a real browser: Debian's Chromium, driven by Playwright, on the live platform."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue
from tests.e2e.conftest import LivePlatform

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
    store_row.locator("[data-action=inventory-now]").click()
    expect(store_row.get_by_role("status")).to_contain_text("Inventory job queued")

    # The jobs page shows the job finishing without a reload (htmx polling).
    page.get_by_role("link", name="Jobs", exact=True).first.click()
    expect(page.get_by_role("cell", name="Succeeded", exact=True).first).to_be_visible(
        timeout=60_000
    )

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
