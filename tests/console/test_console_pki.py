"""PKI and enrollment in the console: creating and importing CAs, enrolling (CSR and PFX),
approving and denying, revoking and renewing from the certificate page, the CA gateways
page, and who may do what."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from certyard.console import pki_views
from certyard.enrollment.models import EnrollmentRequest, GatewaySync, Template
from certyard.inventory.models import Certificate, MetadataField
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, IssuedCertificate, RevocationReason
from certyard.workflows.models import HandlerRegistration
from tests import certs
from tests.console.conftest import PASSWORD

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^>]*\sstyle=", re.IGNORECASE)
State = EnrollmentRequest.State


# --- Helpers ---------------------------------------------------------------------------------


def _user(name: str, *perms: str) -> User:
    """A person with exactly these permissions ("app.codename")."""
    user = get_user_model().objects.create_user(name, f"{name}@example.test", PASSWORD)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return user


def _web(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _page(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _field_errors(page: str) -> list[str]:
    return re.findall(r'<p class="field-error" role="alert">([^<]+)</p>', page)


def _form_errors(page: str) -> str:
    found = re.search(r'<div class="form-errors" role="alert">(.*?)</div>', page, re.S)
    return found.group(1) if found else ""


def _messages(page: str) -> list[str]:
    return re.findall(r'<li class="flash flash-\w+">([^<]*)</li>', page)


def _assert_no_inline_code(page: str) -> None:
    assert INLINE_SCRIPT.findall(page) == []
    assert STYLE_ATTRIBUTE.findall(page) == []


ENROLL = reverse("console:enroll")


def _enroll_csr(web: Client, template: str, csr: str, **extra: Any) -> Any:
    return web.post(ENROLL, {"template": template, "method": "csr", "csr": csr, **extra})


def _enroll_pfx(web: Client, template: str, **fields: Any) -> Any:
    data = {
        "template": template,
        "method": "pfx",
        "common_name": "app.example.test",
        "sans": "app.example.test, www.app.example.test",
        "key_algorithm": "EC-P256",
        "password": "pkcs12-secret-1",
        "password_confirm": "pkcs12-secret-1",
        **fields,
    }
    return web.post(ENROLL, data)


def _pkcs12_from(web: Client, response: Any) -> Any:
    """Follow a PFX submission's redirect to its hand-over page and download the file."""
    assert response.status_code == 302, response.status_code
    page = web.get(response["Location"])
    assert 'data-action="download-pkcs12"' in _page(page)
    return web.post(response["Location"] + "download/")


def _request_from(response: Any) -> EnrollmentRequest:
    assert response.status_code == 302, response.status_code
    match = re.search(r"/enrollment/requests/([0-9a-f-]{36})/$", response["Location"])
    assert match, response["Location"]
    return EnrollmentRequest.objects.get(pk=match.group(1))


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture
def root_ca() -> CertificateAuthority:
    return pki_services.ca_create(
        name="Console Root", key_algorithm="EC-P256", validity_days=365, path_length=1
    )


@pytest.fixture
def web_template(root_ca: CertificateAuthority) -> Template:
    return Template.objects.create(
        name="web", description="TLS servers", ca=root_ca, allowed_domains=["example.test"]
    )


@pytest.fixture
def approval_template(root_ca: CertificateAuthority) -> Template:
    return Template.objects.create(
        name="guarded",
        ca=root_ca,
        allowed_domains=["example.test"],
        require_approval=True,
        archive_keys=True,
    )


REQUESTER_PERMS = (
    "enrollment.add_enrollmentrequest",
    "enrollment.view_enrollmentrequest",
    "enrollment.approve_enrollmentrequest",
    "inventory.view_certificate",
)


@pytest.fixture
def alice() -> User:
    """Requests certificates; may approve, but never her own requests."""
    return _user("alice", *REQUESTER_PERMS)


@pytest.fixture
def bob() -> User:
    """An approver."""
    return _user(
        "bob",
        "enrollment.view_enrollmentrequest",
        "enrollment.approve_enrollmentrequest",
        # Deciding on someone else's request is acting on it (issue 14): the grant-all the
        # upgrade gives every approver.
        "enrollment.manage_any_enrollmentrequest",
        "inventory.view_certificate",
    )


# --- Certificate authorities --------------------------------------------------------------------


def test_create_a_root_and_an_intermediate_with_the_form_and_see_them_listed(
    admin_web: Client,
) -> None:
    created = admin_web.post(
        reverse("console:ca-create"),
        {
            "name": "Acme Root",
            "common_name": "Acme Root CA",
            "organization": "Acme",
            "country": "de",
            "key_algorithm": "EC-P384",
            "validity_days": "3650",
            "path_length": "",
        },
    )
    root = CertificateAuthority.objects.get(name="Acme Root")
    assert created.status_code == 302
    assert created["Location"] == reverse("console:ca-detail", args=[root.pk])
    assert root.origin == CertificateAuthority.Origin.ROOT
    assert root.subject == "CN=Acme Root CA,O=Acme,C=DE"

    # The root may sign CAs, so it is offered as the intermediate's issuer.
    form = _page(admin_web.get(reverse("console:ca-create")))
    assert f'<option value="{root.pk}">Acme Root (root created here, EC-P384)</option>' in form
    admin_web.post(
        reverse("console:ca-create"),
        {
            "name": "Acme Issuing",
            "parent": str(root.pk),
            "key_algorithm": "RSA-2048",
            "validity_days": "1825",
            "path_length": "0",
        },
    )
    issuing = CertificateAuthority.objects.get(name="Acme Issuing")
    assert issuing.origin == CertificateAuthority.Origin.INTERMEDIATE
    assert issuing.parent == root
    assert issuing.key_algorithm == "RSA-2048"

    listed = _page(admin_web.get(reverse("console:ca-list")))
    rows = dict(re.findall(r'data-testid="ca-row" data-name="([^"]+)" data-origin="(\w+)"', listed))
    assert rows == {"Acme Issuing": "intermediate", "Acme Root": "root"}
    assert reverse("pki-crl", args=[issuing.pk]) in listed
    assert reverse("pki-ca-certificate", args=[issuing.pk]) in listed
    _assert_no_inline_code(listed)

    detail = _page(admin_web.get(reverse("console:ca-detail", args=[issuing.pk])))
    assert "Acme Root CA" in detail  # its chain
    assert f"/pki/{issuing.pk}/ocsp" in detail
    assert "PRIVATE KEY" not in detail
    # An intermediate with path length 0 signs no CA: it is not offered as an issuer.
    form = _page(admin_web.get(reverse("console:ca-create")))
    assert f'<option value="{issuing.pk}">' not in form


def test_create_refusals_are_shown_beside_their_fields(
    admin_web: Client, root_ca: CertificateAuthority
) -> None:
    url = reverse("console:ca-create")
    base = {"key_algorithm": "EC-P256", "validity_days": "365"}

    taken = _page(admin_web.post(url, {**base, "name": "Console Root"}))
    assert _field_errors(taken) == ["A CA named &#x27;Console Root&#x27; already exists"]

    bad = _page(
        admin_web.post(
            url,
            {**base, "name": "X", "country": "D1", "validity_days": "0", "key_algorithm": "DSA"},
        )
    )
    assert len(_field_errors(bad)) == 3

    # Console Root has path length 1; one made with path length 0 cannot sign a CA.
    leaf_ca = pki_services.ca_create(name="Leaf only", path_length=0, parent=None)
    refused = _page(admin_web.post(url, {**base, "name": "Y", "parent": str(leaf_ca.pk)}))
    assert _field_errors(refused) == ["That CA cannot sign CAs (any more)."]
    assert not CertificateAuthority.objects.filter(name__in=["X", "Y"]).exists()


def test_import_a_ca_from_pem_with_an_encrypted_key(admin_web: Client) -> None:
    certificate, key = certs.ca_material("Old Corp CA")
    url = reverse("console:ca-import")
    data = {
        "kind": "pem",
        "pem-name": "Old Corp",
        "pem-certificate_pem": certs.certificate_pem(certificate),
        "pem-private_key_pem": certs.key_pem(key, b"key-password"),
        "pem-key_password": "wrong-password",
    }

    wrong = _page(admin_web.post(url, data))
    assert _field_errors(wrong) == [
        "The private key cannot be read (a wrong password, or not a PEM private key)"
    ]
    assert "PRIVATE KEY" not in wrong  # the key typed in is not sent back

    imported = admin_web.post(url, {**data, "pem-key_password": "key-password"})
    ca = CertificateAuthority.objects.get(name="Old Corp")
    assert imported["Location"] == reverse("console:ca-detail", args=[ca.pk])
    assert ca.origin == CertificateAuthority.Origin.IMPORTED
    listed = _page(admin_web.get(reverse("console:ca-list")))
    assert 'data-name="Old Corp" data-origin="imported"' in listed


def test_import_refuses_a_certificate_that_is_no_ca_and_a_key_of_another(
    admin_web: Client,
) -> None:
    url = reverse("console:ca-import")
    leaf, leaf_key = certs.ca_material("server.example.test", ca=False)
    not_ca = _page(
        admin_web.post(
            url,
            {
                "kind": "pem",
                "pem-name": "Leaf",
                "pem-certificate_pem": certs.certificate_pem(leaf),
                "pem-private_key_pem": certs.key_pem(leaf_key),
            },
        )
    )
    assert _field_errors(not_ca) == [
        "The certificate is not a CA certificate (basic constraints say CA:FALSE or nothing)"
    ]

    certificate, _ = certs.ca_material("Mismatch CA")
    mismatch = _page(
        admin_web.post(
            url,
            {
                "kind": "pem",
                "pem-name": "Mismatch",
                "pem-certificate_pem": certs.certificate_pem(certificate),
                "pem-private_key_pem": certs.key_pem(certs.private_key()),
            },
        )
    )
    assert _field_errors(mismatch) == ["The private key does not belong to the certificate"]

    garbage = _page(
        admin_web.post(
            url,
            {
                "kind": "pem",
                "pem-name": "Garbage",
                "pem-certificate_pem": "not a certificate",
                "pem-private_key_pem": "not a key",
            },
        )
    )
    assert _field_errors(garbage) == ["Not PEM certificates (expected -----BEGIN CERTIFICATE-----)"]
    assert not CertificateAuthority.objects.exists()


def test_import_a_ca_from_pkcs12_and_refuse_a_wrong_password_or_a_huge_file(
    admin_web: Client,
) -> None:
    certificate, key = certs.ca_material("Bundle CA")
    bundle = pkcs12.serialize_key_and_certificates(
        b"bundle", key, certificate, None, serialization.BestAvailableEncryption(b"p12-password")
    )
    url = reverse("console:ca-import")

    def post(data: bytes, password: str) -> Any:
        return admin_web.post(
            url,
            {
                "kind": "pkcs12",
                "pkcs12-name": "Bundle",
                "pkcs12-pkcs12": SimpleUploadedFile("ca.p12", data),
                "pkcs12-password": password,
            },
        )

    wrong = _page(post(bundle, "not-it"))
    assert _field_errors(wrong) == [
        "The PKCS#12 file cannot be opened: a wrong password, or not a PKCS#12 file"
    ]
    assert 'data-testid="ca-import-pkcs12-form"' in wrong  # the PKCS#12 tab stays open

    huge = _page(post(b"\x30" * (65 * 1024), "p12-password"))
    assert _field_errors(huge) == ["The file is 65 KB; a CA&#x27;s PKCS#12 file is at most 64 KB."]

    imported = post(bundle, "p12-password")
    ca = CertificateAuthority.objects.get(name="Bundle")
    assert imported["Location"] == reverse("console:ca-detail", args=[ca.pk])
    assert ca.subject == "CN=Bundle CA"


# --- Enrollment ---------------------------------------------------------------------------------


def test_enroll_a_csr_see_it_issued_and_download_the_certificate(
    admin_web: Client, web_template: Template
) -> None:
    chooser = _page(admin_web.get(ENROLL))
    assert 'data-testid="template-choice" data-name="web"' in chooser
    assert "TLS servers" in chooser and "Console Root" in chooser
    _assert_no_inline_code(chooser)
    form = _page(admin_web.get(ENROLL, {"template": "web", "method": "csr"}))
    assert 'name="csr"' in form and 'name="csr_file"' in form

    enrollment = _request_from(
        _enroll_csr(admin_web, "web", certs.csr("shop.example.test", "shop.example.test"))
    )
    assert enrollment.state == State.ISSUED
    assert enrollment.sans == ["DNS:shop.example.test"]

    page = _page(admin_web.get(reverse("console:enrollment-request-detail", args=[enrollment.pk])))
    assert 'data-testid="request-state" data-state="issued"' in page
    assert reverse("console:certificate-detail", args=[enrollment.certificate_id]) in page
    _assert_no_inline_code(page)

    download = admin_web.get(
        reverse("console:enrollment-request-certificate", args=[enrollment.pk])
    )
    assert download["Content-Type"] == "application/x-pem-file"
    assert download["Content-Disposition"] == 'attachment; filename="shop.example.test.pem"'
    issued = x509.load_pem_x509_certificate(download.content)
    assert issued.subject.rfc4514_string() == "CN=shop.example.test"
    chain = admin_web.get(reverse("console:enrollment-request-chain", args=[enrollment.pk]))
    assert len(x509.load_pem_x509_certificates(chain.content)) == 2

    # It is in the inventory, and the certificate's page says who issued it.
    certificate = Certificate.objects.get(pk=enrollment.certificate_id)
    panel = _page(admin_web.get(reverse("console:certificate-detail", args=[certificate.pk])))
    assert 'data-testid="pki-issuer">Console Root<' in panel
    assert 'data-testid="revocation-status" data-revoked="false"' in panel


def test_enroll_a_csr_file_in_der(admin_web: Client, web_template: Template) -> None:
    upload = SimpleUploadedFile(
        "req.der", certs.csr_der("der.example.test", key=certs.private_key("rsa"))
    )
    response = admin_web.post(
        ENROLL, {"template": "web", "method": "csr", "csr": "", "csr_file": upload}
    )
    enrollment = _request_from(response)
    assert enrollment.state == State.ISSUED
    assert enrollment.key_algorithm == "RSA-2048"


def test_pfx_enrollment_answers_with_a_pkcs12_the_password_opens(
    admin_web: Client, web_template: Template
) -> None:
    form = _page(admin_web.get(ENROLL, {"template": "web", "method": "pfx"}))
    assert '<option value="EC-P256" selected>' in form
    assert "Ed25519" not in form  # the template does not allow it

    submitted = _enroll_pfx(admin_web, "web")
    enrollment = EnrollmentRequest.objects.get(method="pfx")
    hand_over = reverse("console:enrollment-request-pkcs12", args=[enrollment.pk])
    assert submitted["Location"] == hand_over  # post/redirect/get: no form shown again
    response = _pkcs12_from(admin_web, submitted)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pkcs12"
    assert response["Content-Disposition"] == 'attachment; filename="app.example.test.p12"'
    assert response["Cache-Control"] == "no-store"
    key, certificate, extra = pkcs12.load_key_and_certificates(response.content, b"pkcs12-secret-1")
    assert key is not None and certificate is not None
    assert certificate.subject.rfc4514_string() == "CN=app.example.test"
    assert [c.subject.rfc4514_string() for c in extra] == ["CN=Console Root"]

    enrollment.refresh_from_db()
    assert enrollment.state == State.ISSUED and enrollment.pfx_collected_at is not None
    # Handed over once: the page no longer offers it, and a second download is refused.
    again = _page(admin_web.get(hand_over))
    assert 'data-testid="pkcs12-gone"' in again and "download-pkcs12" not in again
    refused = admin_web.post(hand_over + "download/", follow=True)
    assert "already downloaded" in " ".join(_messages(_page(refused)))
    page = _page(admin_web.get(reverse("console:enrollment-request-detail", args=[enrollment.pk])))
    assert re.search(r'data-testid="pfx-status">Collected on ', page)
    assert 'data-testid="collect-form"' not in page


def test_pfx_form_errors_record_nothing(admin_web: Client, web_template: Template) -> None:
    mismatch = _page(_enroll_pfx(admin_web, "web", password_confirm="something-else"))
    assert _field_errors(mismatch) == ["The two passwords differ."]
    short = _page(_enroll_pfx(admin_web, "web", password="short", password_confirm="short"))
    assert "at least 8 characters" in " ".join(_field_errors(short))
    key_type = _page(_enroll_pfx(admin_web, "web", key_algorithm="Ed25519"))
    assert "Select a valid choice" in " ".join(_field_errors(key_type))
    assert not EnrollmentRequest.objects.exists()


def test_a_malformed_csr_is_a_form_error_and_a_recorded_failed_request(
    admin_web: Client, web_template: Template
) -> None:
    page = _page(_enroll_csr(admin_web, "web", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"))

    failed = EnrollmentRequest.objects.get()
    assert failed.state == State.FAILED
    assert "not a readable PEM certificate signing request" in _form_errors(page)
    link = reverse("console:enrollment-request-detail", args=[failed.pk])
    assert f'href="{link}"' in page
    detail = _page(admin_web.get(link))
    assert 'data-testid="failure-reason"' in detail
    assert "not a readable PEM certificate signing request" in detail


def test_a_name_outside_the_template_is_refused_with_the_reason(
    admin_web: Client, web_template: Template
) -> None:
    page = _page(_enroll_csr(admin_web, "web", certs.csr("evil.example.org", "evil.example.org")))
    assert "outside the domains template" in _form_errors(page)
    assert EnrollmentRequest.objects.get().state == State.FAILED


@pytest.mark.parametrize("name", ["deleted", "x" * 300, "nul\x00name"])
def test_a_post_naming_an_unknown_template_is_a_form_error(
    admin_web: Client, web_template: Template, name: str
) -> None:
    page = _page(_enroll_csr(admin_web, name, certs.csr("a.example.test")))
    assert 'data-testid="template-error"' in page
    assert 'data-name="web"' in page  # the templates one can choose
    assert not EnrollmentRequest.objects.exists()


def test_a_disabled_template_is_not_offered(admin_web: Client, web_template: Template) -> None:
    web_template.enabled = False
    web_template.save()
    assert 'data-testid="no-templates"' in _page(admin_web.get(ENROLL))
    page = _page(_enroll_csr(admin_web, "web", certs.csr("a.example.test")))
    assert 'data-testid="template-error"' in page


def test_metadata_required_at_enrollment_is_asked_for(
    admin_web: Client, web_template: Template
) -> None:
    MetadataField.objects.create(name="owner", label="Owner", required_at_enrollment=True)
    MetadataField.objects.create(name="cost_center", label="Cost center")
    web_template.required_metadata = ["cost_center"]
    web_template.save()

    form = _page(admin_web.get(ENROLL, {"template": "web"}))
    assert 'name="metadata__owner"' in form and 'name="metadata__cost_center"' in form

    missing = _page(_enroll_csr(admin_web, "web", certs.csr("m.example.test")))
    assert len(_field_errors(missing)) == 2
    assert not EnrollmentRequest.objects.exists()

    enrollment = _request_from(
        _enroll_csr(
            admin_web,
            "web",
            certs.csr("m.example.test"),
            metadata__owner="team-web",
            metadata__cost_center="CC-42",
        )
    )
    assert enrollment.metadata == {"owner": "team-web", "cost_center": "CC-42"}


# --- Approval -------------------------------------------------------------------------------------


def test_approval_flow_no_self_approval_then_approved_and_another_denied(
    alice: User, bob: User, approval_template: Template
) -> None:
    alice_web, bob_web = _web(alice), _web(bob)

    enrollment = _request_from(
        _enroll_csr(alice_web, "guarded", certs.csr("api.example.test", "api.example.test"))
    )
    assert enrollment.state == State.PENDING
    url = reverse("console:enrollment-request-detail", args=[enrollment.pk])
    own = _page(alice_web.get(url))
    assert 'data-testid="own-request"' in own and 'data-action="approve"' not in own

    # Alice may approve requests, but not her own.
    refused = alice_web.post(
        reverse("console:enrollment-request-approve", args=[enrollment.pk]), follow=True
    )
    assert _messages(_page(refused)) == [
        "Not approved: you cannot approve your own request; another approver must."
    ]
    enrollment.refresh_from_db()
    assert enrollment.state == State.PENDING

    # Bob sees it waiting (the default tab for an approver), with the count in the navigation.
    listed = _page(bob_web.get(reverse("console:enrollment-request-list")))
    assert f'data-state="pending" data-id="{enrollment.pk}"' in listed
    assert 'data-testid="pending-count" title="Requests waiting for approval">1<' in listed
    page = _page(bob_web.get(url))
    assert 'data-action="approve"' in page and 'data-action="deny"' in page

    approved = bob_web.post(
        reverse("console:enrollment-request-approve", args=[enrollment.pk]),
        {"approve-comment": "ok for prod"},
        follow=True,
    )
    assert "Request approved. Certificate issued." in _messages(_page(approved))
    enrollment.refresh_from_db()
    assert enrollment.state == State.ISSUED
    assert enrollment.decided_by == bob and enrollment.decision_comment == "ok for prod"
    assert enrollment.certificate is not None

    # Another one, denied with a comment; without one, the form says so.
    second = _request_from(_enroll_csr(alice_web, "guarded", certs.csr("old.example.test")))
    deny = reverse("console:enrollment-request-deny", args=[second.pk])
    empty = _page(bob_web.post(deny, {"deny-comment": "  "}))
    assert _field_errors(empty) == ["Say why the request is denied."]
    second.refresh_from_db()
    assert second.state == State.PENDING

    denied = bob_web.post(deny, {"deny-comment": "use the wildcard instead"}, follow=True)
    assert "Request denied." in _messages(_page(denied))
    second.refresh_from_db()
    assert second.state == State.DENIED
    assert second.decision_comment == "use the wildcard instead"

    denied_tab = _page(bob_web.get(reverse("console:enrollment-request-list"), {"state": "denied"}))
    assert f'data-id="{second.pk}"' in denied_tab and f'data-id="{enrollment.pk}"' not in denied_tab
    assert 'data-testid="no-requests"' in _page(
        bob_web.get(reverse("console:enrollment-request-list"))
    )


def test_pfx_after_approval_is_collected_once_by_its_requester(
    alice: User, bob: User, approval_template: Template
) -> None:
    alice_web, bob_web = _web(alice), _web(bob)
    enrollment = _request_from(_enroll_pfx(alice_web, "guarded"))
    assert enrollment.state == State.PENDING
    bob_web.post(reverse("console:enrollment-request-approve", args=[enrollment.pk]))
    enrollment.refresh_from_db()
    assert enrollment.state == State.ISSUED and enrollment.pfx_available

    url = reverse("console:enrollment-request-detail", args=[enrollment.pk])
    assert 'data-testid="collect-form"' in _page(alice_web.get(url))
    assert 'data-testid="collect-form"' not in _page(bob_web.get(url))

    collect = reverse("console:enrollment-request-collect", args=[enrollment.pk])
    mismatch = _page(
        alice_web.post(collect, {"collect-password": "abcdefgh1", "collect-password_confirm": "x"})
    )
    assert _field_errors(mismatch) == ["The two passwords differ."]

    passwords = {"collect-password": "collect-it-1", "collect-password_confirm": "collect-it-1"}
    pfx = _pkcs12_from(alice_web, alice_web.post(collect, passwords))
    assert pfx["Content-Type"] == "application/x-pkcs12"
    _, certificate, _ = pkcs12.load_key_and_certificates(pfx.content, b"collect-it-1")
    assert certificate is not None

    again = alice_web.post(collect, passwords, follow=True)
    assert _messages(_page(again)) == [
        "Not collected: the PKCS#12 was already collected; it is handed out once."
    ]


# --- The certificate page: revoke and renew -------------------------------------------------------


def test_revoke_from_the_certificate_page(admin_web: Client, web_template: Template) -> None:
    enrollment = _request_from(_enroll_csr(admin_web, "web", certs.csr("gone.example.test")))
    detail_url = reverse("console:certificate-detail", args=[enrollment.certificate_id])
    page = _page(admin_web.get(detail_url))
    assert 'data-testid="revoke-form"' in page
    assert f'<option value="{RevocationReason.REMOVE_FROM_CRL}"' not in page

    revoke = reverse("console:certificate-revoke", args=[enrollment.certificate_id])
    unconfirmed = _page(admin_web.post(revoke, {"revoke-reason": "1"}))
    assert _field_errors(unconfirmed) == ["Tick the box to confirm the revocation."]
    bad_reason = _page(admin_web.post(revoke, {"revoke-reason": "8", "revoke-confirm": "on"}))
    assert "Select a valid choice" in " ".join(_field_errors(bad_reason))
    assert not IssuedCertificate.objects.filter(revoked_at__isnull=False).exists()

    done = admin_web.post(revoke, {"revoke-reason": "1", "revoke-confirm": "on"})
    assert done["Location"] == detail_url
    page = _page(admin_web.get(detail_url))
    assert 'data-testid="revocation-status" data-revoked="true"' in page
    assert "Key compromise" in page
    assert 'data-testid="revoke-form"' not in page
    issued = IssuedCertificate.objects.get(
        sha256=Certificate.objects.get(pk=enrollment.certificate_id).sha256
    )
    assert issued.revocation_reason == RevocationReason.KEY_COMPROMISE

    again = _page(admin_web.post(revoke, {"revoke-reason": "0", "revoke-confirm": "on"}))
    assert "This certificate is already revoked" in _form_errors(again)


def test_revoke_a_certificate_certyard_did_not_issue_is_a_form_error(
    admin_web: Client, inventory
) -> None:
    certificate = inventory.certificate("soon.example.test")
    page = _page(admin_web.get(reverse("console:certificate-detail", args=[certificate.pk])))
    assert 'data-testid="pki-panel"' not in page
    refused = _page(
        admin_web.post(
            reverse("console:certificate-revoke", args=[certificate.pk]),
            {"revoke-reason": "0", "revoke-confirm": "on"},
        )
    )
    assert "Certyard did not issue this certificate" in _form_errors(refused)


def test_renew_with_a_csr_from_the_certificate_page(
    admin_web: Client, web_template: Template
) -> None:
    key = certs.private_key()
    original = _request_from(
        _enroll_csr(admin_web, "web", certs.csr("renew.example.test", key=key))
    )
    detail_url = reverse("console:certificate-detail", args=[original.certificate_id])
    assert 'data-testid="renew-form"' in _page(admin_web.get(detail_url))
    renew = reverse("console:certificate-renew", args=[original.certificate_id])

    refused = _page(admin_web.post(renew, {"renew-csr": certs.csr("other.example.org")}))
    assert "outside the domains" in _form_errors(refused)
    assert 'data-testid="refused-request"' in refused

    renewal = _request_from(
        admin_web.post(renew, {"renew-csr": certs.csr("renew.example.test", key=key)})
    )
    assert renewal.type == EnrollmentRequest.Type.RENEW
    assert renewal.state == State.ISSUED
    assert renewal.renewal_of_id == original.certificate_id
    assert renewal.certificate_id != original.certificate_id


def test_renew_a_pfx_enrolled_certificate_reusing_its_archived_key(
    alice: User, bob: User, approval_template: Template
) -> None:
    approval_template.require_approval = False
    approval_template.save()
    alice_web = _web(alice)
    first = _pkcs12_from(alice_web, _enroll_pfx(alice_web, "guarded"))
    original = EnrollmentRequest.objects.get()
    first_key, _, _ = pkcs12.load_key_and_certificates(first.content, b"pkcs12-secret-1")
    page = _page(
        alice_web.get(reverse("console:certificate-detail", args=[original.certificate_id]))
    )
    assert 'name="renew-reuse_key"' in page and 'name="renew-csr"' not in page

    renewed = _pkcs12_from(
        alice_web,
        alice_web.post(
            reverse("console:certificate-renew", args=[original.certificate_id]),
            {
                "renew-password": "renewal-pass-1",
                "renew-password_confirm": "renewal-pass-1",
                "renew-reuse_key": "on",
            },
        ),
    )
    assert renewed["Content-Type"] == "application/x-pkcs12"
    key, certificate, _ = pkcs12.load_key_and_certificates(renewed.content, b"renewal-pass-1")
    renewal = EnrollmentRequest.objects.get(type=EnrollmentRequest.Type.RENEW)
    assert (
        certificate is not None
        and renewal.certificate_pem.strip() == certs.certificate_pem(certificate).strip()
    )
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) == first_key.public_key().public_bytes(serialization.Encoding.DER, public)


# --- CA gateways ------------------------------------------------------------------------------


@pytest.fixture
def gateway(root_ca: CertificateAuthority) -> HandlerRegistration:
    registration = HandlerRegistration.objects.create(
        name="corp acme", handler="certyard.no_such_gateway", kind="gateway"
    )
    Template.objects.create(name="via-acme", gateway=registration, product_id="default")
    return registration


def test_gateways_are_listed_and_a_failing_test_or_sync_says_why(
    admin_web: Client, gateway: HandlerRegistration
) -> None:
    page = _page(admin_web.get(reverse("console:gateway-list")))
    assert 'data-testid="gateway-row" data-name="corp acme"' in page
    assert '<span class="chip">via-acme</span>' in page
    assert "missing" in page  # its class is not installed
    _assert_no_inline_code(page)

    tested = admin_web.post(
        reverse("console:gateway-test", args=[gateway.pk]), {"return_to": "list"}, follow=True
    )
    assert tested.redirect_chain[-1][0] == reverse("console:gateway-list")
    (message,) = _messages(_page(tested))
    assert message.startswith(
        "corp acme: the CA gateway class &#x27;certyard.no_such_gateway&#x27;"
    )

    synced = admin_web.post(reverse("console:gateway-sync", args=[gateway.pk]), follow=True)
    (message,) = _messages(_page(synced))
    assert "cannot be loaded" in message
    assert not GatewaySync.objects.exists()


def test_the_ca_and_gateway_pages_run_as_many_queries_for_many_rows_as_for_one(
    admin_web: Client, gateway: HandlerRegistration, root_ca: CertificateAuthority
) -> None:
    urls = [
        reverse("console:ca-list"),
        reverse("console:ca-detail", args=[root_ca.pk]),
        reverse("console:gateway-list"),
        reverse("console:gateway-detail", args=[gateway.pk]),
    ]

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_web.get(url).status_code == 200
        return len(captured)

    def add_rows(*numbers: int) -> None:
        for n in numbers:
            pki_services.ca_create(
                name=f"Console Sub {n}", key_algorithm="EC-P256", validity_days=30, parent=root_ca
            )
            Template.objects.create(name=f"via-acme-{n}", gateway=gateway, product_id="default")
            Template.objects.create(name=f"web-{n}", ca=root_ca, allowed_domains=["example.test"])

    add_rows(0)
    [queries(url) for url in urls]  # caches (content types, sessions) warmed
    before = [queries(url) for url in urls]
    add_rows(1, 2, 3)
    assert [queries(url) for url in urls] == before


def test_a_sync_shows_its_progress_card_polling_until_it_ends(
    admin_web: Client, gateway: HandlerRegistration, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[dict[str, Any]] = []

    def start(*, registration: HandlerRegistration, full: bool, actor: Any) -> GatewaySync:
        started.append({"registration": registration, "full": full, "actor": actor})
        return GatewaySync.objects.create(gateway=registration, full=full, started_by=actor)

    monkeypatch.setattr(pki_views, "gateway_sync_start", start)
    monkeypatch.setattr(pki_views, "gateway_ping", lambda registration: None)
    monkeypatch.setattr(pki_views, "_supports_sync", lambda registration: True)

    listed = _page(admin_web.get(reverse("console:gateway-list")))
    assert 'data-action="synchronize"' in listed
    tested = admin_web.post(reverse("console:gateway-test", args=[gateway.pk]), follow=True)
    assert _messages(_page(tested)) == ["corp acme: the CA answered."]

    response = admin_web.post(
        reverse("console:gateway-sync", args=[gateway.pk]), {"full": "on"}, follow=True
    )
    page = _page(response)
    assert started[0]["full"] is True and started[0]["registration"] == gateway
    assert "corp acme: Full synchronization started." in _messages(page)
    sync = GatewaySync.objects.get()
    progress_url = reverse("console:gateway-sync-progress", args=[sync.pk])
    assert f'hx-get="{progress_url}" hx-trigger="every 2s"' in page

    sync.processed, sync.added = 250, 7
    sync.save()
    card = _page(admin_web.get(progress_url))
    assert 'data-state="running" data-processed="250" data-added="7"' in card
    assert "hx-trigger" in card

    sync.state, sync.error = GatewaySync.State.FAILED, "the CA hung up"
    sync.save()
    card = _page(admin_web.get(progress_url))
    assert 'data-state="failed"' in card and "hx-trigger" not in card
    assert "the CA hung up" in card


# --- Who may do what --------------------------------------------------------------------------


def _action_urls(
    ca: CertificateAuthority, enrollment: EnrollmentRequest, gateway_pk: int
) -> list[str]:
    return [
        reverse("console:ca-create"),
        reverse("console:ca-import"),
        ENROLL,
        reverse("console:enrollment-request-approve", args=[enrollment.pk]),
        reverse("console:enrollment-request-deny", args=[enrollment.pk]),
        reverse("console:enrollment-request-collect", args=[enrollment.pk]),
        reverse("console:certificate-revoke", args=[enrollment.certificate_id or 1]),
        reverse("console:certificate-renew", args=[enrollment.certificate_id or 1]),
        reverse("console:gateway-test", args=[gateway_pk]),
        reverse("console:gateway-sync", args=[gateway_pk]),
    ]


def test_every_action_is_refused_without_its_permission(
    plain_user: User,
    admin_web: Client,
    web_template: Template,
    root_ca: CertificateAuthority,
    gateway: HandlerRegistration,
) -> None:
    enrollment = _request_from(_enroll_csr(admin_web, "web", certs.csr("p.example.test")))
    # Seeing everything is not enough to act.
    plain_user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    viewer = _web(plain_user)
    for url in _action_urls(root_ca, enrollment, gateway.pk):
        assert viewer.post(url, {"name": "x", "template": "web", "csr": "x"}).status_code == 403, (
            url
        )
    assert CertificateAuthority.objects.count() == 1
    assert EnrollmentRequest.objects.count() == 1
    assert not IssuedCertificate.objects.filter(revoked_at__isnull=False).exists()

    # And the pages do not offer the forms they would refuse.
    assert 'data-testid="revoke-form"' not in _page(
        viewer.get(reverse("console:certificate-detail", args=[enrollment.certificate_id]))
    )
    assert 'data-action="test-connection"' not in _page(viewer.get(reverse("console:gateway-list")))
    assert "Create a CA" not in _page(viewer.get(reverse("console:ca-list")))


def test_every_page_needs_its_view_permission(
    plain_web: Client,
    admin_web: Client,
    web_template: Template,
    root_ca: CertificateAuthority,
    gateway: HandlerRegistration,
) -> None:
    enrollment = _request_from(_enroll_csr(admin_web, "web", certs.csr("v.example.test")))
    sync = GatewaySync.objects.create(gateway=gateway)
    pages = [
        reverse("console:ca-list"),
        reverse("console:ca-detail", args=[root_ca.pk]),
        reverse("console:gateway-list"),
        reverse("console:gateway-detail", args=[gateway.pk]),
        reverse("console:gateway-sync-progress", args=[sync.pk]),
        ENROLL,
        reverse("console:enrollment-template-list"),
        reverse("console:enrollment-request-list"),
        reverse("console:enrollment-request-detail", args=[enrollment.pk]),
        reverse("console:enrollment-request-certificate", args=[enrollment.pk]),
    ]
    for url in pages:
        assert plain_web.get(url).status_code == 403, url
        anonymous = Client().get(url)
        assert anonymous.status_code == 302, url
        assert anonymous["Location"] == f"{reverse('login')}?next={url}"
        assert admin_web.get(url).status_code == 200, url


def test_a_requester_sees_their_own_requests_only(
    web_template: Template, admin_web: Client
) -> None:
    carol = _user("carol", "enrollment.add_enrollmentrequest")
    carol_web = _web(carol)
    mine = _request_from(_enroll_csr(carol_web, "web", certs.csr("mine.example.test")))
    theirs = _request_from(_enroll_csr(admin_web, "web", certs.csr("theirs.example.test")))

    assert (
        carol_web.get(reverse("console:enrollment-request-detail", args=[mine.pk])).status_code
        == 200
    )
    assert (
        carol_web.get(reverse("console:enrollment-request-certificate", args=[mine.pk])).status_code
        == 200
    )
    assert (
        carol_web.get(reverse("console:enrollment-request-detail", args=[theirs.pk])).status_code
        == 404
    )
    assert carol_web.get(reverse("console:enrollment-request-list")).status_code == 403
    # Her navigation leads to the Enroll page, which she may use.
    assert f'href="{ENROLL}"' in _page(carol_web.get(ENROLL))


def test_posts_without_the_csrf_token_are_refused(
    admin_user_: User, web_template: Template
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user_)
    response = _enroll_csr(client, "web", certs.csr("csrf.example.test"))
    assert response.status_code == 403
    response = client.post(
        reverse("console:ca-create"),
        {"name": "Sneaky", "key_algorithm": "EC-P256", "validity_days": "30"},
    )
    assert response.status_code == 403
    assert not EnrollmentRequest.objects.exists()
    assert not CertificateAuthority.objects.filter(name="Sneaky").exists()


def test_actions_are_post_only(admin_web: Client, web_template: Template) -> None:
    enrollment = _request_from(_enroll_csr(admin_web, "web", certs.csr("get.example.test")))
    for name in ("approve", "deny", "collect"):
        url = reverse(f"console:enrollment-request-{name}", args=[enrollment.pk])
        assert admin_web.get(url).status_code == 405, name


def test_pages_have_no_inline_code_and_bad_page_numbers_are_harmless(
    admin_web: Client, web_template: Template, root_ca: CertificateAuthority
) -> None:
    _request_from(_enroll_csr(admin_web, "web", certs.csr("page.example.test")))
    for url in [
        reverse("console:ca-create"),
        reverse("console:ca-import"),
        reverse("console:ca-import") + "?from=pkcs12",
        reverse("console:ca-detail", args=[root_ca.pk]) + "?page=abc",
        reverse("console:enrollment-template-list"),
        ENROLL + "?template=web&method=pfx",
        reverse("console:enrollment-request-list") + "?state=all&page=999",
    ]:
        _assert_no_inline_code(_page(admin_web.get(url)))
    bad = _page(admin_web.get(reverse("console:enrollment-request-list"), {"state": "nope"}))
    assert 'data-testid="filter-errors"' in bad
    unknown = uuid.uuid4()
    assert (
        admin_web.get(reverse("console:enrollment-request-detail", args=[unknown])).status_code
        == 404
    )


# --- Bad input never breaks a page ---------------------------------------------------------


def _broken_ca_pem() -> tuple[str, str]:
    """A CA certificate whose basic constraints cannot be parsed, and its key."""
    key = certs.private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Broken CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.UnrecognizedExtension(x509.ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02"),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certs.certificate_pem(certificate), certs.key_pem(key)


def test_bad_input_is_a_form_error_never_a_server_error(
    admin_web: Client, web_template: Template, inventory
) -> None:
    certificate_pem, key_pem = _broken_ca_pem()
    broken = _page(
        admin_web.post(
            reverse("console:ca-import"),
            {
                "kind": "pem",
                "pem-name": "Broken",
                "pem-certificate_pem": certificate_pem,
                "pem-private_key_pem": key_pem,
            },
        )
    )
    assert "certificate&#x27;s extensions cannot be read" in broken
    assert not CertificateAuthority.objects.filter(name="Broken").exists()

    garbage_p12 = _page(
        admin_web.post(
            reverse("console:ca-import"),
            {
                "kind": "pkcs12",
                "pkcs12-name": "Garbage",
                "pkcs12-pkcs12": SimpleUploadedFile("x.p12", b"not pkcs12"),
            },
        )
    )
    assert _field_errors(garbage_p12)

    names = _page(_enroll_pfx(admin_web, "web", sans="bad name!, IP:300.1.1.1"))
    assert _form_errors(names)

    binary = SimpleUploadedFile("req.pem", b"-----\xff\xfe garbage")
    undecodable = _page(admin_web.post(ENROLL, {"template": "web", "csr_file": binary}))
    assert _field_errors(undecodable) == ["The file is not a PEM or DER CSR."]

    big = SimpleUploadedFile("req.pem", b"A" * (70 * 1024))
    too_big = _page(admin_web.post(ENROLL, {"template": "web", "csr_file": big}))
    assert _field_errors(too_big) == ["The file is 70 KB; a CSR is at most 64 KB."]

    both = _page(
        admin_web.post(
            ENROLL,
            {
                "template": "web",
                "csr": certs.csr("a.example.test"),
                "csr_file": SimpleUploadedFile("r.pem", certs.csr("b.example.test").encode()),
            },
        )
    )
    assert _field_errors(both) == ["Paste the CSR or upload it, not both."]

    foreign = inventory.certificate("later.example.test")
    revoke = reverse("console:certificate-revoke", args=[foreign.pk])
    assert _field_errors(_page(admin_web.post(revoke, {"revoke-reason": "abc"})))
    renew = _page(
        admin_web.post(
            reverse("console:certificate-renew", args=[foreign.pk]),
            {"renew-csr": certs.csr("later.example.test")},
        )
    )
    assert "Certyard did not issue this certificate" in _form_errors(renew)

    issued = _request_from(_enroll_csr(admin_web, "web", certs.csr("twice.example.test")))
    twice = admin_web.post(
        reverse("console:enrollment-request-approve", args=[issued.pk]), follow=True
    )
    assert _messages(_page(twice))[-1] == "Not approved: the request is issued, not pending."
    assert not CertificateAuthority.objects.filter(name__in=["Broken", "Garbage"]).exists()
