"""Enrollment with approval, in a real browser on the live platform.

One person enrolls a CSR under a template that needs approval; another approves it in the
console; the request shows Issued and the certificate's page shows the certificate, issued
by the built-in CA and not revoked.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.certs import csr_for
from tests.e2e.conftest import LivePlatform, platform_python
from tests.e2e.test_console_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

COMMON_NAME = "portal.enroll.e2e.test"
TEMPLATE = "e2e-guarded"
CA_NAME = "E2E Enrollment Root"

_SETUP = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from certyard.enrollment.models import Template
from certyard.pki.services import ca_create

perms = [
    ("enrollment", "add_enrollmentrequest"),
    ("enrollment", "view_enrollmentrequest"),
    ("enrollment", "approve_enrollmentrequest"),
    # Deciding on another's request is acting on it (issue 14): the approvers' grant-all.
    ("enrollment", "manage_any_enrollmentrequest"),
    ("inventory", "view_certificate"),
]
for name, password in [("enroll-alice", {alice!r}), ("enroll-bob", {bob!r})]:
    user = get_user_model().objects.create_user(name, password=password)
    for app, codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
ca = ca_create(name={ca!r}, key_algorithm="EC-P256", validity_days=365)
Template.objects.create(
    name={template!r},
    description="Portals; an approver must agree.",
    ca=ca,
    allowed_domains=["enroll.e2e.test"],
    require_approval=True,
)
print("ready")
"""


def test_one_person_enrolls_another_approves_and_the_certificate_is_issued(
    live_platform: LivePlatform,
    browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import Page, expect

    alice_password, bob_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    out = platform_python(
        live_platform,
        _SETUP.format(alice=alice_password, bob=bob_password, ca=CA_NAME, template=TEMPLATE),
    )
    assert "ready" in out

    offsite: list[str] = []
    refused: list[str] = []

    def signed_in(username: str, password: str) -> Page:
        context = browser.new_context(base_url=live_platform.url)
        page = context.new_page()
        page.on(
            "request",
            lambda request: (
                None if request.url.startswith(live_platform.url) else offsite.append(request.url)
            ),
        )
        page.on(
            "console",
            lambda message: refused.append(message.text) if message.type == "error" else None,
        )
        page.goto("/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        return page

    # Alice enrolls a CSR under the template that needs approval.
    alice = signed_in("enroll-alice", alice_password)
    alice.get_by_role("link", name="Enrollment", exact=True).click()
    alice.get_by_test_id("enrollment-tabs").get_by_role("link", name="Enroll").click()
    choice = alice.locator(f'[data-testid=template-choice][data-name="{TEMPLATE}"]')
    expect(choice).to_contain_text("needs approval")
    expect(choice).to_contain_text(CA_NAME)
    choice.locator("[data-action=enroll-csr]").click()
    alice.fill("textarea[name=csr]", csr_for(COMMON_NAME))
    alice.get_by_role("button", name="Request approval").click()
    expect(alice.get_by_test_id("request-state")).to_have_attribute("data-state", "pending")
    expect(alice.get_by_role("status")).to_contain_text("waits for an approver")
    expect(alice.get_by_test_id("own-request")).to_be_visible()
    request_url = alice.url
    alice.screenshot(path=str(tmp_path / "pending.png"), full_page=True)

    # Bob sees it waiting, approves it, and it is issued.
    bob = signed_in("enroll-bob", bob_password)
    expect(bob.get_by_test_id("pending-count")).to_have_text("1")
    bob.get_by_role("link", name="Enrollment").first.click()
    row = bob.locator(
        f'[data-testid=request-row][data-id="{request_url.rstrip("/").rsplit("/", 1)[1]}"]'
    )
    expect(row).to_have_attribute("data-state", "pending")
    row.get_by_role("link", name=f"CN={COMMON_NAME}").click()
    bob.fill("textarea[name=approve-comment]", "approved in the browser")
    bob.get_by_role("button", name="Approve and issue").click()
    expect(bob.get_by_test_id("request-state")).to_have_attribute("data-state", "issued")
    expect(bob.get_by_test_id("decision")).to_contain_text("Approved by enroll-bob")
    expect(bob.get_by_test_id("pending-count")).to_have_count(0)
    bob.screenshot(path=str(tmp_path / "issued.png"), full_page=True)

    # The certificate's page shows it, from the built-in CA, not revoked.
    bob.get_by_test_id("inventory-link").get_by_role("link").click()
    expect(bob.get_by_role("heading", level=1)).to_contain_text(COMMON_NAME)
    expect(bob.get_by_test_id("pki-issuer")).to_have_text(CA_NAME)
    expect(bob.get_by_test_id("revocation-status")).to_have_attribute("data-revoked", "false")
    expect(bob.get_by_test_id("sans")).to_contain_text(COMMON_NAME)
    bob.screenshot(path=str(tmp_path / "certificate.png"), full_page=True)

    # Alice, back on her request, sees it issued too.
    alice.goto(request_url)
    expect(alice.get_by_test_id("request-state")).to_have_attribute("data-state", "issued")
    expect(alice.get_by_test_id("download-certificate")).to_be_visible()

    assert offsite == [], f"a page loaded something from elsewhere: {offsite}"
    assert refused == [], f"the browser refused something: {refused}"
    alice.context.close()
    bob.context.close()
