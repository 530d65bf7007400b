"""No traps in the console's enrollment (issue 17): every issuing form redirects, a PFX
goes to a hand-over page that offers it once, a form submitted twice (same hidden key)
issues once, and a refused request lists the subject it was refused for."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from django.test import Client
from django.urls import reverse

from certyard.enrollment.models import EnrollmentRequest, PfxHandOver, Template
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, IssuedCertificate
from tests import certs

pytestmark = pytest.mark.django_db
ENROLL = reverse("console:enroll")
PASSWORD = "hand-over-secret-1"


@pytest.fixture
def template() -> Template:
    ca = pki_services.ca_create(name="Traps Console Root", key_algorithm="EC-P256")
    return Template.objects.create(name="web", ca=ca, allowed_domains=["example.test"])


def _key_of(page: str) -> str:
    found = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert found, "the form carries no idempotency key"
    return found.group(1)


def _form(web: Client, method: str) -> str:
    response = web.get(ENROLL, {"template": "web", "method": method})
    assert response.status_code == 200
    return response.content.decode()


def _pfx_data(key: str, **fields: Any) -> dict[str, str]:
    return {
        "template": "web",
        "method": "pfx",
        "common_name": "pfx.example.test",
        "sans": "",
        "key_algorithm": "EC-P256",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "idempotency_key": key,
        **fields,
    }


def test_each_rendering_of_the_form_has_a_new_key(admin_web: Client, template: Template) -> None:
    keys = {_key_of(_form(admin_web, "pfx")) for _ in range(3)}
    keys |= {_key_of(_form(admin_web, "csr"))}
    assert len(keys) == 4


def test_a_pfx_form_posted_twice_issues_once_and_hands_the_file_over_once(
    admin_web: Client, template: Template
) -> None:
    key = _key_of(_form(admin_web, "pfx"))
    first = admin_web.post(ENROLL, _pfx_data(key))
    second = admin_web.post(ENROLL, _pfx_data(key))
    enrollment = EnrollmentRequest.objects.get()
    hand_over = reverse("console:enrollment-request-pkcs12", args=[enrollment.pk])
    assert first.status_code == 302 and first["Location"] == hand_over
    assert second.status_code == 302 and second["Location"] == hand_over
    assert IssuedCertificate.objects.filter(common_name="pfx.example.test").count() == 1

    page = admin_web.get(hand_over)
    body = page.content.decode()
    assert page["Cache-Control"] == "no-store"
    assert 'data-action="download-pkcs12"' in body
    assert PASSWORD not in body and 'type="password"' not in body
    assert "already submitted" in body  # the second POST's message says nothing was redone

    download = admin_web.post(hand_over + "download/")
    assert download["Content-Type"] == "application/x-pkcs12"
    key_, certificate, _ = pkcs12.load_key_and_certificates(download.content, PASSWORD.encode())
    assert key_ is not None and certificate is not None
    assert not PfxHandOver.objects.exists()  # deleted as it was sent

    reloaded = admin_web.get(hand_over).content.decode()
    assert 'data-testid="pkcs12-gone"' in reloaded and "download-pkcs12" not in reloaded
    assert admin_web.post(hand_over + "download/").status_code == 302


def test_only_the_requester_reaches_the_hand_over(
    admin_web: Client, template: Template, plain_web: Client
) -> None:
    admin_web.post(ENROLL, _pfx_data(_key_of(_form(admin_web, "pfx"))))
    enrollment = EnrollmentRequest.objects.get()
    hand_over = reverse("console:enrollment-request-pkcs12", args=[enrollment.pk])
    assert plain_web.get(hand_over).status_code == 403
    assert plain_web.post(hand_over + "download/").status_code == 403
    assert PfxHandOver.objects.count() == 1


def test_an_expired_hand_over_is_not_offered(admin_web: Client, template: Template) -> None:
    admin_web.post(ENROLL, _pfx_data(_key_of(_form(admin_web, "pfx"))))
    enrollment = EnrollmentRequest.objects.get()
    PfxHandOver.objects.update(expires_at="2000-01-01T00:00:00Z")
    hand_over = reverse("console:enrollment-request-pkcs12", args=[enrollment.pk])
    assert 'data-testid="pkcs12-gone"' in admin_web.get(hand_over).content.decode()
    assert admin_web.post(hand_over + "download/").status_code == 302


def test_a_hand_over_still_issuing_asks_again_instead_of_waiting(
    admin_web: Client, template: Template
) -> None:
    """The first of two submissions may still be issuing when the second lands on the
    hand-over page: the page answers at once and polls (htmx) until the file is there."""
    admin_web.post(ENROLL, _pfx_data(_key_of(_form(admin_web, "pfx"))))
    enrollment = EnrollmentRequest.objects.get()
    PfxHandOver.objects.all().delete()
    EnrollmentRequest.objects.filter(pk=enrollment.pk).update(
        state=EnrollmentRequest.State.APPROVED
    )
    hand_over = reverse("console:enrollment-request-pkcs12", args=[enrollment.pk])
    page = admin_web.get(hand_over).content.decode()
    assert 'data-testid="pkcs12-pending"' in page
    assert f'hx-get="{hand_over}"' in page and 'hx-trigger="every 1s"' in page
    assert 'data-action="download-pkcs12"' not in page
    # Once issued (here: nothing left to hand over), the page stops asking.
    EnrollmentRequest.objects.filter(pk=enrollment.pk).update(state=EnrollmentRequest.State.ISSUED)
    issued = admin_web.get(hand_over).content.decode()
    section = re.search(r'<section[^>]*data-testid="pkcs12-hand-over"[^>]*>', issued)
    assert section and "hx-get" not in section.group(0)


def test_the_every_minute_task_drops_expired_hand_overs(
    admin_web: Client, template: Template
) -> None:
    """Nobody enrolls again: the enrollment upkeep django-q2 runs every minute still
    deletes a PKCS#12 whose time is up, and keeps one that is not."""
    from certyard.enrollment.tasks import gateway_syncs_resume_every_minute

    for _ in range(2):
        admin_web.post(ENROLL, _pfx_data(_key_of(_form(admin_web, "pfx"))))
    expired, fresh = PfxHandOver.objects.order_by("created_at")
    PfxHandOver.objects.filter(pk=expired.pk).update(expires_at="2000-01-01T00:00:00Z")

    gateway_syncs_resume_every_minute()

    assert list(PfxHandOver.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_a_csr_form_posted_twice_issues_once(admin_web: Client, template: Template) -> None:
    key = _key_of(_form(admin_web, "csr"))
    data = {"template": "web", "method": "csr", "csr": certs.csr_for("www.example.test")}
    first = admin_web.post(ENROLL, {**data, "idempotency_key": key})
    second = admin_web.post(ENROLL, {**data, "idempotency_key": key}, follow=True)
    assert first.status_code == 302
    assert EnrollmentRequest.objects.count() == 1
    assert "already submitted" in second.content.decode()


def test_a_refused_form_comes_back_with_a_new_key_and_its_subject_listed(
    admin_web: Client, template: Template
) -> None:
    key = _key_of(_form(admin_web, "csr"))
    data = {
        "template": "web",
        "method": "csr",
        "csr": certs.csr_for("outside.example.org"),
        "idempotency_key": key,
    }
    refused = admin_web.post(ENROLL, data).content.decode()
    assert "outside.example.org" in refused
    assert _key_of(refused) != key  # corrected and sent again, it is a new request
    fixed = admin_web.post(
        ENROLL,
        {**data, "csr": certs.csr_for("in.example.test"), "idempotency_key": _key_of(refused)},
    )
    assert fixed.status_code == 302
    assert EnrollmentRequest.objects.filter(state="issued").count() == 1

    listing = admin_web.get(reverse("console:enrollment-request-list"), {"state": "failed"})
    rows = listing.content.decode()
    assert "CN=outside.example.org" in rows and "(not read)" not in rows


def test_the_pfx_password_fields_never_carry_a_value(admin_web: Client, template: Template) -> None:
    key = _key_of(_form(admin_web, "pfx"))
    mismatch = admin_web.post(ENROLL, _pfx_data(key, password_confirm="something-else-1"))
    page = mismatch.content.decode()
    assert mismatch.status_code == 200 and PASSWORD not in page
    assert not EnrollmentRequest.objects.exists()


def test_the_identity_ca_is_not_offered_to_enroll_under(
    admin_web: Client, template: Template
) -> None:
    identity: CertificateAuthority = pki_services.orchestrator_ca_get_or_create()
    Template.objects.create(name="legacy", ca=identity, allowed_domains=["example.test"])
    key = _key_of(_form(admin_web, "csr"))
    response = admin_web.post(
        ENROLL,
        {
            "template": "legacy",
            "method": "csr",
            "csr": certs.csr_for("www.example.test"),
            "idempotency_key": key,
        },
    )
    assert response.status_code == 200
    assert "issues for no template" in response.content.decode()
    assert not IssuedCertificate.objects.filter(ca=identity, common_name="www.example.test")


def test_a_key_reused_for_another_kind_of_request_is_a_visible_error(
    admin_web: Client, template: Template
) -> None:
    key = _key_of(_form(admin_web, "csr"))
    csr = {"template": "web", "method": "csr", "csr": certs.csr_for("www.example.test")}
    assert admin_web.post(ENROLL, {**csr, "idempotency_key": key}).status_code == 302
    reused = admin_web.post(ENROLL, _pfx_data(key))
    page = reused.content.decode()
    assert reused.status_code == 200 and "already used for another request" in page
    assert EnrollmentRequest.objects.count() == 1
