"""No traps in enrollment, in a real browser on the live platform (issue 17).

A person double-clicks Enroll on the PFX form (and the same form is submitted a second
time, as a resent POST would be): one certificate is issued, the browser
lands on the hand-over page (not the filled form: the passwords are gone), the PKCS#12
is offered there once and opens with the password; reloading the page offers it no more.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.e2e.conftest import LivePlatform, platform_python
from tests.e2e.test_console_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

COMMON_NAME = "vault.traps.e2e.test"
TEMPLATE = "e2e-traps"

_SETUP = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from certyard.enrollment.models import Template
from certyard.pki.services import ca_create

user = get_user_model().objects.create_user("traps-frank", password={password!r})
for app, codename in [
    ("enrollment", "add_enrollmentrequest"),
    ("enrollment", "view_enrollmentrequest"),
    ("inventory", "view_certificate"),
]:
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label=app, codename=codename)
    )
ca = ca_create(name="E2E Traps Root", key_algorithm="EC-P256", validity_days=365)
Template.objects.create(name={template!r}, ca=ca, allowed_domains=["traps.e2e.test"])
print("ready")
"""

_COUNT = """
import json
from certyard.enrollment.models import EnrollmentRequest, PfxHandOver
from certyard.pki.models import IssuedCertificate
print(json.dumps({{
    "requests": EnrollmentRequest.objects.filter(template_name={template!r}).count(),
    "issued": IssuedCertificate.objects.filter(common_name={cn!r}).count(),
    "kept": PfxHandOver.objects.count(),
}}))
"""


def _counts(live_platform: LivePlatform) -> dict[str, int]:
    out = platform_python(live_platform, _COUNT.format(template=TEMPLATE, cn=COMMON_NAME))
    return json.loads(out.strip().splitlines()[-1])


def test_a_double_clicked_pfx_enrollment_issues_once_and_hands_over_once(
    live_platform: LivePlatform,
    browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    password, pfx_password = secrets.token_urlsafe(12), "pfx-" + secrets.token_urlsafe(12)
    out = platform_python(live_platform, _SETUP.format(password=password, template=TEMPLATE))
    assert "ready" in out

    context = browser.new_context(base_url=live_platform.url, accept_downloads=True)
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and "/enrollment/" in r.url else None,
    )
    page.goto("/login/")
    page.fill("input[name=username]", "traps-frank")
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.goto(f"/enrollment/?template={TEMPLATE}&method=pfx")
    page.fill("input[name=common_name]", COMMON_NAME)
    page.fill("input[name=password]", pfx_password)
    page.fill("input[name=password_confirm]", pfx_password)
    page.screenshot(path=str(tmp_path / "pfx-form.png"), full_page=True)
    # A double click: two submissions of the same rendering of the form. Chromium folds a
    # double click on a submit button into one navigation, so the first of the two (what
    # a slower browser or a resent POST sends) goes from the page itself, with the form's
    # own fields (CSRF token and hidden idempotency key included); then the double click.
    first = page.evaluate(
        """async () => {
            const form = document.querySelector("[data-testid=enroll-form]");
            const answer = await fetch(form.action, {
                method: "POST", body: new FormData(form), redirect: "manual",
            });
            return answer.type;
        }"""
    )
    assert first == "opaqueredirect"  # answered with a redirect: it was issued
    assert _counts(live_platform) == {"requests": 1, "issued": 1, "kept": 1}
    page.locator("[data-action=enroll]").dblclick()

    hand_over = page.get_by_test_id("pkcs12-hand-over")
    expect(hand_over).to_have_attribute("data-ready", "true")
    assert "/pkcs12/" in page.url
    assert len(posts) >= 2, f"{len(posts)} submission(s) were sent: {posts}"
    expect(page.get_by_role("status")).to_contain_text("already submitted")
    # The passwords are gone: no password field, and the typed password nowhere on the page.
    expect(page.locator("input[type=password]")).to_have_count(0)
    assert pfx_password not in page.content()
    page.screenshot(path=str(tmp_path / "hand-over.png"), full_page=True)
    assert _counts(live_platform) == {"requests": 1, "issued": 1, "kept": 1}

    # The download, once: it opens with the password.
    with page.expect_download() as download_info:
        page.locator("[data-action=download-pkcs12]").click()
    saved = tmp_path / "vault.p12"
    download_info.value.save_as(saved)
    key, certificate, _ = pkcs12.load_key_and_certificates(
        saved.read_bytes(), pfx_password.encode()
    )
    assert key is not None and certificate is not None
    assert certificate.subject.rfc4514_string() == f"CN={COMMON_NAME}"
    assert _counts(live_platform) == {"requests": 1, "issued": 1, "kept": 0}

    # Reloading the page does not offer it again; going back does not resubmit the form.
    page.reload()
    expect(page.get_by_test_id("pkcs12-gone")).to_be_visible()
    expect(page.locator("[data-action=download-pkcs12]")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "hand-over-after.png"), full_page=True)
    page.go_back()
    page.wait_for_load_state()
    assert _counts(live_platform)["issued"] == 1

    assert refused == [], f"the browser refused something: {refused}"
    context.close()
