"""Issue 14, finding 1: another enrollee could take someone's archived private key.

A user with only "add enrollment request" and "view certificate" renewed, with
``reuse_key``, a certificate someone else enrolled with an archived key, and received a
PKCS#12 with that person's key (at once, or after an approver approved the renewal that
named the attacker as its requester). Now whoever acts on a certificate must hold it (its
enrollee, its template's or stores' groups, or ``inventory.manage_any_certificate``), and
reusing an archived key needs its enrollee or ``enrollment.recover_archived_key``, audited.
All through the real API.
"""

from __future__ import annotations

import base64
import importlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient

from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.inventory.models import Certificate
from certyard.pki import services as pki_services
from certyard.pki.models import KeyAlgorithm
from certyard.workflows.models import Event
from tests.certyard.conftest import error_of

pytestmark = pytest.mark.django_db

ENROLLEE_PERMISSIONS = [
    ("enrollment", "add_enrollmentrequest"),
    ("inventory", "view_certificate"),
]
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def _person(name: str, *perms: tuple[str, str]) -> Any:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(name, f"{name}@example.test")
    for app, codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return user


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _public(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, SPKI)


@pytest.fixture
def template() -> Template:
    root = pki_services.ca_create(name="Root", key_algorithm=KeyAlgorithm.EC_P256, path_length=0)
    return Template.objects.create(
        name="web", ca=root, allowed_domains=["example.test"], archive_keys=True
    )


@pytest.fixture
def alice() -> Any:
    return _person("alice", *ENROLLEE_PERMISSIONS)


@pytest.fixture
def mallory() -> Any:
    """Another enrollee, with exactly alice's permissions."""
    return _person("mallory", *ENROLLEE_PERMISSIONS)


@pytest.fixture
def enrolled(template: Template, alice: Any) -> dict[str, Any]:
    """alice's PFX enrollment through the API: her certificate and her (archived) key."""
    response = _client(alice).post(
        "/api/v1/enrollments/pfx/",
        {"template": "web", "common_name": "alice.example.test", "password": "alice-pass-1"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    key, _, _ = pkcs12.load_key_and_certificates(base64.b64decode(body["pkcs12"]), b"alice-pass-1")
    request = EnrollmentRequest.objects.get(pk=body["enrollment"]["id"])
    assert request.private_key_pem  # archived
    return {"certificate": request.certificate_id, "key": key}


def _renew(user: Any, certificate_id: int, **body: Any) -> Any:
    return _client(user).post(f"/api/v1/certificates/{certificate_id}/renew/", body, format="json")


def test_another_enrollee_cannot_take_an_archived_key(enrolled, mallory) -> None:
    before = EnrollmentRequest.objects.count()
    response = _renew(mallory, enrolled["certificate"], reuse_key=True, password="mallory-pass")
    assert response.status_code == 403, response.content
    error = error_of(response)
    assert error["code"] == "not_yours"
    assert "pkcs12" not in response.json()
    assert EnrollmentRequest.objects.count() == before  # nothing written
    assert not EnrollmentRequest.objects.filter(type="renew").exists()
    assert not Event.objects.filter(kind="key.archived_reused").exists()


def test_not_even_through_an_approver(enrolled, mallory, template) -> None:
    """With approval required the renewal used to wait, naming mallory as its requester,
    for an approver: now it is refused before any request exists."""
    template.require_approval = True
    template.save()
    response = _renew(mallory, enrolled["certificate"], reuse_key=True, password="mallory-pass")
    assert response.status_code == 403 and error_of(response)["code"] == "not_yours"
    assert not EnrollmentRequest.objects.filter(requested_by=mallory).exists()


def test_another_enrollee_cannot_renew_or_revoke_with_a_new_key(enrolled, mallory) -> None:
    mallory.user_permissions.add(Permission.objects.get(codename="change_enrollmentrequest"))
    renewed = _renew(mallory, enrolled["certificate"], password="mallory-pass")
    assert renewed.status_code == 403 and error_of(renewed)["code"] == "not_yours"
    revoked = _client(mallory).post(
        f"/api/v1/certificates/{enrolled['certificate']}/revoke/", {"reason": 1}, format="json"
    )
    assert revoked.status_code == 403 and error_of(revoked)["code"] == "not_yours"
    assert not EnrollmentRequest.objects.filter(requested_by=mallory).exists()
    assert not Event.objects.filter(kind="certificate.revoked").exists()


def test_the_enrollee_reuses_her_own_key_audited(enrolled, alice) -> None:
    response = _renew(alice, enrolled["certificate"], reuse_key=True, password="alice-pass-2")
    assert response.status_code == 201, response.content
    key, _, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(response.json()["pkcs12"]), b"alice-pass-2"
    )
    assert _public(key) == _public(enrolled["key"])
    (event,) = Event.objects.filter(kind="key.archived_reused")
    certificate = Certificate.objects.get(pk=enrolled["certificate"])
    assert event.subject_id == certificate.sha256
    assert event.data["reused_by"] == "alice" and event.data["key_enrollee"] == "alice"
    assert event.data["recovery"] is False
    assert event.data["enrollment_id"] == response.json()["enrollment"]["id"]


def test_key_recovery_needs_its_permission_and_is_audited(enrolled, template) -> None:
    # In the template's group: may renew (a new key), not take alice's key.
    team = Group.objects.create(name="web-team")
    template.groups.add(team)
    colleague = _person("carol", *ENROLLEE_PERMISSIONS)
    colleague.groups.add(team)
    refused = _renew(colleague, enrolled["certificate"], reuse_key=True, password="carol-pass")
    assert refused.status_code == 403 and error_of(refused)["code"] == "not_yours"
    assert "recover_archived_key" in error_of(refused)["message"]
    assert not EnrollmentRequest.objects.filter(requested_by=colleague).exists()
    fresh = _renew(colleague, enrolled["certificate"], password="carol-pass")
    assert fresh.status_code == 201, fresh.content
    key, _, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(fresh.json()["pkcs12"]), b"carol-pass"
    )
    assert _public(key) != _public(enrolled["key"])

    # A key-recovery officer: allowed, and the event log says who took whose key.
    officer = _person(
        "oscar",
        *ENROLLEE_PERMISSIONS,
        ("inventory", "manage_any_certificate"),
        ("enrollment", "recover_archived_key"),
    )
    recovered = _renew(officer, enrolled["certificate"], reuse_key=True, password="oscar-pass")
    assert recovered.status_code == 201, recovered.content
    key, _, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(recovered.json()["pkcs12"]), b"oscar-pass"
    )
    assert _public(key) == _public(enrolled["key"])
    (event,) = Event.objects.filter(kind="key.archived_reused")
    assert event.data["reused_by"] == "oscar" and event.data["key_enrollee"] == "alice"
    assert event.data["recovery"] is True
    assert "PRIVATE KEY" not in str(event.data) and "PRIVATE KEY" not in event.subject_label


def test_upgrade_gives_grant_all_to_who_could_act_before(django_user_model) -> None:
    """The data migrations: holders of the old change/approve permissions, people and
    groups, get the new grant-all ones; nobody gets key recovery."""
    changer = _person("changer", ("inventory", "change_certificatestore"))
    revoker_group = Group.objects.create(name="revokers")
    revoker_group.permissions.add(Permission.objects.get(codename="change_enrollmentrequest"))
    approver = _person("approver", ("enrollment", "approve_enrollmentrequest"))
    importlib.import_module("certyard.inventory.migrations.0010_store_groups_and_grant_all").grant(
        apps, None
    )
    importlib.import_module(
        "certyard.enrollment.migrations.0004_template_groups_and_grant_all"
    ).grant(apps, None)
    fresh = django_user_model.objects.get
    assert fresh(pk=changer.pk).has_perm("inventory.manage_any_store")
    assert not fresh(pk=changer.pk).has_perm("inventory.manage_any_certificate")
    assert set(revoker_group.permissions.values_list("codename", flat=True)) >= {
        "manage_any_certificate",
        "manage_any_enrollmentrequest",
    }
    assert fresh(pk=approver.pk).has_perm("enrollment.manage_any_enrollmentrequest")
    assert not fresh(pk=approver.pk).has_perm("enrollment.recover_archived_key")
