"""Certificate state at a glance (issue 17), in a real browser on the live platform.

A certificate issued by a built-in CA and revoked shows its state in the list (a badge,
and the Revoked filter), in its page's header (with the reason) and in the API; a renewed
one links to its successor ("Renewed by") and back ("Renews"); the header's actions open
the sections they name, under the console's strict CSP.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.certs import csr_for
from tests.e2e.conftest import LivePlatform
from tests.e2e.management import DOMAIN, expect, pki_made
from tests.e2e.test_console_browser import browser  # noqa: F401 (the Chromium fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_revoked_and_renewed_certificates_show_their_state_and_links(
    live_platform: LivePlatform,
    browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect as see

    revoked_name, renewed_name = f"gone.{DOMAIN}", f"kept.{DOMAIN}"
    with live_platform.api() as api:
        pki = pki_made(live_platform, label="State Browser")

        def enrolled(name: str) -> dict:
            made = expect(
                api.post("enrollments/", json={"template": pki.template, "csr": csr_for(name)}), 201
            )
            assert made["state"] == "issued", made
            return made

        revoked = enrolled(revoked_name)["certificate"]
        expect(api.post(f"certificates/{revoked}/revoke/", json={"reason": 1}), 204)
        old = enrolled(renewed_name)["certificate"]
        renewal = expect(
            api.post(f"certificates/{old}/renew/", json={"csr": csr_for(renewed_name)}), 201
        )
        new = renewal["enrollment"]["certificate"]
        assert renewal["enrollment"]["state"] == "issued", renewal
        assert new != old

    offsite: list[str] = []
    refused: list[str] = []
    context = browser.new_context(base_url=live_platform.url)
    page = context.new_page()
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(live_platform.url) else offsite.append(request.url)
        ),
    )
    page.on(
        "console", lambda message: refused.append(message.text) if message.type == "error" else None
    )
    page.goto("/login/")
    page.fill("input[name=username]", live_platform.admin_username)
    page.fill("input[name=password]", live_platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    see(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    # The dashboard counts revoked and superseded certificates apart from the expiry windows.
    see(page.get_by_test_id("count-revoked").locator(".tile-number")).not_to_have_text("0")
    see(page.get_by_test_id("count-superseded").locator(".tile-number")).not_to_have_text("0")
    see(page.get_by_test_id("in-use-note")).to_contain_text("not CA, not revoked, not superseded")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # The list: a badge on every row; the Revoked filter lists the revoked one.
    page.goto("/certificates/")
    row = page.locator(f'[data-testid=certificate-row][data-id="{revoked}"]')
    see(row.get_by_test_id("certificate-status")).to_have_text("Revoked")
    see(
        page.locator(f'[data-testid=certificate-row][data-id="{old}"]').get_by_test_id(
            "certificate-status"
        )
    ).to_have_text("Superseded")
    see(
        page.locator(f'[data-testid=certificate-row][data-id="{new}"]').get_by_test_id(
            "certificate-status"
        )
    ).to_have_text("Expiring")  # issued for 30 days: inside the window
    page.select_option("#id_status", "revoked")
    page.get_by_role("button", name="Search").click()
    rows = page.get_by_test_id("certificate-row")
    see(rows.filter(has_text=revoked_name)).to_have_count(1)
    for pk in (old, new):
        see(page.locator(f'[data-testid=certificate-row][data-id="{pk}"]')).to_have_count(0)
    page.screenshot(path=str(tmp_path / "list-revoked.png"), full_page=True)

    # Its page: the header says revoked, when and why, and offers no second revocation.
    rows.filter(has_text=revoked_name).get_by_role("link", name=revoked_name).click()
    see(page.get_by_role("heading", level=1)).to_contain_text(revoked_name)
    see(page.get_by_role("heading", level=1).get_by_test_id("certificate-status")).to_have_text(
        "Revoked"
    )
    see(page.get_by_test_id("certificate-state")).to_have_attribute("data-status", "revoked")
    see(page.get_by_test_id("revoked-line")).to_contain_text("Key compromise")
    see(page.locator("[data-action=header-revoke]")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "revoked.png"), full_page=True)

    # The API, in the same session: the state, and the status filter.
    detail = context.request.get(f"/api/v1/certificates/{revoked}/")
    assert detail.ok, detail.text()
    body = detail.json()
    assert body["status"] == "revoked" and body["revocation_reason"] == "keyCompromise"
    assert body["revoked_at"]
    listed = context.request.get("/api/v1/certificates/?status=revoked&page_size=100").json()
    assert revoked in [c["id"] for c in listed["results"]]
    assert not {old, new} & {c["id"] for c in listed["results"]}
    superseded = context.request.get(f"/api/v1/certificates/{old}/").json()
    assert superseded["status"] == "superseded" and superseded["superseded_by"] == new
    assert context.request.get(f"/api/v1/certificates/{new}/").json()["supersedes"] == [old]

    # The renewed certificate links to its successor, and the successor back to it.
    page.goto(f"/certificates/{old}/")
    see(page.get_by_role("heading", level=1).get_by_test_id("certificate-status")).to_have_text(
        "Superseded"
    )
    page.get_by_test_id("superseded-by").get_by_role("link").click()
    see(page).to_have_url(f"{live_platform.url}/certificates/{new}/")
    see(page.get_by_test_id("certificate-state")).to_have_attribute("data-status", "expiring")
    back = page.get_by_test_id("supersedes")
    see(back).to_contain_text("Renews")
    page.screenshot(path=str(tmp_path / "renewed.png"), full_page=True)

    # The header's actions open their sections (the static script, under the CSP).
    revoke_panel = page.get_by_test_id("revoke-panel")
    see(revoke_panel).not_to_have_attribute("open", "")
    page.locator("[data-action=header-revoke]").click()
    see(revoke_panel).to_have_attribute("open", "")
    see(page.get_by_test_id("revoke-form")).to_be_visible()
    page.locator("[data-action=header-add-to-stores]").click()
    see(page.get_by_test_id("deploy-section")).to_have_attribute("open", "")

    back.get_by_role("link").click()
    see(page).to_have_url(f"{live_platform.url}/certificates/{old}/")
    see(page.get_by_test_id("superseded-by")).to_contain_text("Renewed by")

    assert offsite == [], f"a page loaded something from elsewhere: {offsite}"
    assert refused == [], f"the browser refused something: {refused}"
    context.close()
