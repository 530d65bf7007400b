"""One error format for every API answer: ``{"error": {"code", "message", "fields"?, …}}``.

People and agents both get a sentence they can act on, and a machine-readable code. The
inputs at fault are always ``fields``, ``{name: [message, …]}`` (a service names them with
``ServiceError(field=…)`` or ``fields=…``); a few refusals add particulars of their own
(``enrollment_id``, ``missing``, ``reason``, ``rejected``). The schema's ``Error``
component (``certyard.api.schema``) names every one: a new particular goes there too.
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import ProtectedError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from certyard.errors import ServiceError


class ApiError(exceptions.APIException):
    """An error raised by our own code with an explicit status, code and message."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        status_code: int = status.HTTP_400_BAD_REQUEST,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.extra = extra or {}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            str(key): [str(v) for v in value] if isinstance(value, list) else [str(value)]
            for key, value in detail.items()
        }
    return {"non_field_errors": [str(v) for v in detail]} if isinstance(detail, list) else {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, **exc.details), status=exc.http_status)
    if isinstance(exc, ProtectedError):
        in_use = ", ".join(sorted({str(obj) for obj in list(exc.protected_objects)[:5]}))
        return Response(
            error_body("in_use", f"it is still in use (by {in_use}); remove those first"),
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = error_body(exc.get_codes(), str(exc.detail), **exc.extra)
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        first = next(iter(fields.items()), ("", ["Invalid input."]))
        where = "" if first[0] in ("", "non_field_errors") else f"{first[0]}: "
        response.data = error_body("invalid", f"{where}{first[1][0]}", fields=fields)
        return response
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes()
        if not isinstance(code, str):
            code = "error"
        response.data = error_body(code, str(exc.detail))
    return response
