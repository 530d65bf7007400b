"""Secrets at rest: store passwords and CA private keys are encrypted in the database."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import connection

from certyard.encryption import decrypt
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create
from certyard.pki.models import CertificateAuthority
from certyard.pki.services import orchestrator_ca_get_or_create

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple 42!"


def _raw_column(model: type, column: str, pk: object) -> str:
    """The column's value as the database holds it, bypassing the model field."""
    table = connection.ops.quote_name(model._meta.db_table)
    quoted = connection.ops.quote_name(column)
    key = connection.ops.quote_name(model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quoted} FROM {table} WHERE {key} = %s",  # noqa: S608
            [model._meta.pk.get_db_prep_value(pk, connection)],
        )
        rows = cursor.fetchall()
    assert len(rows) == 1
    return rows[0][0]


def _store(orchestrator, path: str, password: str) -> CertificateStore:
    return store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        client_machine=orchestrator.client_machine,
        store_path=path,
        orchestrator=orchestrator,
        password=password,
    )


def test_store_password_is_encrypted_in_the_database_and_decrypts_on_access(agent) -> None:
    store = _store(agent.orchestrator, "/secret/one", PASSWORD)

    raw = _raw_column(CertificateStore, "password", store.pk)

    assert raw and raw != PASSWORD
    assert PASSWORD not in raw and "horse" not in raw
    assert decrypt(raw) == PASSWORD
    assert CertificateStore.objects.get(pk=store.pk).password == PASSWORD


def test_same_password_encrypts_differently_each_time(agent) -> None:
    first = _store(agent.orchestrator, "/secret/one", PASSWORD)
    second = _store(agent.orchestrator, "/secret/two", PASSWORD)

    raw_first = _raw_column(CertificateStore, "password", first.pk)
    raw_second = _raw_column(CertificateStore, "password", second.pk)

    assert raw_first != raw_second
    assert decrypt(raw_first) == decrypt(raw_second) == PASSWORD


def test_changed_password_is_encrypted_again(agent) -> None:
    store = _store(agent.orchestrator, "/secret/one", PASSWORD)
    before = _raw_column(CertificateStore, "password", store.pk)

    store.password = "an entirely new secret"
    store.save(update_fields=["password"])

    after = _raw_column(CertificateStore, "password", store.pk)
    assert after != before and "entirely" not in after
    assert CertificateStore.objects.get(pk=store.pk).password == "an entirely new secret"


def test_empty_password_stays_empty(agent) -> None:
    store = _store(agent.orchestrator, "/no/secret", "")

    assert _raw_column(CertificateStore, "password", store.pk) == ""
    assert CertificateStore.objects.get(pk=store.pk).password == ""


def test_another_deployment_key_cannot_read_the_password(agent, settings) -> None:
    store = _store(agent.orchestrator, "/secret/one", PASSWORD)

    settings.CERTYARD_ENCRYPTION_KEY = "some other deployment's key"

    with pytest.raises(ValueError, match="cannot be decrypted"):
        CertificateStore.objects.get(pk=store.pk)


def test_ca_private_key_is_encrypted_in_the_database_and_decrypts_on_access() -> None:
    ca = orchestrator_ca_get_or_create()

    raw = _raw_column(CertificateAuthority, "private_key_pem", ca.pk)

    assert raw and "PRIVATE KEY" not in raw and "-----BEGIN" not in raw
    plaintext = decrypt(raw)
    assert plaintext.startswith("-----BEGIN PRIVATE KEY-----")
    stored = CertificateAuthority.objects.get(pk=ca.pk)
    assert stored.private_key_pem == plaintext
    key = serialization.load_pem_private_key(stored.private_key_pem.encode(), password=None)
    certificate = x509.load_pem_x509_certificate(stored.certificate_pem.encode())
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, public) == (
        certificate.public_key().public_bytes(serialization.Encoding.DER, public)
    )


def test_ca_private_key_never_appears_in_other_columns() -> None:
    ca = orchestrator_ca_get_or_create()
    plaintext = CertificateAuthority.objects.get(pk=ca.pk).private_key_pem
    body = "".join(plaintext.splitlines()[1:-1])

    table = connection.ops.quote_name(CertificateAuthority._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608
        row = cursor.fetchone()

    assert not any(isinstance(value, str) and body[:40] in value for value in row)
