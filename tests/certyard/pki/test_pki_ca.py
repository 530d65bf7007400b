"""The built-in CA: create, import, issue, revoke; the CRL and OCSP answers checked by the
real ``openssl`` command, as a relying party would check them."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.db import connection
from django.test import Client

from certyard.errors import ServiceError
from certyard.pki import crypto, services
from certyard.pki.models import CertificateAuthority, IssuedCertificate, KeyAlgorithm
from tests.certs import ca_material, private_key

pytestmark = pytest.mark.django_db


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def _leaf(ca: CertificateAuthority, cn: str = "www.example.test") -> services.Issued:
    key = private_key()
    profile = crypto.Profile(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
        validity=dt.timedelta(days=30),
        sans=(x509.DNSName(cn),),
        extended_key_usage=("server_auth",),
    )
    return services.certificate_issue(ca=ca, public_key=key.public_key(), profile=profile)


@pytest.mark.parametrize("algorithm", KeyAlgorithm.values)
def test_every_key_type_makes_a_root_and_an_intermediate_whose_chain_verifies(
    algorithm: str, tmp_path: Path
) -> None:
    root = services.ca_create(
        name=f"Root {algorithm}", key_algorithm=algorithm, validity_days=365, path_length=1
    )
    intermediate = services.ca_create(
        name=f"Issuing {algorithm}", key_algorithm=algorithm, validity_days=180, parent=root
    )
    assert intermediate.origin == CertificateAuthority.Origin.INTERMEDIATE
    assert intermediate.key_algorithm == algorithm
    issued = _leaf(intermediate)
    (tmp_path / "root.pem").write_text(root.certificate_pem)
    (tmp_path / "chain.pem").write_text(issued.chain_pem)
    (tmp_path / "leaf.pem").write_text(issued.pem)
    result = _openssl(
        "verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "leaf.pem: OK" in result.stdout
    # The intermediate itself was recorded as issued by the root (so the root can revoke it).
    assert IssuedCertificate.objects.filter(ca=root, sha256=intermediate.sha256).exists()
    # The private key is stored encrypted.
    with connection.cursor() as cursor:
        table = CertificateAuthority._meta.db_table
        cursor.execute(f"SELECT private_key_pem FROM {table} WHERE id = %s", [intermediate.pk])  # noqa: S608
        raw = cursor.fetchone()[0]
    assert "PRIVATE KEY" not in raw


def test_issued_certificate_points_at_the_platform_crl_ocsp_and_issuer(settings) -> None:
    settings.CERTYARD_PUBLIC_URL = "https://pki.example.test"
    ca = services.ca_create(name="Issuing", key_algorithm=KeyAlgorithm.EC_P256)
    certificate = _leaf(ca).certificate
    cdp = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"https://pki.example.test/pki/{ca.pk}/crl"
    aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert {d.access_location.value for d in aia} == {
        f"https://pki.example.test/pki/{ca.pk}/ocsp",
        f"https://pki.example.test/pki/{ca.pk}/ca.crt",
    }


def test_revocation_is_in_the_crl_served_over_http_and_openssl_checks_it(tmp_path: Path) -> None:
    ca = services.ca_create(name="Issuing", key_algorithm=KeyAlgorithm.RSA_2048)
    kept, revoked = _leaf(ca, "kept.example.test"), _leaf(ca, "gone.example.test")
    services.certificate_revoke(issued=revoked.record, reason=1)
    response = Client().get(f"/pki/{ca.pk}/crl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkix-crl"
    (tmp_path / "crl.der").write_bytes(response.content)
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    (tmp_path / "kept.pem").write_text(kept.pem)
    (tmp_path / "gone.pem").write_text(revoked.pem)
    text = _openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        "crl.der",
        "-CAfile",
        "ca.pem",
        "-noout",
        "-text",
        cwd=tmp_path,
    )
    assert text.returncode == 0, text.stderr
    assert "verify OK" in text.stderr + text.stdout
    assert revoked.record.serial_number.upper() in text.stdout.replace(":", "").upper()
    assert "Key Compromise" in text.stdout
    _openssl("crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem", cwd=tmp_path)
    ok = _openssl(
        "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl.pem", "kept.pem", cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    gone = _openssl(
        "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl.pem", "gone.pem", cwd=tmp_path
    )
    assert gone.returncode != 0
    assert "certificate revoked" in gone.stdout + gone.stderr
    # Revoking again is refused, and the CRL number moved on with each regeneration.
    with pytest.raises(ServiceError, match="already revoked"):
        services.certificate_revoke(issued=revoked.record, reason=1)
    crl = x509.load_der_x509_crl(response.content)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number >= 2


def test_ocsp_answers_good_revoked_and_unknown_and_openssl_verifies_them(
    tmp_path: Path, live_server
) -> None:
    from django.conf import settings

    settings.CERTYARD_PUBLIC_URL = live_server.url
    ca = services.ca_create(name="Issuing", key_algorithm=KeyAlgorithm.EC_P384)
    good, bad = _leaf(ca, "good.example.test"), _leaf(ca, "bad.example.test")
    services.certificate_revoke(issued=bad.record, reason=5)
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    (tmp_path / "good.pem").write_text(good.pem)
    (tmp_path / "bad.pem").write_text(bad.pem)
    url = f"{live_server.url}/pki/{ca.pk}/ocsp"
    for name, expected in (("good.pem", "good.pem: good"), ("bad.pem", "bad.pem: revoked")):
        result = _openssl(
            "ocsp",
            "-issuer",
            "ca.pem",
            "-cert",
            name,
            "-url",
            url,
            "-CAfile",
            "ca.pem",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert "Response verify OK" in result.stderr + result.stdout
        assert expected in result.stdout
    assert "Reason: cessationOfOperation" in result.stdout
    # A certificate the CA never issued (same issuer name and key, unknown serial).
    stranger = x509.load_pem_x509_certificate(good.pem.encode())
    assert IssuedCertificate.objects.filter(serial_number=format(stranger.serial_number, "x"))
    IssuedCertificate.objects.filter(pk=good.record.pk).delete()
    result = _openssl(
        "ocsp",
        "-issuer",
        "ca.pem",
        "-cert",
        "good.pem",
        "-url",
        url,
        "-CAfile",
        "ca.pem",
        cwd=tmp_path,
    )
    assert "good.pem: unknown" in result.stdout, result.stdout + result.stderr


def test_ocsp_garbage_gets_malformed_request_not_an_error() -> None:
    ca = services.ca_create(name="Issuing", key_algorithm=KeyAlgorithm.EC_P256)
    from cryptography.x509 import ocsp

    for body in (b"", b"\x30\x03\x02\x01\x00", b"not ocsp at all" * 100):
        response = Client().post(
            f"/pki/{ca.pk}/ocsp", data=body, content_type="application/ocsp-request"
        )
        assert response.status_code == 200
        answer = ocsp.load_der_ocsp_response(response.content)
        assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    other = services.ca_create(name="Other", key_algorithm=KeyAlgorithm.EC_P256)
    issued = _leaf(other)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(
            issued.certificate,
            x509.load_pem_x509_certificate(other.certificate_pem.encode()),
            hashes.SHA1(),  # noqa: S303 - what OCSP clients send
        )
        .build()
    )
    response = Client().post(
        f"/pki/{ca.pk}/ocsp",
        data=request.public_bytes(serialization.Encoding.DER),
        content_type="application/ocsp-request",
    )
    assert ocsp.load_der_ocsp_response(response.content).response_status == (
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    )


def test_import_pem_and_pkcs12_and_refusals(tmp_path: Path) -> None:
    certificate, key = ca_material("Imported Root", key=private_key("rsa"), key_usage=False)
    cert_pem = crypto.certificate_pem(certificate)
    encrypted = crypto.key_pem(key, b"s3cret")
    ca = services.ca_import(
        name="Imported", certificate_pem=cert_pem, private_key_pem=encrypted, key_password="s3cret"
    )
    assert ca.origin == CertificateAuthority.Origin.IMPORTED
    issued = _leaf(ca)
    (tmp_path / "ca.pem").write_text(cert_pem)
    (tmp_path / "leaf.pem").write_text(issued.pem)
    assert _openssl("verify", "-CAfile", "ca.pem", "leaf.pem", cwd=tmp_path).returncode == 0

    p12 = pkcs12.serialize_key_and_certificates(
        b"ca", key, certificate, None, serialization.BestAvailableEncryption(b"pw")
    )
    assert services.ca_import_pkcs12(name="From P12", data=p12, password="pw").sha256 == ca.sha256

    other_key = private_key("rsa")
    refusals = [
        (dict(private_key_pem=crypto.key_pem(other_key)), "does not belong"),
        (dict(private_key_pem=encrypted), "encrypted: give its password"),
        (dict(private_key_pem=encrypted, key_password="wrong"), "cannot be read"),
        (dict(private_key_pem="garbage"), "cannot be read"),
        (dict(certificate_pem="garbage"), "not PEM certificates"),
        (dict(certificate_pem=_leaf(ca).pem, private_key_pem=crypto.key_pem(key)), "belong"),
    ]
    for overrides, message in refusals:
        arguments = {"name": "Refused", "certificate_pem": cert_pem, **overrides}
        arguments.setdefault("private_key_pem", crypto.key_pem(key))
        with pytest.raises(ServiceError, match=message):
            services.ca_import(**arguments)
    with pytest.raises(ServiceError, match="wrong password"):
        services.ca_import_pkcs12(name="Refused", data=p12, password="nope")
    with pytest.raises(ServiceError, match="already exists"):
        services.ca_import(
            name="Imported", certificate_pem=cert_pem, private_key_pem=crypto.key_pem(key)
        )
    assert not CertificateAuthority.objects.filter(name="Refused").exists()


def test_a_ca_with_path_length_zero_cannot_sign_a_ca() -> None:
    root = services.ca_create(name="Root", key_algorithm=KeyAlgorithm.EC_P256, path_length=0)
    with pytest.raises(ServiceError, match="path length is 0"):
        services.ca_create(name="Sub", key_algorithm=KeyAlgorithm.EC_P256, parent=root)
