"""PKCS#12 enrollment: the platform makes the key and hands it over once."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.db import IntegrityError, transaction
from django.utils import timezone

from certyard.enrollment import policy
from certyard.enrollment.models import EnrollmentRequest, PfxHandOver, Template
from certyard.enrollment.services.recording import _PFX_PASSWORD_MIN, State, _fail
from certyard.enrollment.services.submit import (
    Submitted,
    _checked,
    _key_holder,
    _new_request,
    _proceed,
    _replayed,
    _target_stores_attach,
    _target_stores_check,
    _template_find,
    idempotency_key_check,
)
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate
from certyard.pki import crypto
from certyard.pki.models import KeyAlgorithm


def _pfx_password_check(request: EnrollmentRequest, password: Any) -> str:
    if not isinstance(password, str) or len(password) < _PFX_PASSWORD_MIN:
        _fail(request, f"give a PKCS#12 password of at least {_PFX_PASSWORD_MIN} characters")
    return password


def _csr_for(key: crypto.PrivateKey, subject: x509.Name, sans: list[x509.GeneralName]) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, crypto.signing_hash(key))  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _general_names(texts: list[str]) -> list[x509.GeneralName]:
    import ipaddress

    names: list[x509.GeneralName] = []
    for text in texts:
        kind, _, value = str(text).partition(":")
        if not value:
            kind, value = "DNS", kind
        value = value.strip()
        if kind.upper() == "IP":
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(value)))
            except ValueError as exc:
                raise policy.PolicyError(f"{value!r} is not an IP address") from exc
        elif kind.upper() == "DNS":
            try:
                names.append(x509.DNSName(value))
            except ValueError as exc:
                raise policy.PolicyError(f"{value!r} is not a DNS name") from exc
        else:
            raise policy.PolicyError(f"{text!r}: names are DNS:… or IP:…")
    return names


def _pfx(request: EnrollmentRequest, password: str) -> bytes:
    key = serialization.load_pem_private_key(request.private_key_pem.encode(), password=None)
    certificate = x509.load_pem_x509_certificate(request.certificate_pem.encode())
    chain = x509.load_pem_x509_certificates(request.chain_pem.encode()) if request.chain_pem else []
    return pkcs12.serialize_key_and_certificates(
        request.subject.encode()[:64] or b"certyard",
        key,  # type: ignore[arg-type]
        certificate,
        chain or None,
        serialization.BestAvailableEncryption(password.encode()),
    )


def _pfx_hand_over(
    request: EnrollmentRequest, template: Template | None, password: str, keep_for: Any = None
) -> bytes:
    """The PKCS#12, once: marked collected, the key dropped unless the template archives.

    ``keep_for`` (a person): the PKCS#12 is also kept for them to download, once, from
    the console's hand-over page (:func:`pfx_hand_over_take`), in the same transaction
    that marks it collected.
    """
    pfx = _pfx(request, password)
    request.pfx_collected_at = timezone.now()
    # A key still to be delivered to target stores stays until the deliveries end (the
    # deployment app drops it then).
    if (template is None or not template.archive_keys) and not request.target_stores.exists():
        request.private_key_pem = ""
    with transaction.atomic():
        request.save(update_fields=["pfx_collected_at", "private_key_pem", "updated_at"])
        if keep_for is not None:
            pfx_hand_over_keep(request=request, owner=keep_for, pfx=pfx)
    return pfx


def enrollment_submit_pfx(
    *,
    template_name: Any,
    common_name: Any,
    sans: Any = (),
    key_algorithm: Any = KeyAlgorithm.EC_P256,
    password: Any = "",
    metadata: Any = None,
    actor: Any = None,
    type: str = EnrollmentRequest.Type.NEW,
    renewal_of: Certificate | None = None,
    reuse_key_pem: str = "",
    hold: bool = False,
    target_stores: Any = None,
    idempotency_key: Any = None,
    keep_for: Any = None,
) -> Submitted:
    """The platform makes the key and returns it with the certificate as a PKCS#12, once.

    The key is held encrypted only while the request waits for approval (and kept only if
    the template archives keys). When approval is needed, or ``hold`` is set (a renewal a
    handler asked for), the requester collects the PKCS#12 with
    :func:`enrollment_pfx_collect` once it is issued. ``target_stores`` (store ids):
    where the certificate, with its key, is delivered once issued; the key is then held
    until every delivery ended (and dropped afterwards unless the template archives keys).
    ``idempotency_key``: as for :func:`enrollment_submit_csr`; a repeated submission
    answers with the first request and no PKCS#12 (it was handed over once already).
    ``keep_for``: see :func:`_pfx_hand_over` (the console's hand-over page).
    """
    method = EnrollmentRequest.Method.PFX
    key_given = idempotency_key_check(idempotency_key)
    first = _replayed(actor, key_given, template_name=template_name, method=method)
    if first is not None:
        return Submitted(first)
    request = _new_request(
        template_name=template_name,
        actor=actor,
        method=method,
        type=type,
        renewal_of=renewal_of,
        idempotency_key=key_given,
    )
    # The key is taken by the request's first insert (see submit._key_holder).
    try:
        template = _template_find(request, template_name)
        if not hold:
            password = _pfx_password_check(request, password)
        if not reuse_key_pem and key_algorithm not in KeyAlgorithm.values:
            _fail(request, f"unknown key type {key_algorithm!r} ({', '.join(KeyAlgorithm.values)})")
        # The platform writes this CSR itself: a name cryptography would refuse (over 64
        # bytes in UTF-8, though 64 characters or fewer) is refused and recorded here, and
        # the CSR then goes through the same name policy as a requester's.
        problem = crypto.name_value_error("CN", common_name)
        if problem is not None:
            _fail(request, problem, field="common_name")
        if isinstance(sans, str):
            sans = [s for s in re.split(r"[\s,]+", sans) if s]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        # Recorded before the checks, so a refused request names what it was refused for.
        request.subject = subject.rfc4514_string()
        request.sans = [str(name)[:300] for name in list(sans or [])[:100]]
        try:
            names = _general_names(list(sans or []))
        except policy.PolicyError as exc:
            _fail(request, str(exc), field="sans")
        if reuse_key_pem:
            key = serialization.load_pem_private_key(reuse_key_pem.encode(), password=None)
        else:
            if key_algorithm not in template.allowed_key_types:
                _fail(
                    request,
                    f"template {template.name!r} does not allow {key_algorithm} keys "
                    f"(it allows {', '.join(template.allowed_key_types) or 'none'})",
                )
            key = crypto.key_generate(str(key_algorithm))
        csr_pem = _csr_for(key, subject, names)  # type: ignore[arg-type]
        request.private_key_pem = crypto.key_pem(key)  # type: ignore[arg-type]
        request.key_archived = template.archive_keys
        checked = _checked(request, template, csr_pem, metadata)
        stores = _target_stores_check(request, actor, target_stores, key_delivered=True)
        _target_stores_attach(request, stores)
        _proceed(request, template, checked)
        if request.state == State.ISSUED and not hold:
            return Submitted(request, _pfx_hand_over(request, template, password, keep_for))
        return Submitted(request)
    except IntegrityError as exc:
        return Submitted(_key_holder(exc, request, template_name=template_name))


def enrollment_pfx_collect(
    *, request: EnrollmentRequest, password: Any, actor: Any, keep: bool = False
) -> bytes:
    """The PKCS#12 of an approved PFX request, once, for its requester (``keep``: also
    kept for the console's hand-over page, see :func:`_pfx_hand_over`)."""
    if not isinstance(password, str) or len(password) < _PFX_PASSWORD_MIN:
        raise ServiceError(
            f"give a PKCS#12 password of at least {_PFX_PASSWORD_MIN} characters",
            field="password",
        )
    with transaction.atomic():
        locked = (
            EnrollmentRequest.objects.select_for_update(of=("self",))
            .select_related("template")
            .get(pk=request.pk)
        )
        if locked.method != EnrollmentRequest.Method.PFX:
            raise ServiceError(
                "this request was enrolled with a CSR: there is no PKCS#12",
                code="not_pfx",
                http_status=409,
            )
        if locked.requested_by_id is None or locked.requested_by_id != getattr(actor, "pk", None):
            raise ServiceError(
                "only the requester can collect the PKCS#12",
                code="not_requester",
                http_status=403,
            )
        if locked.state != State.ISSUED:
            raise ServiceError(
                f"the request is {locked.get_state_display().lower()}, not issued",
                code="not_issued",
                http_status=409,
            )
        if locked.pfx_collected_at is not None or not locked.private_key_pem:
            raise ServiceError(
                "the PKCS#12 was already collected; it is handed out once",
                code="already_collected",
                http_status=410,
            )
        return _pfx_hand_over(locked, locked.template, password, actor if keep else None)


# --- The console's hand-over of a PKCS#12 -------------------------------------------------

PFX_HAND_OVER_SECONDS = 15 * 60


def pfx_hand_overs_prune() -> int:
    """Delete the hand-overs whose time is up; how many."""
    deleted, _ = PfxHandOver.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


def pfx_hand_over_keep(*, request: EnrollmentRequest, owner: Any, pfx: bytes) -> PfxHandOver:
    """Keep a PKCS#12 just made for ``owner`` until they download it (at most
    :data:`PFX_HAND_OVER_SECONDS`), encrypted at rest; expired ones are dropped now."""
    now = timezone.now()
    pfx_hand_overs_prune()
    return PfxHandOver.objects.create(
        request=request,
        owner=owner,
        pkcs12_b64=base64.b64encode(pfx).decode(),
        expires_at=now + dt.timedelta(seconds=PFX_HAND_OVER_SECONDS),
    )


def pfx_hand_over_take(*, request: EnrollmentRequest, owner: Any) -> bytes | None:
    """The PKCS#12 kept for ``owner`` and ``request``, once: deleted as it is read. None
    when there is none (downloaded already, expired, or never made)."""
    with transaction.atomic():
        kept = (
            PfxHandOver.objects.select_for_update()
            .filter(request=request, owner=owner, expires_at__gt=timezone.now())
            .order_by("-created_at")
            .first()
        )
        PfxHandOver.objects.filter(request=request, owner=owner).delete()
    return base64.b64decode(kept.pkcs12_b64) if kept is not None else None
