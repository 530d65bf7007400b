"""Enrollment through the built-in CA: CSR and PFX, approval both ways, renewal,
revocation, and every kind of bad input recorded as a failed request with nothing issued."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from certyard.enrollment import services
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate, CertificateMetadata, MetadataField
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, IssuedCertificate, KeyAlgorithm
from certyard.workflows.models import Event
from tests.certs import csr_for, private_key

pytestmark = pytest.mark.django_db
State = EnrollmentRequest.State


@pytest.fixture
def ca() -> CertificateAuthority:
    root = pki_services.ca_create(name="Root", key_algorithm=KeyAlgorithm.EC_P384, path_length=1)
    return pki_services.ca_create(name="Issuing", key_algorithm=KeyAlgorithm.EC_P256, parent=root)


@pytest.fixture
def web(ca: CertificateAuthority) -> Template:
    return Template.objects.create(
        name="web", ca=ca, allowed_domains=["example.test"], validity_days=30
    )


@pytest.fixture
def users(django_user_model: Any) -> tuple[Any, Any]:
    requester = django_user_model.objects.create_user("alice", password="pw")
    approver = django_user_model.objects.create_user("bob", password="pw")
    perms = Permission.objects.filter(
        content_type__app_label="enrollment",
        codename__in=[
            "add_enrollmentrequest",
            "view_enrollmentrequest",
            "approve_enrollmentrequest",
            "change_enrollmentrequest",
            # Approving someone else's request is acting on it (issue 14): the grant-all
            # the upgrade gives every approver.
            "manage_any_enrollmentrequest",
        ],
    )
    for user in (requester, approver):
        user.user_permissions.set(perms)
    return requester, approver


def events(kind: str) -> list[Event]:
    return list(Event.objects.filter(kind=kind).order_by("pk"))


def test_csr_enrollment_issues_records_in_inventory_and_emits_issued(web: Template) -> None:
    request = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("www.example.test", "api.example.test")
    )
    assert request.state == State.ISSUED, request.failure_reason
    certificate = x509.load_pem_x509_certificate(request.certificate_pem.encode())
    sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["www.example.test", "api.example.test"]
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc <= dt.timedelta(
        days=30, minutes=5
    )
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in eku] == ["1.3.6.1.5.5.7.3.1"]
    inventory = Certificate.objects.get(pk=request.certificate_id)
    assert inventory.sha256 == certificate.fingerprint(hashes.SHA256()).hex()
    # The issuing CA is in the inventory too, and linked as the issuer.
    assert inventory.issuer_certificate is not None
    (issued,) = events("certificate.issued")
    assert issued.data["enrollment_id"] == str(request.pk)
    assert issued.data["template"] == "web"


def test_an_issued_certificate_is_read_once_on_its_way_to_the_inventory(
    web: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parsed certificate goes down to the inventory: its DER is not loaded again."""
    from certyard.x509 import certificate_parse

    loaded: list[bytes] = []
    load = x509.load_der_x509_certificate

    def counted(data: bytes, *args: Any) -> x509.Certificate:
        loaded.append(bytes(data))
        return load(data, *args)

    monkeypatch.setattr(x509, "load_der_x509_certificate", counted)
    request = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("once.example.test")
    )
    assert request.state == State.ISSUED, request.failure_reason
    monkeypatch.undo()
    der = x509.load_pem_x509_certificate(request.certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    assert der not in loaded
    inventory = Certificate.objects.get(pk=request.certificate_id)
    parsed = certificate_parse(der)  # what reading the DER would have recorded
    assert (inventory.sha256, inventory.serial_number, inventory.subject) == (
        parsed.sha256,
        parsed.serial_number,
        parsed.subject,
    )
    assert (inventory.sans, inventory.key_algorithm, inventory.parse_warnings) == (
        parsed.sans,
        parsed.key_algorithm,
        parsed.parse_warnings,
    )


@pytest.mark.parametrize(
    "key",
    [
        private_key("rsa"),
        private_key("ec384"),
    ],
    ids=["RSA-2048", "EC-P384"],
)
def test_allowed_key_types_issue(web: Template, key: Any) -> None:
    request = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("k.example.test", key=key)
    )
    assert request.state == State.ISSUED


def _refused(**kwargs: Any) -> EnrollmentRequest:
    before = IssuedCertificate.objects.count()
    with pytest.raises(services.EnrollmentRefused) as caught:
        services.enrollment_submit_csr(**kwargs)
    request = EnrollmentRequest.objects.get(pk=caught.value.details["enrollment_id"])
    assert request.state == State.FAILED
    assert request.failure_reason == caught.value.message
    assert not request.certificate_pem and request.certificate_id is None
    assert IssuedCertificate.objects.count() == before  # nothing issued
    return request


def _tampered_csr() -> str:
    pem = csr_for("www.example.test")
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize(
    ("template_name", "csr", "message"),
    [
        ("web", "garbage", "not a readable PEM certificate signing request"),
        ("web", "", "send a certificate signing request"),
        (
            "web",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "not a readable PEM",
        ),
        ("web", "TAMPERED", "signature does not verify"),
        ("web", "RSA1024", "does not allow RSA-1024 keys"),
        ("web", "ED25519", "does not allow Ed25519 keys"),
        ("web", "OUTSIDE", "outside the domains"),
        ("web", "WILDCARD", "is a wildcard"),
        ("web", "IP", "does not allow IP addresses"),
        ("web", "BADNAME", "is not a valid DNS name"),
        ("nope", "GOOD", "there is no template named 'nope'"),
    ],
)
def test_bad_input_is_recorded_as_failed_and_nothing_is_issued(
    web: Template, template_name: str, csr: str, message: str
) -> None:
    csrs = {
        "TAMPERED": _tampered_csr,
        "RSA1024": lambda: csr_for("a.example.test", key=private_key("rsa1024")),
        "ED25519": lambda: csr_for("a.example.test", key=private_key("ed25519")),
        "OUTSIDE": lambda: csr_for("www.example.com"),
        "WILDCARD": lambda: csr_for("*.example.test"),
        "IP": lambda: csr_for("a.example.test", ips=("10.0.0.1",)),
        "BADNAME": lambda: csr_for("bad_name!.example.test"),
        "GOOD": lambda: csr_for("www.example.test"),
    }
    pem = csrs[csr]() if csr in csrs else csr
    request = _refused(template_name=template_name, csr_pem=pem)
    assert message in request.failure_reason


def test_subject_pattern_required_fields_and_metadata_rules(web: Template) -> None:
    web.san_pattern = r"[a-z]+\.example\.test"
    web.subject_attributes = {"CN": {"rule": "required"}, "O": {"rule": "required"}}
    web.save()
    MetadataField.objects.create(name="owner", label="Owner", required_at_enrollment=True)
    no_org = _refused(template_name="web", csr_pem=csr_for("www.example.test"))
    assert "requires the subject field O" in no_org.failure_reason
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test"),
        ]
    )
    deep = _refused(template_name="web", csr_pem=csr_for("a.b.example.test", subject=subject))
    assert "does not match template 'web''s pattern" in deep.failure_reason
    missing = _refused(template_name="web", csr_pem=csr_for("www.example.test", subject=subject))
    assert "metadata required at enrollment is missing: owner" in missing.failure_reason
    issued = services.enrollment_submit_csr(
        template_name="web",
        csr_pem=csr_for("www.example.test", subject=subject),
        metadata={"owner": "team-web"},
    )
    assert issued.state == State.ISSUED
    value = CertificateMetadata.objects.get(certificate_id=issued.certificate_id)
    assert value.value == "team-web"


def test_disabled_ca_and_disabled_template_are_refused(web: Template) -> None:
    web.ca.enabled = False
    web.ca.save()
    refused = _refused(template_name="web", csr_pem=csr_for("www.example.test"))
    assert "disabled" in refused.failure_reason
    web.enabled = False
    web.save()
    assert (
        "disabled"
        in _refused(template_name="web", csr_pem=csr_for("www.example.test")).failure_reason
    )


def test_approval_pending_then_approved_then_issued_with_events(web: Template, users) -> None:
    requester, approver = users
    web.require_approval = True
    web.save()
    request = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("www.example.test"), actor=requester
    )
    assert request.state == State.PENDING and not request.certificate_pem
    assert [e.subject_id for e in events("enrollment.pending")] == [str(request.pk)]
    with pytest.raises(ServiceError, match="cannot approve your own request") as refused:
        services.enrollment_approve(request=request, actor=requester)
    assert refused.value.http_status == 403
    request.refresh_from_db()
    assert request.state == State.PENDING
    services.enrollment_approve(request=request, actor=approver, comment="looks right")
    request.refresh_from_db()
    assert request.state == State.ISSUED
    assert request.decided_by == approver and request.decision_comment == "looks right"
    (approved,) = events("enrollment.approved")
    assert approved.data["decided_by"] == "bob"
    assert len(events("certificate.issued")) == 1
    with pytest.raises(ServiceError, match="not pending"):
        services.enrollment_approve(request=request, actor=approver)


def test_approval_pending_then_denied(web: Template, users) -> None:
    requester, approver = users
    web.require_approval = True
    web.save()
    request = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("www.example.test"), actor=requester
    )
    with pytest.raises(ServiceError, match="say why"):
        services.enrollment_deny(request=request, actor=approver, comment="  ")
    services.enrollment_deny(request=request, actor=approver, comment="not our domain owner")
    request.refresh_from_db()
    assert request.state == State.DENIED and not request.certificate_pem
    (denied,) = events("enrollment.denied")
    assert denied.data["comment"] == "not our domain owner"
    assert not events("certificate.issued")
    assert IssuedCertificate.objects.filter(ca=web.ca).count() == 0


def test_pfx_enrollment_returns_the_key_once_and_archives_only_when_asked(
    web: Template, users
) -> None:
    requester, approver = users
    submitted = services.enrollment_submit_pfx(
        template_name="web",
        common_name="app.example.test",
        sans="app.example.test, www.app.example.test",
        key_algorithm=KeyAlgorithm.RSA_2048,
        password="correct horse",
        actor=requester,
    )
    assert submitted.pfx is not None
    key, certificate, chain = pkcs12.load_key_and_certificates(submitted.pfx, b"correct horse")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert certificate is not None and len(chain) == 2  # the issuing CA and its root
    request = EnrollmentRequest.objects.get(pk=submitted.request.pk)
    assert request.private_key_pem == "" and request.pfx_collected_at is not None
    with pytest.raises(ServiceError, match="already collected"):
        services.enrollment_pfx_collect(request=request, password="correct horse", actor=requester)

    # Approval needed, keys archived: held until collected, then kept (encrypted).
    web.require_approval = True
    web.archive_keys = True
    web.save()
    pending = services.enrollment_submit_pfx(
        template_name="web",
        common_name="db.example.test",
        key_algorithm=KeyAlgorithm.EC_P256,
        password="correct horse",
        actor=requester,
    )
    assert pending.pfx is None and pending.request.state == State.PENDING
    services.enrollment_approve(request=pending.request, actor=approver)
    with pytest.raises(ServiceError, match="only the requester"):
        services.enrollment_pfx_collect(
            request=pending.request, password="another pass", actor=approver
        )
    pfx = services.enrollment_pfx_collect(
        request=pending.request, password="another pass", actor=requester
    )
    key, certificate, _ = pkcs12.load_key_and_certificates(pfx, b"another pass")
    assert certificate.subject.rfc4514_string() == "CN=db.example.test"
    pending.request.refresh_from_db()
    assert pending.request.private_key_pem  # archived
    # Refusals: short password, key type the template does not allow.
    with pytest.raises(services.EnrollmentRefused, match="at least 8"):
        services.enrollment_submit_pfx(
            template_name="web", common_name="x.example.test", password="short"
        )
    with pytest.raises(services.EnrollmentRefused, match="does not allow Ed25519"):
        services.enrollment_submit_pfx(
            template_name="web",
            common_name="x.example.test",
            key_algorithm="Ed25519",
            password="long enough",
        )


def test_renew_with_a_new_csr_and_pfx_with_the_archived_key(web: Template, users) -> None:
    requester, _ = users
    first = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("www.example.test"), actor=requester
    )
    old = Certificate.objects.get(pk=first.certificate_id)
    renewed = services.certificate_renew(
        certificate=old, actor=requester, csr_pem=csr_for("www.example.test")
    ).request
    assert renewed.state == State.ISSUED and renewed.type == "renew"
    assert renewed.renewal_of == old and renewed.certificate_id != old.pk
    (event,) = events("certificate.renewed")
    assert event.data["renewal_of"] == old.sha256
    with pytest.raises(ServiceError, match="send a CSR"):
        services.certificate_renew(certificate=old, actor=requester)

    web.archive_keys = True
    web.save()
    pfx = services.enrollment_submit_pfx(
        template_name="web", common_name="app.example.test", password="password1", actor=requester
    )
    key1, _, _ = pkcs12.load_key_and_certificates(pfx.pfx, b"password1")
    same = services.certificate_renew(
        certificate=Certificate.objects.get(pk=pfx.request.certificate_id),
        actor=requester,
        reuse_key=True,
        password="password2",
    )
    key2, _, _ = pkcs12.load_key_and_certificates(same.pfx, b"password2")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key1.public_key().public_bytes(serialization.Encoding.DER, public) == (
        key2.public_key().public_bytes(serialization.Encoding.DER, public)
    )
    # A certificate the platform did not issue cannot be renewed here.
    stranger = Certificate.objects.exclude(
        pk__in=EnrollmentRequest.objects.values("certificate_id")
    ).first()
    with pytest.raises(ServiceError, match="did not issue"):
        services.certificate_renew(certificate=stranger, actor=requester, csr_pem="x")


def test_revoke_through_the_api_updates_crl_and_emits_revoked(web: Template, superuser) -> None:
    api = APIClient()
    api.force_authenticate(superuser)
    response = api.post(
        "/api/v1/enrollments/",
        {"template": "web", "csr": csr_for("www.example.test")},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == "issued"
    revoked = api.post(
        f"/api/v1/certificates/{body['certificate']}/revoke/", {"reason": 1}, format="json"
    )
    assert revoked.status_code == 204, revoked.content
    again = api.post(f"/api/v1/certificates/{body['certificate']}/revoke/", {}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_revoked"
    ca = CertificateAuthority.objects.get(pk=web.ca_id)
    crl = x509.load_der_x509_crl(bytes(ca.crl_der))
    serial = int(body["serial_number"], 16)
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    (event,) = events("certificate.revoked")
    assert event.data["reason_code"] == 1
    bad_reason = api.post(
        f"/api/v1/certificates/{body['certificate']}/revoke/", {"reason": 7}, format="json"
    )
    assert bad_reason.status_code == 400


def test_api_refusal_answers_json_with_the_failed_request(web: Template, superuser) -> None:
    api = APIClient()
    api.force_authenticate(superuser)
    response = api.post(
        "/api/v1/enrollments/", {"template": "web", "csr": "not a csr"}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "not a readable PEM" in error["message"]
    failed = api.get(f"/api/v1/enrollments/{error['enrollment_id']}/").json()
    assert failed["state"] == "failed" and failed["failure_reason"] == error["message"]
    listed = api.get("/api/v1/enrollments/?state=failed").json()
    assert [r["id"] for r in listed["results"]] == [error["enrollment_id"]]
    assert api.get("/api/v1/enrollments/?state=bogus").status_code == 400


def test_api_approval_permissions_and_self_approval(web: Template, users, superuser) -> None:
    requester, approver = users
    web.require_approval = True
    web.save()
    alice, bob = APIClient(), APIClient()
    alice.force_authenticate(requester)
    bob.force_authenticate(approver)
    created = alice.post(
        "/api/v1/enrollments/",
        {"template": "web", "csr": csr_for("www.example.test")},
        format="json",
    ).json()
    assert created["state"] == "pending"
    own = alice.post(f"/api/v1/enrollments/{created['id']}/approve/", {}, format="json")
    assert own.status_code == 403 and own.json()["error"]["code"] == "self_approval"
    approved = bob.post(
        f"/api/v1/enrollments/{created['id']}/approve/", {"comment": "ok"}, format="json"
    )
    assert approved.status_code == 200 and approved.json()["state"] == "issued"
    requester.user_permissions.remove(Permission.objects.get(codename="approve_enrollmentrequest"))
    second = alice.post(
        "/api/v1/enrollments/",
        {"template": "web", "csr": csr_for("a.example.test")},
        format="json",
    ).json()
    nobody = APIClient()
    nobody.force_authenticate(type(requester).objects.get(pk=requester.pk))  # no cached perms
    assert (
        nobody.post(
            f"/api/v1/enrollments/{second['id']}/deny/", {"comment": "x"}, format="json"
        ).status_code
        == 403
    )


def test_ca_api_create_and_import(superuser, viewer_api) -> None:
    api = APIClient()
    api.force_authenticate(superuser)
    root = api.post(
        "/api/v1/cas/",
        {"name": "API Root", "key_algorithm": "RSA-3072", "path_length": 1},
        format="json",
    )
    assert root.status_code == 201, root.content
    sub = api.post(
        "/api/v1/cas/",
        {"name": "API Sub", "parent": root.json()["id"], "key_algorithm": "Ed25519"},
        format="json",
    )
    assert sub.status_code == 201 and sub.json()["origin"] == "intermediate"
    assert "private_key_pem" not in sub.json()
    assert sub.json()["urls"]["crl_url"].endswith(f"/pki/{sub.json()['id']}/crl")
    assert viewer_api.post("/api/v1/cas/", {"name": "no"}, format="json").status_code == 403
    bad = api.post("/api/v1/cas/import/", {"name": "x", "pkcs12": "!!!"}, format="json")
    assert bad.status_code == 400 and "base64" in bad.json()["error"]["message"]
    p12 = api.post(
        "/api/v1/cas/import/",
        {"name": "x", "pkcs12": base64.b64encode(b"junk").decode(), "password": "pw"},
        format="json",
    )
    assert p12.status_code == 400 and "cannot be opened" in p12.json()["error"]["message"]


def test_batch_enrollment_issues_the_good_and_records_the_bad(web: Template, superuser) -> None:
    api = APIClient()
    api.force_authenticate(superuser)
    good = [csr_for(f"h{n}.example.test") for n in range(5)]
    csrs = [*good[:2], "garbage", csr_for("www.example.com"), *good[2:]]
    response = api.post(
        "/api/v1/enrollments/batch/", {"template": "web", "csrs": csrs}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["issued"], body["pending"], body["failed"]) == (5, 0, 2)
    states = [r["state"] for r in body["results"]]
    assert states == ["issued", "issued", "failed", "failed", "issued", "issued", "issued"]
    assert "not a readable PEM" in body["results"][2]["failure_reason"]
    assert "outside the domains" in body["results"][3]["failure_reason"]
    assert IssuedCertificate.objects.filter(ca=web.ca).count() == 5
    assert len(events("certificate.issued")) == 5
    # What was written reads back as it was answered (rows are inserted without the ORM).
    for answered in body["results"]:
        stored = EnrollmentRequest.objects.get(pk=answered["id"])
        assert stored.sans == answered["sans"] and stored.state == answered["state"]
        assert stored.requested_by == superuser and stored.created_at is not None
        assert stored.failure_reason == answered["failure_reason"]
    inventory = Certificate.objects.filter(pk__in=[r["certificate"] for r in body["results"]])
    assert inventory.count() == 5

    web.require_approval = True
    web.save()
    pending = api.post(
        "/api/v1/enrollments/batch/", {"template": "web", "csrs": good[:3]}, format="json"
    ).json()
    assert pending["pending"] == 3 and len(events("enrollment.pending")) == 3
    unknown = api.post(
        "/api/v1/enrollments/batch/", {"template": "nope", "csrs": good[:2]}, format="json"
    ).json()
    assert unknown["failed"] == 2
    assert "no template named 'nope'" in unknown["results"][0]["failure_reason"]
    too_many = api.post(
        "/api/v1/enrollments/batch/", {"template": "web", "csrs": []}, format="json"
    )
    assert too_many.status_code == 400


# --- The built-in CA-workflow handlers, through the real runner ------------------------------


def _register(name: str, handler: str, events: list[str], **values: Any) -> Any:
    from certyard.workflows.models import HandlerRegistration
    from certyard.workflows.services import registration_save

    registration = HandlerRegistration(name=name, handler=handler, events=events)
    return registration_save(registration=registration, values=values)


def _run_handlers(kind: str, capture: Any) -> list[Any]:
    from certyard.workflows.models import HandlerRun
    from certyard.workflows.runner import event_runs_execute

    runs = []
    for event in events(kind):
        with capture(execute=True):
            event_runs_execute(event.pk)
        runs += list(HandlerRun.objects.filter(event=event))
    return runs


def test_rule_approves_matching_requests_and_leaves_the_others(
    web: Template, users, django_capture_on_commit_callbacks
) -> None:
    requester, _ = users
    web.require_approval = True
    web.save()
    _register(
        "auto-approve web",
        "certyard.enrollment_rules",
        ["enrollment.pending"],
        templates=["web"],
        allowed_domains=["internal.example.test"],
        max_names=2,
        comment="internal names",
    )
    inside = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("a.internal.example.test"), actor=requester
    )
    outside = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("www.example.test"), actor=requester
    )
    runs = _run_handlers("enrollment.pending", django_capture_on_commit_callbacks)
    assert [r.state for r in runs] == ["succeeded", "succeeded"]
    inside.refresh_from_db()
    outside.refresh_from_db()
    assert inside.state == State.ISSUED
    assert inside.decided_by is None and inside.decided_by_handler == "auto-approve web"
    assert inside.decision_comment == "internal names"
    assert outside.state == State.PENDING
    assert "outside" in runs[1].message
    (approved,) = events("enrollment.approved")
    assert approved.data["decided_by"] == "handler:auto-approve web"


def test_rule_config_is_checked() -> None:
    from handlers.builtin.enrollment import EnrollmentRules
    from handlers.parameters import ParameterError

    with pytest.raises(ParameterError, match="at least one condition"):
        EnrollmentRules.config_check({"verdict": "approve"})
    with pytest.raises(ParameterError, match="says why"):
        EnrollmentRules.config_check({"templates": ["x"], "verdict": "deny"})


def test_auto_renew_renews_platform_keys_once_and_refuses_csr_ones(
    web: Template, users, django_capture_on_commit_callbacks
) -> None:
    from certyard.workflows.services import event_emit

    requester, _ = users
    web.archive_keys = True
    web.save()
    _register("renew", "certyard.auto_renew", ["certificate.expiring"], days=30)
    pfx = services.enrollment_submit_pfx(
        template_name="web", common_name="app.example.test", password="password1", actor=requester
    ).request
    csr = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("www.example.test"), actor=requester
    )
    certificates = Certificate.objects.in_bulk([pfx.certificate_id, csr.certificate_id])
    for location in (1, 2):  # two locations of the PFX one warn; one renewal
        event_emit(
            kind="certificate.expiring",
            subject_type="certificate",
            subject_id=pfx.certificate_id,
            data={
                "days": 7,
                "sha256": certificates[pfx.certificate_id].sha256,
                "location_id": location,
            },
        )
    event_emit(
        kind="certificate.expiring",
        subject_type="certificate",
        subject_id=csr.certificate_id,
        data={"days": 7, "sha256": certificates[csr.certificate_id].sha256},
    )
    runs = _run_handlers("certificate.expiring", django_capture_on_commit_callbacks)
    assert [r.state for r in runs] == ["succeeded", "succeeded", "failed"]
    assert "enrolled with a CSR" in runs[2].error
    (renewal,) = EnrollmentRequest.objects.filter(type="renew")
    assert renewal.state == State.ISSUED and renewal.renewal_of_id == pfx.certificate_id
    assert renewal.requested_by == requester and renewal.pfx_available
    pfx_bytes = services.enrollment_pfx_collect(
        request=renewal, password="new password", actor=requester
    )
    _, certificate, _ = pkcs12.load_key_and_certificates(pfx_bytes, b"new password")
    assert certificate.subject.rfc4514_string() == "CN=app.example.test"
