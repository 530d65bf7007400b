"""Builders of the inputs the platform hands to handlers, made from real certificates.

Each builder returns the very dataclass the platform passes (``handlers.base`` and
``handlers.gateways``), filled the way the platform fills it: a certificate's fields come
from the inventory's own parser, an expiry warning carries the keys the expiry scan emits,
a registration request and a gateway enrollment carry a real, signed CSR. Every builder
takes keyword overrides for any field, so a test states only what it is about.

None of them needs Django or a database: they work in a plain unit test too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certyard.x509 import certificate_parse, pem_to_der
from handlers.base import (
    CertificateInfo,
    EventContext,
    EventHandler,
    EventKind,
    Handler,
    JobCompleteContext,
    MetadataGenerator,
    RegistrationRequest,
    metadata_field_declarations_check,
)
from handlers.gateways import EnrollmentType, GatewayEnrollment
from handlers.parameters import declarations_check, parameters_check

__all__ = [
    "IssuedCertificate",
    "PrivateKey",
    "certificate_info",
    "event_context",
    "expiring_event",
    "gateway_enrollment",
    "handler_make",
    "job_complete_context",
    "key_of",
    "make_certificate",
    "registration_request",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
H = TypeVar("H", bound=Handler)

# The key types make_certificate and the CSR builders know.
KEY_TYPES = ("ec", "ec384", "ec521", "rsa", "rsa3072", "rsa4096", "ed25519")

# The keys the builders made, by the CSR or certificate they signed: key_of() finds them.
_keys: dict[str, PrivateKey] = {}


def _private_key(key_type: str) -> PrivateKey:
    match key_type:
        case "ec":
            return ec.generate_private_key(ec.SECP256R1())
        case "ec384":
            return ec.generate_private_key(ec.SECP384R1())
        case "ec521":
            return ec.generate_private_key(ec.SECP521R1())
        case "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        case "rsa3072":
            return rsa.generate_private_key(public_exponent=65537, key_size=3072)
        case "rsa4096":
            return rsa.generate_private_key(public_exponent=65537, key_size=4096)
        case "ed25519":
            return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}: one of {', '.join(KEY_TYPES)}")


def _signature_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _general_name(san: str) -> x509.GeneralName:
    """``DNS:x``, ``IP:x``, ``email:x``, ``URI:x`` (the inventory's forms), or a bare name:
    an IP address, else a DNS name."""
    kind, sep, value = san.partition(":")
    if sep:
        match kind.lower():
            case "dns":
                return x509.DNSName(value)
            case "ip":
                return x509.IPAddress(ipaddress.ip_address(value))
            case "email":
                return x509.RFC822Name(value)
            case "uri":
                return x509.UniformResourceIdentifier(value)
    try:
        return x509.IPAddress(ipaddress.ip_address(san))
    except ValueError:
        return x509.DNSName(san)


def _default_sans(common_name: str) -> tuple[str, ...]:
    # A host-like common name is repeated as a DNS name, as every public CA does.
    if common_name and " " not in common_name and "." in common_name:
        return (common_name,)
    return ()


def _name(
    common_name: str,
    *,
    organization: str | None = None,
    ou: str | Sequence[str] | None = None,
    email: str | None = None,
    country: str | None = None,
) -> x509.Name:
    attributes: list[x509.NameAttribute] = []
    if country:
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    for unit in [ou] if isinstance(ou, str) else list(ou or ()):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    if common_name:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if email:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attributes)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate :func:`make_certificate` made, with its private key.

    Attributes:
        certificate: The ``cryptography`` certificate.
        key: Its private key.
        issuer: The certificate that signed it (None when self-signed).
    """

    certificate: x509.Certificate
    key: PrivateKey
    issuer: IssuedCertificate | None = None

    @property
    def der(self) -> bytes:
        """The certificate in DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        """The private key in unencrypted PKCS#8 PEM."""
        return _key_pem(self.key)

    @property
    def chain_pem(self) -> str:
        """The certificate and its issuers, in PEM, leaf first."""
        chain, current = [], self
        while current is not None:
            chain.append(current.pem)
            current = current.issuer
        return "".join(chain)

    @property
    def sha256(self) -> str:
        """Its fingerprint as the platform writes it (lowercase hex of the DER)."""
        return hashlib.sha256(self.der).hexdigest()


def make_certificate(
    common_name: str = "www.example.com",
    *,
    sans: Sequence[str] | None = None,
    days: int = 90,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    key_type: str = "ec",
    key: PrivateKey | None = None,
    issuer: IssuedCertificate | None = None,
    email: str | None = None,
    ou: str | Sequence[str] | None = None,
    organization: str | None = None,
    country: str | None = None,
    is_ca: bool = False,
    serial_number: int | None = None,
) -> IssuedCertificate:
    """A real X.509 certificate and its key.

    Args:
        common_name: The subject's CN ("" for none).
        sans: Subject alternative names: ``DNS:…``, ``IP:…``, ``email:…``, ``URI:…`` (the
            forms the inventory writes) or bare names (an IP address, else a DNS name).
            None: the common name as a DNS name when it looks like a host name.
        days: Valid for this many more days (negative: expired that long ago).
        not_before, not_after: Exact validity (aware datetimes); ``not_after`` replaces
            ``days``. By default the certificate became valid a day ago (or a year before
            it expired, for an expired one).
        key_type: ``ec`` (P-256), ``ec384``, ``ec521``, ``rsa`` (2048), ``rsa3072``,
            ``rsa4096`` or ``ed25519``; ``key`` uses that key instead.
        issuer: The CA certificate that signs it (from ``make_certificate(..., is_ca=True)``);
            None: self-signed.
        email, ou, organization, country: More subject attributes (``ou`` may be a list).
        is_ca: A CA certificate (basicConstraints CA:TRUE).

    Returns an :class:`IssuedCertificate` (``.pem``, ``.key_pem``, ``.certificate``,
    ``.key``, ``.der``, ``.sha256``, ``.chain_pem``).

    Example::

        ca = make_certificate("Test CA", is_ca=True, days=3650)
        leaf = make_certificate("api.pay.example.com", issuer=ca, ou="payments", days=20)
    """
    key = key or _private_key(key_type)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_after = not_after or now + dt.timedelta(days=days)
    if not_before is None:
        not_before = now - dt.timedelta(days=1)
        if not_before >= not_after:
            not_before = not_after - dt.timedelta(days=365)
    subject = _name(common_name, organization=organization, ou=ou, email=email, country=country)
    names = tuple(sans) if sans is not None else _default_sans(common_name)
    signer_key = issuer.key if issuer is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False
        )
    certificate = builder.sign(signer_key, _signature_hash(signer_key))
    made = IssuedCertificate(certificate, key, issuer)
    _keys[made.pem] = key
    return made


def _der_of(certificate: Any) -> bytes:
    if isinstance(certificate, IssuedCertificate):
        return certificate.der
    if isinstance(certificate, x509.Certificate):
        return certificate.public_bytes(serialization.Encoding.DER)
    if isinstance(certificate, str):
        return pem_to_der(certificate)
    if isinstance(certificate, bytes | bytearray | memoryview):
        data = bytes(certificate)
        return pem_to_der(data.decode("ascii")) if data.lstrip().startswith(b"-----") else data
    raise TypeError(
        f"expected an IssuedCertificate, a cryptography certificate, PEM text or DER bytes, "
        f"not {type(certificate).__name__}"
    )


def _overridden(instance: Any, overrides: Mapping[str, Any]) -> Any:
    """``replace(instance, **overrides)``, naming the unknown field on a typo."""
    known = {f.name for f in fields(instance)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"{type(instance).__name__} has no field {', '.join(unknown)} "
            f"(its fields: {', '.join(sorted(known))})"
        )
    return replace(instance, **overrides)


def certificate_info(certificate: Any, **overrides: Any) -> CertificateInfo:
    """The :class:`~handlers.base.CertificateInfo` a metadata generator gets for it.

    Built with the inventory's own parser, so the subject and issuer (RFC 4514, e.g.
    ``1.2.840.113549.1.9.1=…`` for an e-mail address), the SANs (``DNS:…``, ``IP:…``,
    ``email:…``, ``URI:…``), the serial number (hex), the times (ISO 8601 UTC) and the
    key and signature names are exactly what the platform passes.

    Args:
        certificate: An :class:`IssuedCertificate`, a ``cryptography`` certificate, PEM
            text or DER bytes.
        overrides: Any field to set instead, e.g. ``metadata={"team": "web"}`` (the values
            set before this generator).
    """
    parsed = certificate_parse(_der_of(certificate))
    info = CertificateInfo(
        sha256=parsed.sha256,
        subject=parsed.subject,
        issuer=parsed.issuer,
        common_name=parsed.common_name,
        sans=tuple(parsed.sans),
        serial_number=parsed.serial_number,
        not_before=parsed.not_before.isoformat() if parsed.not_before else None,
        not_after=parsed.not_after.isoformat() if parsed.not_after else None,
        key_algorithm=parsed.key_algorithm,
        key_size=parsed.key_size,
        signature_algorithm=parsed.signature_algorithm,
        is_ca=parsed.is_ca,
        self_signed=parsed.self_signed,
        metadata={},
    )
    return _overridden(info, overrides)


# What each event kind happens to (EventContext.subject_type), as the platform emits it.
_SUBJECT_TYPES = {
    EventKind.ORCHESTRATOR_REGISTERED: "orchestrator",
    EventKind.ORCHESTRATOR_APPROVED: "orchestrator",
    EventKind.ORCHESTRATOR_DISAPPROVED: "orchestrator",
    EventKind.JOB_COMPLETED: "job",
    EventKind.CERTIFICATES_ADDED: "store",
    EventKind.CERTIFICATE_EXPIRING: "certificate",
    EventKind.METADATA_GENERATED: "certificates",
    EventKind.ENROLLMENT_PENDING: "enrollment",
    EventKind.ENROLLMENT_APPROVED: "enrollment",
    EventKind.ENROLLMENT_DENIED: "enrollment",
    EventKind.CERTIFICATE_ISSUED: "certificate",
    EventKind.CERTIFICATE_RENEWED: "certificate",
    EventKind.CERTIFICATE_REVOKED: "certificate",
    EventKind.ARCHIVED_KEY_REUSED: "certificate",
}


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def event_context(
    kind: EventKind | str, *, data: Mapping[str, Any] | None = None, **overrides: Any
) -> EventContext:
    """An :class:`~handlers.base.EventContext` of ``kind`` with ``data`` (its details).

    The subject type is the one the platform uses for that kind (``certificate`` for
    ``certificate.expiring``, ``job`` for ``job.completed``, ...); ``event_id`` is 1,
    ``occurred_at`` now, ``attempt`` 1. ``overrides`` set any other field
    (``subject_id``, ``subject_label``, ``attempt``, ``context``, ...). For an expiry
    warning with the scan's keys, use :func:`expiring_event`.
    """
    kind = str(kind)
    context = EventContext(
        event_id=1,
        kind=kind,
        occurred_at=_now_iso(),
        subject_type=_SUBJECT_TYPES.get(kind, kind.split(".")[0]),  # type: ignore[call-overload]
        subject_id="1",
        subject_label="",
        data=dict(data or {}),
    )
    return _overridden(context, overrides)


def expiring_event(
    certificate: Any,
    days: int = 30,
    *,
    now: dt.datetime | None = None,
    store_type: str = "PEM",
    client_machine: str = "web-1.example.test",
    store_path: str = "/etc/ssl/certs",
    alias: str | None = None,
    certificate_id: int = 1,
    location_id: int = 1,
    store_id: str | None = None,
    orchestrator_id: str | None = None,
    **overrides: Any,
) -> EventContext:
    """The ``certificate.expiring`` event the daily scan emits for one certificate at one
    location, with exactly its ``data`` keys.

    Args:
        certificate: An :class:`IssuedCertificate`, a certificate (``cryptography``, PEM
            or DER) or a :class:`~handlers.base.CertificateInfo`.
        days: The threshold crossed (90, 30, 7, 1 by default on the platform; 0 once
            expired, which sets ``expired``). ``days_left`` is computed from the
            certificate's ``not_after`` (negative once expired): make the certificate with
            ``days=`` to match, e.g. ``make_certificate(days=20)`` for the 30-day warning.
        now: The scan's time (default: now).
        store_type, client_machine, store_path, alias: Where the certificate was found.
        certificate_id, location_id, store_id, orchestrator_id: The platform's ids.
        overrides: A field of :class:`~handlers.base.EventContext` (``attempt``,
            ``context``, ``event_id``, ...) sets it; any other name sets that ``data`` key.
    """
    info = (
        certificate if isinstance(certificate, CertificateInfo) else certificate_info(certificate)
    )
    if info.not_after is None:
        raise ValueError("the certificate has no readable not_after: the scan never warns of it")
    not_after = dt.datetime.fromisoformat(info.not_after)
    now = now or dt.datetime.now(dt.UTC)
    store = f"{store_type} {client_machine}:{store_path}"
    data: dict[str, Any] = {
        "days": days,
        "days_left": (not_after - now).days,
        "expired": days == 0,
        "not_after": not_after.isoformat(),
        "sha256": info.sha256,
        "common_name": info.common_name,
        "subject": info.subject,
        "certificate_id": certificate_id,
        "location_id": location_id,
        "store_id": store_id or str(uuid.uuid4()),
        "store_type": store_type,
        "orchestrator_id": orchestrator_id or str(uuid.uuid4()),
        "client_machine": client_machine,
        "store_path": store_path,
        "store": store,
        "alias": alias if alias is not None else f"{info.common_name or info.sha256[:16]}.pem",
    }
    context_fields = {f.name for f in fields(EventContext)}
    data.update({k: v for k, v in overrides.items() if k not in context_fields})
    context = {k: v for k, v in overrides.items() if k in context_fields}
    return event_context(
        EventKind.CERTIFICATE_EXPIRING,
        data=data,
        **{
            "subject_id": str(certificate_id),
            "subject_label": info.common_name or info.subject or info.sha256,
            **context,
        },
    )


def _csr(key: PrivateKey, common_name: str, sans: Sequence[str] = ()) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in sans]), critical=False
        )
    pem = builder.sign(key, _signature_hash(key)).public_bytes(serialization.Encoding.PEM).decode()
    _keys[pem] = key
    return pem


def _spki_sha256(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def key_of(value: Any) -> PrivateKey:
    """The private key a builder made for a request or certificate: a
    :class:`~handlers.base.RegistrationRequest` or
    :class:`~handlers.gateways.GatewayEnrollment` (its CSR's key), CSR or certificate PEM,
    or an :class:`IssuedCertificate`. A gateway test signs its certificate with it, a
    registration test proves the agent's key. KeyError when no builder made it."""
    if isinstance(value, IssuedCertificate):
        return value.key
    pem = getattr(value, "csr_pem", value)
    try:
        return _keys[pem]
    except (KeyError, TypeError):
        raise KeyError("no builder of certyard.testing made the key of this request") from None


def registration_request(
    *,
    key: PrivateKey | None = None,
    key_type: str = "ec",
    csr_common_name: str | None = None,
    **overrides: Any,
) -> RegistrationRequest:
    """A :class:`~handlers.base.RegistrationRequest` as an agent's registration produces
    it: claims (``name`` ``agent-1``, its ``client_machine``, ``capabilities``
    ``("PEM.Inventory",)``, no ``client_parameters``) and verified fields (a real CSR
    signed by the agent's key, whose subject CN is ``name`` unless ``csr_common_name``
    says otherwise; ``public_key_sha256`` of that key; ``source_address`` ``192.0.2.10``;
    token 1, without labels).

    ``key`` (default: a new ``key_type`` key) is kept: :func:`key_of` returns it.
    ``overrides`` set any field, e.g. ``token_labels=("prod",)``,
    ``client_parameters={"environment": "prod"}``.
    """
    name = str(overrides.get("name", "agent-1"))
    key = key or _private_key(key_type)
    csr_pem = overrides.pop("csr_pem", None) or _csr(
        key, name if csr_common_name is None else csr_common_name
    )
    csr_key = x509.load_pem_x509_csr(csr_pem.encode()).public_key()
    request = RegistrationRequest(
        name=name,
        client_machine=f"{name}.example.test",
        agent_version="1.0.0",
        capabilities=("PEM.Inventory",),
        client_parameters={},
        csr_pem=csr_pem,
        source_address="192.0.2.10",
        token_id=1,
        token_description="test token",  # noqa: S106 - a description, not a secret
        public_key_sha256=_spki_sha256(csr_key),
    )
    return _overridden(request, overrides)


def job_complete_context(**overrides: Any) -> JobCompleteContext:
    """A :class:`~handlers.base.JobCompleteContext` as the platform builds it when an
    orchestrator reports the end of a job: by default the first attempt of an ``inventory``
    job of a ``PEM`` store that succeeded, final, with the inventory summary the platform
    records (``result["inventory"]``).

    ``overrides`` set any field of the context, those the platform adds included (e.g.
    ``outcome="failure", final=True, message="store unreachable"``, ``store=None`` for a
    job without a store).

    Provenance is filled as the platform fills it: ``source`` ``schedule`` (an inventory
    schedule's job; ``handler`` with ``retry_of`` set) unless given, and ``chain`` from
    the first job to this one, oldest first: this job alone, or, with ``retry_of=<id>``,
    the failed job it retries (from a schedule) then this one. Pass ``chain=`` to
    describe a longer history.
    """
    orchestrator_id = str(uuid.uuid4())
    context = JobCompleteContext(
        job_id=str(uuid.uuid4()),
        job_type="inventory",
        attempt=1,
        outcome="success",
        message="",
        final=True,
        result={
            "inventory": {
                "entries": 0,
                "recorded": True,
                "added": 0,
                "changed": 0,
                "removed": 0,
                "unchanged": 0,
                "new_certificates": 0,
                "nonconformant_certificates": 0,
                "rejected": [],
                "rejected_count": 0,
                "added_aliases": [],
                "changed_aliases": [],
                "removed_aliases": [],
            }
        },
        orchestrator={
            "id": orchestrator_id,
            "name": "agent-1",
            "client_machine": "agent-1.example.test",
        },
        store={
            "id": str(uuid.uuid4()),
            "store_type": "PEM",
            "client_machine": "agent-1.example.test",
            "store_path": "/etc/ssl/certs",
        },
    )
    context = _overridden(context, overrides)
    names = {f.name for f in fields(JobCompleteContext)}
    if "chain" in names and "chain" not in overrides:
        # Where the job came from, as the platform fills it: by default an inventory
        # schedule's job; its chain always ends with the job itself.
        if "source" not in overrides:
            # A job that retries another was asked for by a handler (its registration's
            # name); any other, by an inventory schedule.
            retried = context.retry_of is not None
            context = replace(
                context,
                source="handler" if retried else "schedule",
                source_detail=overrides.get("source_detail")
                or ("tests" if retried else "inventory schedules: every 60 min"),
            )
        if context.retry_of is not None:
            # The job it retries, as a failed one of the same store.
            earlier = {
                "id": context.retry_of,
                "type": context.job_type,
                "source": "schedule",
                "source_detail": "inventory schedules: every 60 min",
                "state": "failed",
                "outcome": "failure",
                "retry_of": None,
            }
            links: tuple[dict[str, Any], ...] = (earlier,)
        else:
            links = ()
        itself = {
            "id": context.job_id,
            "type": context.job_type,
            "source": context.source,
            "source_detail": context.source_detail,
            "state": _job_state(context),
            "outcome": context.outcome,
            "retry_of": context.retry_of,
        }
        context = replace(context, chain=(*links, itself))
    return context


def _job_state(context: JobCompleteContext) -> str:
    """The job's state once this attempt is reported (``jobs.models.Job.State``)."""
    if not context.final:
        return "pending"  # a failed attempt the platform will try again
    return "failed" if context.outcome == "failure" else "succeeded"


def gateway_enrollment(
    *,
    common_name: str = "www.example.com",
    key: PrivateKey | None = None,
    key_type: str = "ec",
    **overrides: Any,
) -> GatewayEnrollment:
    """A :class:`~handlers.gateways.GatewayEnrollment` as the platform passes it to
    ``CAGateway.enroll``: a new request for product ``default``, with a real CSR for
    ``common_name`` and the ``sans`` (default: the common name as ``DNS:``), its subject
    as RFC 4514 text, 90 days of validity.

    ``key`` (default: a new ``key_type`` key) is kept: :func:`key_of` returns it, to
    issue a certificate for it in a fake CA. ``overrides`` set any field (``type``,
    ``product_id``, ``product_parameters``, ``prior_ca_request_id``, ...).
    """
    sans = tuple(overrides.pop("sans", None) or (f"DNS:{common_name}",))
    key = key or _private_key(key_type)
    csr_pem = overrides.pop("csr_pem", None) or _csr(key, common_name, sans)
    request = GatewayEnrollment(
        request_id=str(uuid.uuid4()),
        type=EnrollmentType.NEW,
        product_id="default",
        csr_pem=csr_pem,
        subject=_name(common_name).rfc4514_string(),
        sans=sans,
        validity_days=90,
    )
    return _overridden(request, overrides)


def handler_make(cls: type[H], /, **values: Any) -> H:
    """An instance of ``cls`` as the platform makes one for a registration with ``values``.

    The class's declarations are checked as when it is loaded (parameters, a generator's
    fields), the values as when a registration is saved (``parameters_check``: types,
    bounds, required values, defaults filled in; then ``cls.config_check``), and raise
    ``ParameterError`` with one message per parameter. An event handler gets a
    :class:`~certyard.testing.RecordingPlatform` as ``handler.platform``, as the platform
    sets one before ``handle``.

    Example::

        generator = handler_make(TeamFromDnsSuffix, teams=["example.com=web"])
        assert generator.generate(certificate_info(make_certificate("www.example.com"))) == {
            "team": "web"
        }
    """
    declarations_check(cls.parameters)
    config = parameters_check(cls.parameters, values)
    cls.config_check(config)
    if issubclass(cls, MetadataGenerator):
        metadata_field_declarations_check(cls.fields)
        metadata_field_declarations_check(cls.declared_fields(config))
    handler = cls(config)
    if isinstance(handler, EventHandler):
        from certyard.testing.fakes import RecordingPlatform

        handler.platform = RecordingPlatform(source=cls.__name__)
    return handler
