"""A certificate's state at a glance (issue 17): one status (valid, expiring, expired,
revoked, superseded, unknown) from one selector, recorded by whoever revokes or renews,
filtered in the API and the console, counted in disjoint windows on the dashboard, and
backfilled for what happened before."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import itertools
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from certyard.enrollment import services as enrollment_services
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.errors import ServiceError
from certyard.inventory import selectors, services
from certyard.inventory.models import Certificate, CertificateStatus
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, IssuedCertificate, KeyAlgorithm
from tests.certs import csr_for
from tests.certyard.enrollment.test_enrollment_gateways import (  # noqa: F401 (fixtures)
    cfssl,
    cfssl_template,
)

pytestmark = pytest.mark.django_db

_serials = itertools.count(1)


def _certificate(
    name: str, *, days: float | None, is_ca: bool = False, **fields: Any
) -> Certificate:
    """A certificate row with just what the state reads (the DER is not needed)."""
    serial = next(_serials)
    now = timezone.now()
    return Certificate.objects.create(
        der=b"",
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        sha1=hashlib.sha1(name.encode()).hexdigest(),  # noqa: S324 - a fingerprint, as stored
        serial_number=format(serial, "x"),
        issuer="CN=Test CA",
        subject=f"CN={name}",
        common_name=name,
        not_before=now - dt.timedelta(days=400),
        not_after=None if days is None else now + dt.timedelta(days=days),
        key_algorithm="EC",
        is_ca=is_ca,
        **fields,
    )


@pytest.fixture
def states() -> dict[str, Certificate]:
    """One certificate of each state, and the cases where the order decides."""
    made = {
        "valid": _certificate("valid.example.test", days=200),
        "expiring": _certificate("expiring.example.test", days=10),
        "expired": _certificate("expired.example.test", days=-1),
        "unknown": _certificate("unknown.example.test", days=None),
        "revoked": _certificate(
            "revoked.example.test",
            days=100,
            revoked_at=timezone.now(),
            revocation_reason="keyCompromise",
        ),
        "ca": _certificate("Test CA", days=3000, is_ca=True),
    }
    made["superseded"] = _certificate(
        "superseded.example.test", days=5, superseded_by=made["valid"]
    )
    # Revoked after it was renewed: revoked says more than superseded.
    made["revoked_and_superseded"] = _certificate(
        "both.example.test",
        days=-30,
        revoked_at=timezone.now(),
        revocation_reason="superseded",
        superseded_by=made["expiring"],
    )
    return made


EXPECTED = {
    "valid": CertificateStatus.VALID,
    "expiring": CertificateStatus.EXPIRING,
    "expired": CertificateStatus.EXPIRED,
    "unknown": CertificateStatus.UNKNOWN,
    "revoked": CertificateStatus.REVOKED,
    "ca": CertificateStatus.VALID,
    "superseded": CertificateStatus.SUPERSEDED,
    "revoked_and_superseded": CertificateStatus.REVOKED,
}


def test_each_state_and_its_filter_agree(states: dict[str, Certificate]) -> None:
    now = timezone.now()
    for key, certificate in states.items():
        assert selectors.certificate_status(certificate, now=now) == EXPECTED[key], key
    for status in CertificateStatus.values:
        listed = set(
            Certificate.objects.filter(selectors.certificate_status_q(status, now=now)).values_list(
                "pk", flat=True
            )
        )
        expected = {c.pk for key, c in states.items() if EXPECTED[key] == status}
        assert listed == expected, status
    in_use = set(
        Certificate.objects.filter(
            selectors.certificate_status_q(selectors.STATUS_IN_USE, now=now)
        ).values_list("common_name", flat=True)
    )
    assert in_use == {
        "valid.example.test",
        "expiring.example.test",
        "expired.example.test",
        "unknown.example.test",
        "Test CA",
    }
    with pytest.raises(ValueError, match="unknown certificate status"):
        selectors.certificate_status_q("gone")


def test_state_links_renewals_both_ways_and_names_the_reason(
    states: dict[str, Certificate],
) -> None:
    newer = selectors.certificate_state(states["valid"])
    assert newer.status == "valid" and newer.superseded_by is None
    assert [c.pk for c in newer.supersedes] == [states["superseded"].pk]
    older = selectors.certificate_state(states["superseded"])
    assert older.status == "superseded" and older.label == "Superseded"
    assert older.superseded_by == states["valid"]
    revoked = selectors.certificate_state(states["revoked"])
    assert revoked.revocation_reason == "keyCompromise"
    assert revoked.revocation_reason_label == "Key compromise"


def test_dashboard_windows_are_disjoint_and_leave_ca_revoked_and_superseded_apart(
    states: dict[str, Certificate],
) -> None:
    _certificate("week.example.test", days=3)
    _certificate("quarter.example.test", days=60)
    counts = selectors.certificate_state_counts()
    # In use: valid (200 d), expiring (10 d), expired, unknown, week (3 d), quarter (60 d).
    assert counts["in_use"] == 6
    assert counts["expired"] == 1
    assert (counts["d0_7"], counts["d8_30"], counts["d31_90"]) == (1, 1, 1)
    assert counts["unknown"] == 1
    assert counts["ca"] == 1
    assert counts["revoked"] == 2
    assert counts["superseded"] == 1
    assert counts["total"] == 10


def test_recording_services_keep_the_first_revocation_and_refuse_loops(
    states: dict[str, Certificate],
) -> None:
    valid = states["valid"]
    assert services.certificate_revocation_record(certificate=valid, reason=1) == 1
    first = Certificate.objects.get(pk=valid.pk)
    assert first.revocation_reason == "keyCompromise" and first.revoked_at is not None
    # Again, by fingerprint, with another reason: the first revocation stands.
    assert services.certificate_revocation_record(sha256=valid.sha256, reason="superseded") == 0
    assert Certificate.objects.get(pk=valid.pk).revocation_reason == "keyCompromise"
    # A certificate the inventory does not hold: nothing to record, no error.
    assert services.certificate_revocation_record(sha256="ab" * 32, reason=0) == 0
    with pytest.raises(ServiceError, match="not an RFC 5280 revocation reason"):
        services.certificate_revocation_record(certificate=valid, reason=7)
    with pytest.raises(ServiceError, match="not an RFC 5280 revocation reason"):
        services.certificate_revocation_record(certificate=valid, reason="lost it")
    # valid renewed superseded; superseded cannot then be said to renew valid.
    assert not services.certificate_supersession_record(
        old=states["valid"], new=states["superseded"]
    )
    assert not services.certificate_supersession_record(old=valid, new=valid)
    assert Certificate.objects.get(pk=valid.pk).superseded_by_id is None


# --- Through the real paths: enrollment, the built-in CA, the API, the console ---------


@pytest.fixture
def ca() -> CertificateAuthority:
    return pki_services.ca_create(name="State Root", key_algorithm=KeyAlgorithm.EC_P256)


@pytest.fixture
def web(ca: CertificateAuthority) -> Template:
    return Template.objects.create(
        name="web", ca=ca, allowed_domains=["example.test"], validity_days=90
    )


@pytest.fixture
def renewed_and_revoked(web: Template, superuser: Any) -> dict[str, Certificate]:
    """www issued then renewed (old superseded by new); api issued then revoked."""
    first = enrollment_services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("www.example.test"), actor=superuser
    )
    old = Certificate.objects.get(pk=first.certificate_id)
    renewal = enrollment_services.certificate_renew(
        certificate=old, actor=superuser, csr_pem=csr_for("www.example.test")
    ).request
    revoked = enrollment_services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("api.example.test"), actor=superuser
    )
    gone = Certificate.objects.get(pk=revoked.certificate_id)
    enrollment_services.certificate_revoke(certificate=gone, reason=1, actor=superuser)
    return {
        "old": Certificate.objects.get(pk=old.pk),
        "new": Certificate.objects.get(pk=renewal.certificate_id),
        "revoked": Certificate.objects.get(pk=gone.pk),
    }


def test_renewal_and_built_in_ca_revocation_are_recorded(
    renewed_and_revoked: dict[str, Certificate],
) -> None:
    old, new, revoked = (renewed_and_revoked[k] for k in ("old", "new", "revoked"))
    assert old.superseded_by_id == new.pk
    assert selectors.certificate_status(old) == "superseded"
    assert selectors.certificate_status(new) == "valid"
    issued = IssuedCertificate.objects.get(sha256=revoked.sha256)
    assert revoked.revoked_at == issued.revoked_at
    assert revoked.revocation_reason == "keyCompromise"
    assert selectors.certificate_status(revoked) == "revoked"


def test_a_built_in_ca_revocation_from_elsewhere_reaches_the_inventory(
    renewed_and_revoked: dict[str, Certificate],
) -> None:
    # pki revokes without enrollment (as the orchestrators' path does): the hook records it.
    new = renewed_and_revoked["new"]
    pki_services.certificate_revoke(
        issued=IssuedCertificate.objects.get(sha256=new.sha256), reason=5
    )
    new.refresh_from_db()
    assert new.revocation_reason == "cessationOfOperation"
    assert selectors.certificate_status(new) == "revoked"


def test_api_shows_state_and_filters_by_status(
    renewed_and_revoked: dict[str, Certificate], admin_api: APIClient
) -> None:
    old, new, revoked = (renewed_and_revoked[k] for k in ("old", "new", "revoked"))
    body = admin_api.get("/api/v1/certificates/", {"page_size": 100}).json()
    rows = {row["id"]: row for row in body["results"]}
    assert rows[revoked.pk]["status"] == "revoked"
    assert rows[revoked.pk]["revocation_reason"] == "keyCompromise"
    assert rows[revoked.pk]["revoked_at"] is not None
    assert rows[old.pk]["status"] == "superseded" and rows[old.pk]["superseded_by"] == new.pk
    assert rows[new.pk]["supersedes"] == [old.pk] and rows[new.pk]["superseded_by"] is None
    assert rows[new.pk]["revoked_at"] is None and rows[new.pk]["revocation_reason"] == ""

    def ids(**params: str) -> set[int]:
        answer = admin_api.get("/api/v1/certificates/", params)
        assert answer.status_code == 200, answer.content
        return {row["id"] for row in answer.json()["results"]}

    assert ids(status="revoked") == {revoked.pk}
    assert ids(status="superseded") == {old.pk}
    assert new.pk in ids(status="valid") and old.pk not in ids(status="valid")
    assert ids(status="in_use", is_ca="false") == {new.pk}
    assert all(Certificate.objects.get(pk=pk).is_ca for pk in ids(is_ca="true")) and ids(
        is_ca="true"
    )

    refused = admin_api.get("/api/v1/certificates/", {"status": "dead"})
    assert refused.status_code == 400
    assert "status" in refused.json()["error"]["fields"]

    detail = admin_api.get(f"/api/v1/certificates/{old.pk}/").json()
    assert detail["status"] == "superseded" and detail["superseded_by"] == new.pk
    assert admin_api.get(f"/api/v1/certificates/{new.pk}/").json()["supersedes"] == [old.pk]


def _web(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_console_list_badges_filter_and_page_header(
    renewed_and_revoked: dict[str, Certificate], superuser: Any
) -> None:
    old, new, revoked = (renewed_and_revoked[k] for k in ("old", "new", "revoked"))
    web = _web(superuser)
    page = web.get(reverse("console:certificate-list"), {"status": "revoked"}).content.decode()
    assert page.count('data-testid="certificate-row"') == 1
    assert f'data-id="{revoked.pk}" data-status="revoked"' in page
    assert 'data-testid="certificate-status" data-status="revoked"' in page
    page = web.get(reverse("console:certificate-list"), {"status": "bogus"}).content.decode()
    assert 'data-testid="filter-errors"' in page

    detail = web.get(reverse("console:certificate-detail", args=[revoked.pk])).content.decode()
    assert 'data-testid="certificate-state" data-status="revoked"' in detail
    assert "reason: Key compromise" in detail
    # Revoked already: the header offers no Revoke, but Renew and Add to stores.
    assert 'data-action="header-revoke"' not in detail
    assert 'data-action="header-renew"' in detail
    assert 'data-action="header-add-to-stores"' in detail

    older = web.get(reverse("console:certificate-detail", args=[old.pk])).content.decode()
    link = reverse("console:certificate-detail", args=[new.pk])
    assert 'data-testid="superseded-by"' in older and f'href="{link}"' in older
    newer = web.get(reverse("console:certificate-detail", args=[new.pk])).content.decode()
    assert 'data-testid="supersedes"' in newer
    assert f'href="{reverse("console:certificate-detail", args=[old.pk])}"' in newer
    assert 'data-action="header-revoke"' in newer


def test_header_offers_only_what_the_person_may_do(
    renewed_and_revoked: dict[str, Certificate], django_user_model: Any
) -> None:
    viewer = django_user_model.objects.create_user("viewer", password="pw")
    viewer.user_permissions.add(
        Permission.objects.get(content_type__app_label="inventory", codename="view_certificate")
    )
    page = (
        _web(viewer)
        .get(reverse("console:certificate-detail", args=[renewed_and_revoked["new"].pk]))
        .content.decode()
    )
    assert 'data-testid="certificate-actions"' in page
    for action in ("header-renew", "header-revoke", "header-add-to-stores"):
        assert f'data-action="{action}"' not in page


def test_backfill_restores_revocations_and_renewals(
    renewed_and_revoked: dict[str, Certificate],
) -> None:
    # A database from before: the history is in pki and enrollment, none in the inventory.
    Certificate.objects.update(revoked_at=None, revocation_reason="", superseded_by=None)
    migration = importlib.import_module(
        "certyard.enrollment.migrations.0007_certificate_state_backfill"
    )
    migration.backfill(apps, None)
    old, new, revoked = (
        Certificate.objects.get(pk=renewed_and_revoked[k].pk) for k in ("old", "new", "revoked")
    )
    assert old.superseded_by_id == new.pk
    assert revoked.revocation_reason == "keyCompromise"
    assert revoked.revoked_at == IssuedCertificate.objects.get(sha256=revoked.sha256).revoked_at
    assert new.superseded_by_id is None and new.revoked_at is None
    # Run twice: nothing changes.
    migration.backfill(apps, None)
    assert Certificate.objects.filter(revoked_at__isnull=False).count() == 1
    assert EnrollmentRequest.objects.filter(type="renew").count() == 1


# --- Through a CA gateway (a real ``cfssl serve``) -------------------------------------


def test_gateway_revocations_are_recorded_whether_revoked_here_or_at_the_ca(
    cfssl_template: Template,  # noqa: F811 (the imported fixture)
    cfssl: Any,  # noqa: F811
) -> None:
    from certyard.enrollment.models import GatewayRecord
    from certyard.enrollment.sync import gateway_sync_run, gateway_sync_start
    from handlers.builtin.cfssl import CfsslGateway
    from handlers.gateways import GatewayRevocation, RevocationReason
    from handlers.parameters import parameters_check

    here, there = (
        enrollment_services.enrollment_submit_csr(
            template_name="cfssl-web", csr_pem=csr_for(f"{name}.example.test")
        )
        for name in ("here", "there")
    )
    assert here.state == there.state == "issued", (here.failure_reason, there.failure_reason)
    # Revoked through the platform: recorded with the gateway's record.
    first = Certificate.objects.get(pk=here.certificate_id)
    enrollment_services.certificate_revoke(certificate=first, reason=3)
    first.refresh_from_db()
    assert first.revocation_reason == "affiliationChanged"
    assert first.revoked_at == GatewayRecord.objects.get(certificate=first).revoked_at
    # Renewed through the gateway: superseded, linked.
    renewal = enrollment_services.certificate_renew(
        certificate=first, actor=None, csr_pem=csr_for("here.example.test")
    ).request
    assert Certificate.objects.get(pk=first.pk).superseded_by_id == renewal.certificate_id

    # Revoked at the CA behind the platform's back: the next sync brings the state in.
    second = Certificate.objects.get(pk=there.certificate_id)
    direct = CfsslGateway(
        parameters_check(
            CfsslGateway.parameters, {"url": cfssl.url, "certdb_path": str(cfssl.certdb_path)}
        )
    )
    direct.revoke(
        GatewayRevocation(
            ca_request_id=there.ca_request_id,
            certificate_pem=there.certificate_pem,
            serial_number=there.serial_number,
            reason=RevocationReason.KEY_COMPROMISE,
        )
    )
    assert selectors.certificate_status(second) != "revoked"
    sync = gateway_sync_start(registration=cfssl_template.gateway, full=True)
    gateway_sync_run(sync.pk)
    second.refresh_from_db()
    assert selectors.certificate_status(second) == "revoked"
    assert second.revocation_reason == "keyCompromise"
