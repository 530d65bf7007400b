"""Recording and refusing: a refused request is saved as failed with its reason; the
events enrollment emits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certyard.enrollment import policy
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.errors import ServiceError
from certyard.inventory.metadata import metadata_values_check
from certyard.inventory.models import MetadataField
from certyard.pki import crypto
from certyard.precompiled import PrecompiledQuery
from certyard.workflows.services import EventSpec, events_emit
from handlers.base import EventKind

State = EnrollmentRequest.State
_PFX_PASSWORD_MIN = 8
ENROLLMENT_SOURCE = "enrollment"


class EnrollmentRefused(ServiceError):
    """A request was refused and recorded as failed; ``details`` names it."""


def _fail(
    request: EnrollmentRequest,
    reason: str,
    *,
    code: str = "enrollment_refused",
    status: int = 400,
    field: str = "",
) -> NoReturn:
    """Record the request as failed (inserted if it was never saved, or rolled back);
    ``field`` names the input at fault, for the API's and the console's error."""
    request.state = State.FAILED
    request.failure_reason = reason
    request.private_key_pem = ""  # a refused request keeps no key
    exists = not request._state.adding and (
        EnrollmentRequest.objects.filter(pk=request.pk).exists()
    )
    request._state.adding = not exists
    request.save(force_insert=not exists)
    raise EnrollmentRefused(
        reason,
        code=code,
        http_status=status,
        field=field or None,
        details={"enrollment_id": str(request.pk)},
    )


def _actor(user: Any) -> Any:
    return user if getattr(user, "pk", None) else None


# The fields every enrollment must fill in: asked on each.
_fields_required_at_enrollment = PrecompiledQuery(
    lambda: MetadataField.objects.filter(required_at_enrollment=True).only("name").order_by()
)


def _required_metadata(template: Template) -> list[str]:
    required = set(template.required_metadata)
    required.update(field.name for field in _fields_required_at_enrollment())
    return sorted(required)


def _metadata_check(template: Template, values: Any) -> dict[str, Any]:
    if values in (None, ""):
        values = {}
    if not isinstance(values, Mapping):
        raise policy.PolicyError("metadata must be an object of field names and values")
    missing = [
        name for name in _required_metadata(template) if str(values.get(name, "")).strip() == ""
    ]
    if missing:
        raise policy.PolicyError(
            f"metadata required at enrollment is missing: {', '.join(missing)}"
        )
    try:
        metadata_values_check(values)
    except ServiceError as exc:
        raise policy.PolicyError(f"metadata: {exc.message}") from exc
    return dict(values)


def _event_spec(kind: EventKind, request: EnrollmentRequest, **data: Any) -> EventSpec:
    return EventSpec(
        kind=kind,
        subject_type="enrollment",
        subject_id=str(request.pk),
        subject_label=request.subject[:300],
        data={
            "enrollment_id": str(request.pk),
            "template": request.template_name,
            "type": request.type,
            "subject": request.subject,
            # The CN is one of the names a rule must judge, beside the SANs.
            "common_name": crypto.common_name(request.subject),
            "sans": list(request.sans),
            "requested_by": request.requested_by.get_username() if request.requested_by else "",
            **data,
        },
    )


def _event(kind: EventKind, request: EnrollmentRequest, **data: Any) -> None:
    events_emit([_event_spec(kind, request, **data)])


def _certificate_event_spec(request: EnrollmentRequest, certificate: x509.Certificate) -> EventSpec:
    kind = (
        EventKind.CERTIFICATE_RENEWED
        if request.type == EnrollmentRequest.Type.RENEW
        else EventKind.CERTIFICATE_ISSUED
    )
    sha256 = certificate.fingerprint(hashes.SHA256()).hex()
    return EventSpec(
        kind=kind,
        subject_type="certificate",
        subject_id=sha256,
        subject_label=request.subject[:300],
        data={
            "sha256": sha256,
            "enrollment_id": str(request.pk),
            "template": request.template_name,
            "serial_number": request.serial_number,
            "subject": request.subject,
            "sans": list(request.sans),
            "not_after": certificate.not_valid_after_utc.isoformat(),
            "renewal_of": request.renewal_of.sha256 if request.renewal_of else "",
            "requested_by": request.requested_by.get_username() if request.requested_by else "",
        },
    )


def _certificate_event(request: EnrollmentRequest, certificate: x509.Certificate) -> None:
    events_emit([_certificate_event_spec(request, certificate)])
