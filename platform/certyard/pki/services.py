"""Writes of the PKI app: creating and importing CAs, issuing, revoking, CRLs.

The OCSP responder is ``pki.ocsp``; the CA key cache both use is ``pki.material``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from certyard.errors import ServiceError
from certyard.pki import crypto
from certyard.pki.material import ca_material, public_key_der
from certyard.pki.models import (
    CertificateAuthority,
    IssuedCertificate,
    KeyAlgorithm,
    RevocationReason,
)
from certyard.pki.ocsp import ocsp_answers_forget
from certyard.workflows.services import event_emit
from handlers.base import EventKind

ORCHESTRATOR_CA_NAME = "Certyard Orchestrator CA"
_CA_LIFETIME = dt.timedelta(days=3650)
_CA_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)
_CA_KEY_USAGE = ("digital_signature", "key_cert_sign", "crl_sign")


def ca_urls(ca: CertificateAuthority) -> dict[str, str]:
    """Where relying parties find the CA's CRL, OCSP responder and certificate."""
    base = settings.CERTYARD_PUBLIC_URL.rstrip("/")
    return {
        "crl_url": base + reverse("pki-crl", args=[ca.pk]),
        "ocsp_url": base + reverse("pki-ocsp", args=[ca.pk]),
        "issuer_url": base + reverse("pki-ca-certificate", args=[ca.pk]),
    }


def _name(common_name: str, organization: str = "", country: str = "") -> x509.Name:
    attributes = []
    if country:
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _ca_fields(certificate: x509.Certificate, key: crypto.PrivateKey) -> dict[str, Any]:
    return {
        "certificate_pem": crypto.certificate_pem(certificate),
        "private_key_pem": crypto.key_pem(key),
        "key_algorithm": crypto.key_algorithm_of(certificate.public_key()),
        "subject": certificate.subject.rfc4514_string(),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
        "not_after": certificate.not_valid_after_utc,
    }


# --- Creating and importing CAs ---------------------------------------------------------


def _ca_name_check(name: str) -> str:
    name = name.strip()
    if not name:
        raise ServiceError("give the CA a name", field="name")
    if CertificateAuthority.objects.filter(name=name).exists():
        raise ServiceError(
            f"a CA named {name!r} already exists",
            code="conflict",
            http_status=409,
            field="name",
        )
    return name


def ca_create(
    *,
    name: str,
    common_name: str = "",
    organization: str = "",
    country: str = "",
    key_algorithm: str = KeyAlgorithm.EC_P384,
    validity_days: int = 3650,
    parent: CertificateAuthority | None = None,
    path_length: int | None = 0,
    actor: Any = None,
    purpose: str | None = None,
) -> CertificateAuthority:
    """Create a root CA, or an intermediate signed by ``parent`` (a built-in CA)."""
    name = _ca_name_check(name)
    original_common_name = common_name
    if key_algorithm not in KeyAlgorithm.values:
        raise ServiceError(
            f"unknown key type {key_algorithm!r}; choose one of {', '.join(KeyAlgorithm.values)}",
            field="key_algorithm",
        )
    if not 1 <= validity_days <= 36500:
        raise ServiceError("validity must be between 1 and 36,500 days", field="validity_days")
    if path_length is not None and path_length < 0:
        raise ServiceError("path length cannot be negative", field="path_length")
    common_name = (common_name or name).strip()
    # Counted in UTF-8 bytes as cryptography counts them (pki.crypto.NAME_BOUNDS): a name
    # within the characters but over the bytes must be refused here, not raise later.
    for field, short, value in (
        ("common_name", "CN", common_name),
        ("organization", "O", organization),
        ("country", "C", country),
    ):
        if field != "common_name" and not value:
            continue  # O and C are optional
        problem = crypto.name_value_error(short, value)
        if problem is not None:
            if field == "common_name" and not original_common_name:
                problem += "; the CA's name is its common name when none is given"
            raise ServiceError(problem, field=field)
    issuer_certificate: x509.Certificate | None = None
    if parent is not None:
        issuer_certificate, issuer_key = ca_material(parent)
        constraints = issuer_certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
        if constraints.path_length == 0:
            raise ServiceError(
                f"{parent.name} may not sign CAs (its path length is 0)",
                field="parent",
            )
        if constraints.path_length is not None:
            room = constraints.path_length - 1  # what the parent leaves below it
            path_length = room if path_length is None else min(path_length, room)
    key = crypto.key_generate(key_algorithm)
    profile = crypto.Profile(
        subject=_name(common_name, organization, country),
        validity=dt.timedelta(days=validity_days),
        key_usage=_CA_KEY_USAGE,
        is_ca=True,
        ca_path_length=path_length,
    )
    if parent is not None:
        profile = crypto.Profile(**{**_profile_dict(profile), **ca_urls(parent)})
    certificate = crypto.certificate_build(
        issuer_certificate=issuer_certificate,
        issuer_key=issuer_key if parent is not None else key,
        public_key=key.public_key(),
        profile=profile,
    )
    with transaction.atomic():
        ca = CertificateAuthority.objects.create(
            name=name,
            purpose=purpose,
            origin=(
                CertificateAuthority.Origin.INTERMEDIATE
                if parent
                else CertificateAuthority.Origin.ROOT
            ),
            parent=parent,
            chain_pem=(parent.certificate_pem + parent.chain_pem) if parent else "",
            created_by=actor if getattr(actor, "pk", None) else None,
            **_ca_fields(certificate, key),
        )
        if parent is not None:
            _issued_record(parent, certificate)
        crl_regenerate(ca)
    return ca


def _profile_dict(profile: crypto.Profile) -> dict[str, Any]:
    return {name: getattr(profile, name) for name in crypto.Profile.__slots__}


def _key_load(pem: bytes, password: bytes | None) -> crypto.PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise ServiceError(
            "the private key is encrypted: give its password"
            if password is None
            else "the private key is not encrypted: leave the password empty",
            field="key_password",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ServiceError(
            "the private key cannot be read (a wrong password, or not a PEM private key)",
            field="private_key_pem",
        ) from exc
    if not isinstance(key, _CA_KEY_TYPES):
        raise ServiceError(
            "only RSA, ECDSA and Ed25519 CA keys are supported",
            field="private_key_pem",
        )
    return key


def _ca_import_checked(
    *,
    name: str,
    certificate: x509.Certificate,
    key: crypto.PrivateKey,
    chain: list[x509.Certificate],
    actor: Any,
) -> CertificateAuthority:
    name = _ca_name_check(name)
    if public_key_der(certificate.public_key()) != public_key_der(key.public_key()):
        raise ServiceError(
            "the private key does not belong to the certificate",
            field="private_key_pem",
        )
    try:
        extensions = certificate.extensions
    except ValueError as exc:  # an extension cryptography cannot read
        raise ServiceError(
            f"the certificate's extensions cannot be read: {exc}",
            field="certificate_pem",
        ) from exc
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ServiceError(
            "the certificate is not a CA certificate (basic constraints say CA:FALSE or nothing)",
            field="certificate_pem",
        )
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise ServiceError(
                "the certificate's key usage does not allow signing certificates",
                field="certificate_pem",
            )
    except x509.ExtensionNotFound:
        pass
    if certificate.not_valid_after_utc <= crypto.now():
        raise ServiceError("the CA certificate has expired", field="certificate_pem")
    with transaction.atomic():
        ca = CertificateAuthority.objects.create(
            name=name,
            origin=CertificateAuthority.Origin.IMPORTED,
            chain_pem="".join(crypto.certificate_pem(c) for c in chain),
            created_by=actor if getattr(actor, "pk", None) else None,
            **_ca_fields(certificate, key),
        )
        crl_regenerate(ca)
    return ca


def _certificates_load(text: str, field: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise ServiceError(
            "not PEM certificates (expected -----BEGIN CERTIFICATE-----)",
            field=field,
        ) from exc
    return certificates


def ca_import(
    *,
    name: str,
    certificate_pem: str,
    private_key_pem: str,
    key_password: str = "",
    chain_pem: str = "",
    actor: Any = None,
) -> CertificateAuthority:
    """Import an existing CA: its certificate, its private key, and optionally its issuers."""
    certificates = _certificates_load(certificate_pem, "certificate_pem")
    chain = _certificates_load(chain_pem, "chain_pem") if chain_pem.strip() else []
    key = _key_load(private_key_pem.encode(), key_password.encode() or None)
    return _ca_import_checked(
        name=name, certificate=certificates[0], key=key, chain=certificates[1:] + chain, actor=actor
    )


def ca_import_pkcs12(
    *, name: str, data: bytes, password: str = "", actor: Any = None
) -> CertificateAuthority:
    """Import a CA from a PKCS#12 file holding its key, its certificate and its issuers."""
    try:
        key, certificate, extra = pkcs12.load_key_and_certificates(data, password.encode() or None)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ServiceError(
            "the PKCS#12 file cannot be opened: a wrong password, or not a PKCS#12 file",
            field="pkcs12",
        ) from exc
    if key is None or certificate is None:
        raise ServiceError(
            "the PKCS#12 file must hold both the CA's certificate and its private key",
            field="pkcs12",
        )
    if not isinstance(key, _CA_KEY_TYPES):
        raise ServiceError("only RSA, ECDSA and Ed25519 CA keys are supported", field="pkcs12")
    return _ca_import_checked(
        name=name, certificate=certificate, key=key, chain=list(extra), actor=actor
    )


# --- The orchestrator CA ----------------------------------------------------------------


def orchestrator_ca_get_or_create() -> CertificateAuthority:
    """The CA that certifies orchestrator keys, created on first use."""
    purpose = CertificateAuthority.Purpose.ORCHESTRATORS
    ca = CertificateAuthority.objects.filter(purpose=purpose).first()
    if ca is not None:
        return ca
    try:
        with transaction.atomic():
            return ca_create(
                name=ORCHESTRATOR_CA_NAME,
                organization="Certyard",
                key_algorithm=KeyAlgorithm.EC_P384,
                validity_days=_CA_LIFETIME.days,
                purpose=purpose,
            )
    except (IntegrityError, ServiceError):  # another process created it first
        return CertificateAuthority.objects.get(purpose=purpose)


def ca_issue_client_certificate(
    *,
    ca: CertificateAuthority,
    csr: x509.CertificateSigningRequest,
    common_name: str,
    days: int,
) -> x509.Certificate:
    """Issue a TLS client certificate for the CSR's key, with a subject we choose.

    The CSR's requested subject and extensions are ignored on purpose: the platform,
    not the requester, decides what the certificate says.
    """
    profile = crypto.Profile(
        subject=_name(crypto.utf8_prefix(common_name, 64), "Certyard orchestrators"),
        validity=dt.timedelta(days=days),
        key_usage=("digital_signature",),
        extended_key_usage=("client_auth",),
    )
    issued = certificate_issue(ca=ca, public_key=csr.public_key(), profile=profile)  # type: ignore[arg-type]
    return issued.certificate


# --- Issuing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    record: IssuedCertificate
    certificate: x509.Certificate
    pem: str
    chain_pem: str  # the CA and its issuers


def _issued_row(ca: CertificateAuthority, certificate: x509.Certificate) -> IssuedCertificate:
    return IssuedCertificate(
        ca=ca,
        serial_number=format(certificate.serial_number, "x"),
        sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        subject=certificate.subject.rfc4514_string(),
        common_name=crypto.common_name(certificate.subject)[:255],
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        certificate_pem=crypto.certificate_pem(certificate),
        issued_at=timezone.now(),
    )


def _issued_record(ca: CertificateAuthority, certificate: x509.Certificate) -> IssuedCertificate:
    row = _issued_row(ca, certificate)
    row.save(force_insert=True)
    return row


def certificate_issue(
    *, ca: CertificateAuthority, public_key: crypto.PublicKey, profile: crypto.Profile
) -> Issued:
    """Sign a certificate for ``public_key`` and record it. The caller checked the request.

    CDP and AIA point at this platform's CRL, OCSP responder and CA certificate.
    """
    return certificates_issue(ca=ca, requests=[(public_key, profile)])[0]


def certificates_issue(
    *, ca: CertificateAuthority, requests: list[tuple[crypto.PublicKey, crypto.Profile]]
) -> list[Issued]:
    """Sign several certificates with one CA and record them in one insert."""
    if not ca.enabled:
        raise ServiceError(f"the CA {ca.name} is disabled", code="ca_disabled", http_status=409)
    ca_certificate, ca_key = ca_material(ca)
    if ca_certificate.not_valid_after_utc <= crypto.now():
        raise ServiceError(f"the CA {ca.name} has expired", code="ca_expired", http_status=409)
    urls = ca_urls(ca)
    chain_pem = ca.certificate_pem + ca.chain_pem
    certificates = []
    for public_key, profile in requests:
        profile = crypto.Profile(
            **{**_profile_dict(profile), **{k: getattr(profile, k) or v for k, v in urls.items()}}
        )
        certificates.append(
            crypto.certificate_build(
                issuer_certificate=ca_certificate,
                issuer_key=ca_key,
                public_key=public_key,
                profile=profile,
            )
        )
    rows = IssuedCertificate.objects.bulk_create(
        [_issued_row(ca, certificate) for certificate in certificates]
    )
    return [
        Issued(row, certificate, row.certificate_pem, chain_pem)
        for row, certificate in zip(rows, certificates, strict=True)
    ]


# --- Revocation, CRLs and OCSP --------------------------------------------------------------

RevokedHook = Callable[[IssuedCertificate], None]
_revoked_hooks: list[RevokedHook] = []


def certificate_revoked_hook_register(hook: RevokedHook) -> None:
    """Register ``hook(issued)``, called when a built-in CA revokes a certificate.

    Contract: called inside the revocation's transaction, after ``revoked_at`` and
    ``revocation_reason`` are saved, so what the hook records commits (or rolls back) with
    the revocation; a hook that raises undoes the revocation. Apps above pki register in
    ``AppConfig.ready`` (the inventory records the certificate's state); registering the
    same function again is a no-op.
    """
    if hook not in _revoked_hooks:
        _revoked_hooks.append(hook)


def certificate_revoke(
    *, issued: IssuedCertificate, reason: int = RevocationReason.UNSPECIFIED, actor: Any = None
) -> IssuedCertificate:
    """Revoke a certificate a built-in CA issued: the CRL is regenerated at once."""
    try:
        reason = RevocationReason(int(reason))
    except ValueError as exc:
        raise ServiceError(
            f"{reason!r} is not an RFC 5280 revocation reason (0-6, 8-10)",
            field="reason",
        ) from exc
    if reason == RevocationReason.REMOVE_FROM_CRL:
        raise ServiceError(
            "removeFromCRL only lifts a certificate hold; it is not a reason to revoke",
            field="reason",
        )
    with transaction.atomic():
        locked = (
            IssuedCertificate.objects.select_for_update().select_related("ca").get(pk=issued.pk)
        )
        if locked.revoked_at is not None:
            raise ServiceError(
                "this certificate is already revoked", code="already_revoked", http_status=409
            )
        locked.revoked_at = timezone.now()
        locked.revocation_reason = reason
        locked.save(update_fields=["revoked_at", "revocation_reason"])
        for hook in list(_revoked_hooks):
            hook(locked)
        # The new CRL number retires every OCSP answer cached under the old one; the
        # revoked serial's own answers are also dropped once this commits.
        ca_id, crl_number = locked.ca_id, locked.ca.crl_number
        serial = int(locked.serial_number, 16)
        transaction.on_commit(lambda: ocsp_answers_forget(ca_id, crl_number, serial))
        crl_regenerate(locked.ca)
        event_emit(
            kind=EventKind.CERTIFICATE_REVOKED,
            subject_type="certificate",
            subject_id=locked.sha256,
            subject_label=locked.common_name or locked.subject,
            data={
                "sha256": locked.sha256,
                "serial_number": locked.serial_number,
                "ca": locked.ca.name,
                "reason": reason.label,
                "reason_code": int(reason),
                "revoked_by": getattr(actor, "username", "") or "",
            },
        )
    return locked


def crl_regenerate(ca: CertificateAuthority) -> CertificateAuthority:
    """Sign a new CRL listing the CA's revoked certificates that have not yet expired."""
    ca_certificate, ca_key = ca_material(ca)
    now = crypto.now()
    with transaction.atomic():
        locked = CertificateAuthority.objects.select_for_update().get(pk=ca.pk)
        number = locked.crl_number + 1
        next_update = now + dt.timedelta(hours=settings.CERTYARD_CRL_HOURS)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_certificate.subject)
            .last_update(now)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        revoked = IssuedCertificate.objects.filter(
            ca=locked, revoked_at__isnull=False, not_after__gt=now
        ).values_list("serial_number", "revoked_at", "revocation_reason")
        for serial, revoked_at, reason in revoked.iterator():
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial, 16))
                .revocation_date(revoked_at)
            )
            flag = crypto.REASON_FLAGS.get(reason)
            if flag is not None:
                entry = entry.add_extension(x509.CRLReason(flag), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(ca_key, crypto.signing_hash(ca_key))  # type: ignore[arg-type]
        locked.crl_number = number
        locked.crl_der = crl.public_bytes(serialization.Encoding.DER)
        locked.crl_this_update = now
        locked.crl_next_update = next_update
        locked.save(update_fields=["crl_number", "crl_der", "crl_this_update", "crl_next_update"])
    ca.crl_number, ca.crl_der = locked.crl_number, locked.crl_der
    ca.crl_this_update, ca.crl_next_update = locked.crl_this_update, locked.crl_next_update
    return locked


def crl_current(ca: CertificateAuthority) -> bytes:
    """The CA's CRL, regenerated first when it is missing or past half its life."""
    stale_after = dt.timedelta(hours=settings.CERTYARD_CRL_HOURS) / 2
    if (
        ca.crl_der is None
        or ca.crl_this_update is None
        or timezone.now() - ca.crl_this_update > stale_after
    ):
        ca = crl_regenerate(ca)
    return bytes(ca.crl_der)  # type: ignore[arg-type]


def crls_refresh() -> int:
    """Regenerate every CRL past half its life (the hourly schedule). Returns how many."""
    cutoff = timezone.now() - dt.timedelta(hours=settings.CERTYARD_CRL_HOURS) / 2
    stale = CertificateAuthority.objects.filter(crl_this_update__lt=cutoff) | (
        CertificateAuthority.objects.filter(crl_this_update__isnull=True)
    )
    count = 0
    for ca in stale:
        crl_regenerate(ca)
        count += 1
    return count


def issued_is_revoked(*, certificate_pem: str) -> bool:
    """Whether a built-in CA revoked this certificate (orchestrator lock-out uses it)."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError:
        return False
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    return IssuedCertificate.objects.filter(sha256=sha256, revoked_at__isnull=False).exists()
