"""Submitting CSRs: one, or many at once under one template (bulk issuance)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import IntegrityError, transaction
from django.utils import timezone

from certyard.accounts.authorization import is_person
from certyard.bulk import instances_insert
from certyard.enrollment import policy
from certyard.enrollment.models import IDEMPOTENCY_KEY_MAX, EnrollmentRequest, Template
from certyard.enrollment.services.issuing import _chain_ders, _issue, _profile
from certyard.enrollment.services.recording import (
    ENROLLMENT_SOURCE,
    EnrollmentRefused,
    State,
    _actor,
    _certificate_event_spec,
    _event,
    _event_spec,
    _fail,
    _metadata_check,
)
from certyard.errors import ServiceError
from certyard.inventory.authorization import may_act_on_store
from certyard.inventory.ingest import certificates_record
from certyard.inventory.metadata import metadata_values_set, user_source
from certyard.inventory.models import Certificate, CertificateStore
from certyard.pki import services as pki_services
from certyard.precompiled import PrecompiledQuery
from certyard.workflows.services import events_emit
from handlers.base import EventKind

# Names are unique: at most one row, no ordering.
_template_by_name = PrecompiledQuery(
    lambda name: Template.objects.select_related("ca", "gateway").filter(name=name).order_by(),
    name=str,
)


# The unique index on (requester, key) is partial (where a key was given): a query uses it
# only when its conditions include the index's own, which SQLite does not infer from
# "key = 'a value'"; without "key <> ''" it read every request of the requester.
_request_keyed = PrecompiledQuery(
    lambda requester, key: (
        EnrollmentRequest.objects.filter(requested_by_id=requester, idempotency_key=key)
        .exclude(idempotency_key="")
        .only("pk")
        .order_by()[:1]
    ),
    requester=int,
    key=str,
)


def _template_find(request: EnrollmentRequest, name: Any) -> Template:
    found = _template_by_name(name=str(name))
    template = found[0] if found else None
    if template is None:
        known = ", ".join(Template.objects.filter(enabled=True).values_list("name", flat=True))
        _fail(request, f"there is no template named {name!r} (templates: {known or 'none'})")
    if not template.enabled:
        _fail(request, f"the template {template.name!r} is disabled", status=409)
    request.template = template
    problem = issuer_problem(template)
    if problem:
        _fail(request, problem, code="template_issuer_refused", status=409)
    return template


def issuer_problem(template: Template) -> str:
    """Why ``template`` cannot issue from its built-in CA (empty: it can). The platform's
    own CAs (the orchestrators' identity CA) issue for no template, whatever was saved
    before this rule existed."""
    if template.ca_id is not None and template.ca.purpose:
        return (
            f"template {template.name!r} names {template.ca.name}, the platform's own CA "
            f"({template.ca.get_purpose_display().lower()}), which issues for no template; "
            "an administrator must choose another CA for it"
        )
    return ""


def _new_request(
    *,
    template_name: Any,
    actor: Any,
    method: str,
    type: str = EnrollmentRequest.Type.NEW,
    renewal_of: Certificate | None = None,
    idempotency_key: str = "",
) -> EnrollmentRequest:
    """A request in memory: saved once, issued or refused, so one commit records it.

    With an idempotency key (and a requester), that first save also takes the key: see
    :func:`_key_holder`.
    """
    return EnrollmentRequest(
        template_name=str(template_name or "")[:100],
        state=State.APPROVED,  # provisional; set for real once checked
        method=method,
        type=type,
        renewal_of=renewal_of,
        requested_by=_actor(actor),
        idempotency_key=idempotency_key if _actor(actor) is not None else "",
    )


def idempotency_key_check(key: Any) -> str:
    """An ``Idempotency-Key`` as given (empty: none); refused unless it is 1 to 100
    printable ASCII characters without surrounding spaces."""
    if key is None or key == "":
        return ""
    if (
        not isinstance(key, str)
        or len(key) > IDEMPOTENCY_KEY_MAX
        or not (key.isascii() and key.isprintable())
        or key != key.strip()
    ):
        raise ServiceError(
            f"the idempotency key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII "
            "characters (a random UUID is a good one)",
            code="invalid_idempotency_key",
            field="idempotency_key",
        )
    return key


def _replayed(actor: Any, key: str, *, template_name: Any, method: str) -> EnrollmentRequest | None:
    """The request this requester already submitted with ``key``, if any (marked
    ``replayed``); a refused one is refused again, with its reason."""
    actor = _actor(actor)
    if not key or actor is None:
        return None
    # The usual answer is none: asked with one column first (a key is unique per requester).
    earlier = _request_keyed(requester=actor.pk, key=key)
    if not earlier:
        return None
    first = EnrollmentRequest.objects.select_related("template").get(pk=earlier[0].pk)
    if first.template_name != str(template_name or "")[:100] or first.method != method:
        raise ServiceError(
            f"this idempotency key was already used for another request ({first.method} "
            f"under {first.template_name!r}): use a new key for a new request",
            code="idempotency_key_reused",
            http_status=409,
            field="idempotency_key",
        )
    if first.state == State.FAILED:
        raise EnrollmentRefused(
            first.failure_reason,
            code="enrollment_refused",
            http_status=400,
            # The error shape carries only the request's id: the refusal is the same one.
            details={"enrollment_id": str(first.pk)},
        )
    first.replayed = True
    return first


def _key_holder(
    exc: IntegrityError, request: EnrollmentRequest, *, template_name: Any
) -> EnrollmentRequest:
    """The request that holds ``request``'s idempotency key, after ``request``'s first
    insert failed on it; ``exc`` again for any other failure.

    A key is taken by the request's first save, in whichever transaction first records it
    (the issuance itself for a built-in CA, so one commit; before the CA is asked for a
    gateway, so a second submission never reaches the CA). The unique constraint
    (requester, key) decides between two submissions racing with the same key (a double
    click): by then the winner has committed, and the loser, whose own writes rolled back
    with its insert, answers with the winner's request (or its refusal).
    """
    if not request.idempotency_key or not request._state.adding:
        raise exc  # saved before: the key was this request's own
    first = _replayed(
        request.requested_by,
        request.idempotency_key,
        template_name=template_name,
        method=request.method,
    )
    if first is None:
        raise exc
    return first


def _checked(
    request: EnrollmentRequest, template: Template, csr_pem: str, metadata: Any
) -> policy.CheckedRequest:
    try:
        csr = policy.csr_parse(csr_pem)
        # Recorded before the check, so a refused request names what it was refused for.
        request.subject, request.sans = policy.csr_names_as_requested(csr)
        checked = policy.request_check(template, csr)
        request.metadata = _metadata_check(template, metadata)
    except policy.PolicyError as exc:
        _fail(request, str(exc))
    request.csr_pem = csr_pem.strip()
    request.subject = checked.subject_text
    request.sans = list(checked.san_texts)
    request.key_algorithm = checked.key_algorithm
    return checked


TARGET_STORES_MAX = 100


def _target_stores_check(
    request: EnrollmentRequest, actor: Any, target_stores: Any, *, key_delivered: bool
) -> list[CertificateStore]:
    """The stores the issued certificate goes to, checked now so a request that cannot be
    delivered is refused (and recorded) before anything is issued.

    Each must exist, be one ``actor`` may act on, be approved, and take added
    certificates with what enrollment gives it: no alias and no entry parameters, and a
    private key only from a PFX enrollment (a CSR's key is the requester's).
    """
    if not target_stores:
        return []
    if not isinstance(target_stores, list | tuple) or len(target_stores) > TARGET_STORES_MAX:
        _fail(
            request,
            f"target_stores: a list of up to {TARGET_STORES_MAX} store ids",
            field="target_stores",
        )
    ids: list[str] = []
    for value in target_stores:
        try:
            ids.append(str(uuid.UUID(str(value))))
        except ValueError:
            _fail(
                request,
                f"target_stores: {str(value)[:60]!r} is not a store id",
                field="target_stores",
            )
    found = {
        str(s.pk): s
        for s in CertificateStore.objects.select_related("store_type").filter(pk__in=ids)
    }
    stores: list[CertificateStore] = []
    for store_id in dict.fromkeys(ids):
        store = found.get(store_id)
        if store is None:
            _fail(request, f"target_stores: there is no store {store_id}", field="target_stores")
        where = f"target store {store.store_path} on {store.client_machine}"
        if is_person(actor) and not may_act_on_store(actor, store):
            _fail(
                request,
                f"you may not act on {where}",
                code="not_yours",
                status=403,
                field="target_stores",
            )
        store_type = store.store_type
        problem = ""
        if not store.approved:
            problem = "is not approved"
        elif not store_type.supports_add:
            problem = f"is a {store_type.short_name} store, which does not take added certificates"
        elif store_type.private_key == "required" and not key_delivered:
            problem = (
                f"needs a private key with each certificate ({store_type.short_name}), and the "
                "key of a CSR enrollment stays with its requester: enroll as PFX"
            )
        else:
            needed = [
                str(spec.get("name"))
                for spec in store_type.entry_parameters or []
                if isinstance(spec, dict)
                and spec.get("default") in (None, "")
                and (
                    spec.get("required")
                    or "add" in (spec.get("required_when") or [])
                    or (key_delivered and "has_private_key" in (spec.get("required_when") or []))
                )
            ]
            if needed:
                problem = f"needs entry parameters ({', '.join(needed)}): deliver it from its page"
        if problem:
            _fail(
                request,
                f"{where} {problem}",
                code="target_store_refused",
                status=409,
                field="target_stores",
            )
        stores.append(store)
    return stores


def _target_stores_attach(request: EnrollmentRequest, stores: list[CertificateStore]) -> None:
    """Saved before issuing, so the issued hook finds where to deliver."""
    if stores:
        request.save()
        request.target_stores.set(stores)


@dataclass(frozen=True, slots=True)
class Submitted:
    request: EnrollmentRequest
    pfx: bytes | None = None  # PKCS#12 handed over once, when issued at once


def _proceed(
    request: EnrollmentRequest, template: Template, checked: policy.CheckedRequest
) -> None:
    """Wait for approval, or issue now."""
    if template.require_approval:
        with transaction.atomic():
            request.state = State.PENDING
            request.save()
            _event(EventKind.ENROLLMENT_PENDING, request)
        return
    _issue(request, template, checked)


def enrollment_submit_csr(
    *,
    template_name: Any,
    csr_pem: Any,
    metadata: Any = None,
    actor: Any = None,
    type: str = EnrollmentRequest.Type.NEW,
    renewal_of: Certificate | None = None,
    target_stores: Any = None,
    idempotency_key: Any = None,
) -> EnrollmentRequest:
    """Enroll a CSR under a template. Refusals raise EnrollmentRefused, recorded as failed.

    ``target_stores`` (store ids): where the certificate is delivered once issued.
    ``idempotency_key``: the same key from the same requester answers with the request
    it first submitted (``replayed`` set) instead of issuing again; a key already used
    for another template or method is refused (``idempotency_key_reused``).
    """
    method = EnrollmentRequest.Method.CSR
    key = idempotency_key_check(idempotency_key)
    first = _replayed(actor, key, template_name=template_name, method=method)
    if first is not None:
        return first
    request = _new_request(
        template_name=template_name,
        actor=actor,
        method=method,
        type=type,
        renewal_of=renewal_of,
        idempotency_key=key,
    )
    try:
        template = _template_find(request, template_name)
        csr_text = csr_pem if isinstance(csr_pem, str) else ""
        checked = _checked(request, template, csr_text, metadata)
        stores = _target_stores_check(request, actor, target_stores, key_delivered=False)
        _target_stores_attach(request, stores)
        _proceed(request, template, checked)
    except IntegrityError as exc:
        return _key_holder(exc, request, template_name=template_name)
    return request


BATCH_MAX = 1000


def enrollments_submit_csr_batch(
    *, template_name: Any, csr_pems: list[Any], metadata: Any = None, actor: Any = None
) -> list[EnrollmentRequest]:
    """Enroll many CSRs under one built-in-CA template at once (bulk issuance).

    Each CSR is checked exactly as :func:`enrollment_submit_csr` checks it and gets a
    request of its own; refused ones are recorded as failed with their reason, the others
    are issued (or left pending approval) together, in one transaction with one insert per
    table. A template that issues through a gateway takes the CSRs one by one.
    """
    if not isinstance(csr_pems, list) or not 1 <= len(csr_pems) <= BATCH_MAX:
        raise ServiceError(f"send 1 to {BATCH_MAX:,} CSRs", field="csrs")
    template = Template.objects.select_related("ca").filter(name=str(template_name)).first()
    if template is not None and template.gateway_id is not None and template.enabled:
        return [_submit_catching(template_name, pem, metadata, actor) for pem in csr_pems]
    common_error = ""
    values: dict[str, Any] = {}
    if template is None:
        common_error = f"there is no template named {template_name!r}"
    elif not template.enabled:
        common_error = f"the template {template.name!r} is disabled"
    elif issuer_problem(template):
        common_error = issuer_problem(template)
    else:
        try:
            values = _metadata_check(template, metadata)
        except policy.PolicyError as exc:
            common_error = str(exc)
    actor = _actor(actor)
    requests: list[EnrollmentRequest] = []
    accepted: list[tuple[EnrollmentRequest, policy.CheckedRequest]] = []
    for pem in csr_pems:
        request = EnrollmentRequest(
            template=template,
            template_name=str(template_name or "")[:100],
            method=EnrollmentRequest.Method.CSR,
            requested_by=actor,
            state=State.FAILED,
        )
        requests.append(request)
        if common_error:
            request.failure_reason = common_error
            continue
        try:
            csr = policy.csr_parse(pem)
            request.subject, request.sans = policy.csr_names_as_requested(csr)
            checked = policy.request_check(template, csr)  # type: ignore[arg-type]
        except policy.PolicyError as exc:
            request.failure_reason = str(exc)
            continue
        request.csr_pem = pem.strip()
        request.subject = checked.subject_text
        request.sans = list(checked.san_texts)
        request.key_algorithm = checked.key_algorithm
        request.metadata = values
        accepted.append((request, checked))
    with transaction.atomic():
        if accepted and template is not None and template.require_approval:
            for request, _ in accepted:
                request.state = State.PENDING
            instances_insert(EnrollmentRequest, requests)
            events_emit(_event_spec(EventKind.ENROLLMENT_PENDING, r) for r, _ in accepted)
            return requests
        signed = _batch_issue(template, accepted, values) if accepted else []  # type: ignore[arg-type]
        instances_insert(EnrollmentRequest, requests)
        events_emit(
            _certificate_event_spec(request, certificate) for request, certificate in signed
        )
    return requests


def _batch_issue(
    template: Template,
    accepted: list[tuple[EnrollmentRequest, policy.CheckedRequest]],
    values: dict[str, Any],
) -> list[tuple[EnrollmentRequest, x509.Certificate]]:
    """Sign the accepted requests; what was issued, for the events."""
    try:
        issued = pki_services.certificates_issue(
            ca=template.ca,  # type: ignore[arg-type]
            requests=[
                (checked.csr.public_key(), _profile(template, checked))  # type: ignore[misc]
                for _, checked in accepted
            ],
        )
    except ServiceError as exc:
        for request, _ in accepted:
            request.failure_reason = exc.message
        return []
    chain = _chain_ders(issued[0].chain_pem) if issued else []
    recorded = certificates_record(
        [[one.certificate.public_bytes(serialization.Encoding.DER), *chain] for one in issued],
        loaded={one.record.sha256: one.certificate for one in issued},
    )
    now = timezone.now()
    for (request, _), one in zip(accepted, issued, strict=True):
        request.certificate_id = recorded.ids[one.record.sha256]
        request.certificate_pem = one.pem
        request.chain_pem = one.chain_pem
        request.serial_number = one.record.serial_number
        request.ca_request_id = one.record.serial_number
        request.state = State.ISSUED
        request.issued_at = now
    if values:
        source = (
            user_source(accepted[0][0].requested_by)
            if accepted[0][0].requested_by
            else ENROLLMENT_SOURCE
        )
        metadata_values_set(
            certificate_ids=[r.certificate_id for r, _ in accepted], values=values, source=source
        )
    return [(request, one.certificate) for (request, _), one in zip(accepted, issued, strict=True)]


def _submit_catching(template_name: Any, pem: Any, metadata: Any, actor: Any) -> EnrollmentRequest:
    try:
        return enrollment_submit_csr(
            template_name=template_name, csr_pem=pem, metadata=metadata, actor=actor
        )
    except EnrollmentRefused as exc:
        return EnrollmentRequest.objects.get(pk=exc.details["enrollment_id"])
