"""The OpenAPI schema: every operation documents the error answers it can give.

Both APIs answer every error with one body, ``{"error": {"code", "message", "fields"?,
…particulars}}`` (``certyard.api.errors``); the schema names it once, exactly, as the
``Error`` component, and each operation lists the statuses it may answer with it. Most
follow from what the operation is, so they are worked out here rather than repeated on
every view:

- 400 when it reads a body or parameters, or changes anything (a service's refusal);
- 401 and 403 when it needs credentials (the people's API checks permissions too,
  the agent API that the orchestrator is approved);
- 404 when its path names an object, or it pages (a page past the end);
- 409 when it changes something: the state it changes may not allow it;
- 415 when it reads a body (JSON only);
- 429 when it is throttled (with ``Retry-After``);
- 500 always: the platform's own failure, still as the JSON error body.

A view adds what only it knows with ``error_responses = {status: description}``, and
takes back one that cannot happen with ``{status: None}``.
Statuses a view documents itself (``@extend_schema(responses=...)``) are kept as they are.
"""

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers
from rest_framework.permissions import AllowAny

ERROR_COMPONENT = "Error"

_STRINGS = {"type": "array", "items": {"type": "string"}}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The body of every error answer, on both APIs.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable and machine-readable, e.g. invalid, not_found, "
                    "throttled, token_invalid, not_approved, conflict.",
                },
                "message": {
                    "type": "string",
                    "description": "A sentence saying what was wrong and what to do about it.",
                },
                "fields": {
                    "type": "object",
                    "description": "The inputs at fault, each with its messages.",
                    "additionalProperties": _STRINGS,
                },
                # The particulars some refusals add (``ServiceError.details``, ``ApiError``'s
                # ``extra``): every one is named here, so the schema says all a body may hold.
                "enrollment_id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "A refused enrollment: the request, recorded as failed "
                    "with the reason.",
                },
                "missing": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "chunks_missing: the chunks of the report that never "
                    "arrived (at most 1,000).",
                },
                "reason": {
                    "type": "string",
                    "description": "identity_rejected: why, e.g. certificate_revoked.",
                },
                "rejected": {
                    "type": "array",
                    "description": "invalid_entries: the first of the report's entries that "
                    "could not be recorded.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "alias": {"type": "string"},
                            "error": {"type": "string"},
                        },
                        "required": ["index", "alias", "error"],
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}

DESCRIPTIONS = {
    400: "The request is malformed, or its input invalid (``fields`` says where), or it "
    "cannot be carried out as asked.",
    401: "No valid credentials: none were sent, or they are wrong or expired.",
    403: "The credentials are valid but do not allow this.",
    404: "No such object (or page), or not one the caller may see.",
    409: "The object's current state does not allow this.",
    413: "The request is larger than the platform accepts; send it in parts.",
    415: "The body is not JSON (``Content-Type: application/json``).",
    422: "The request was understood but some of its content was rejected.",
    429: "Too many requests from this address; try again after ``Retry-After`` seconds.",
    500: "The platform failed to handle the request.",
}

_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

# What Python's str.strip() takes away (DRF trims text fields before checking them), spelled
# for any regex engine: the schema's validators and generators are not all Python's.
_WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# DRF refuses a NUL anywhere in text; a field that may not be blank needs more than spaces.
TEXT_PATTERN = r"^[^\x00]*$"
_NON_NULL_JSON_TYPES = ("object", "array", "string", "number", "boolean")
NON_BLANK_TEXT_PATTERN = rf"^[^\x00]*[^\x00{_WHITESPACE}][^\x00]*$"


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's schema, with each operation's error answers (see the module)."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status, description in sorted(self.error_statuses(operation).items()):
            if str(status) not in responses:  # a view's own documentation stays as it is
                responses[str(status)] = self._error_response(status, description)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _get_serializer_field_meta(self, field: Any, direction: str) -> dict[str, Any]:
        """drf-spectacular's, plus what DRF refuses that it does not say: in text, a NUL
        character, and (trimmed) nothing but whitespace (fields with a pattern of their own
        keep it); null, for a JSON field that does not allow it."""
        meta: dict[str, Any] = super()._get_serializer_field_meta(field, direction)
        if direction == "request" and isinstance(field, serializers.JSONField):
            # drf-spectacular says any value ({}), null included; DRF refuses null unless
            # the field allows it.
            if not field.allow_null and not field.read_only:
                meta["anyOf"] = [{"type": t} for t in _NON_NULL_JSON_TYPES]
            return meta
        if (
            direction != "request"
            or field.read_only
            or not isinstance(field, serializers.CharField)
            or isinstance(field, serializers.RegexField)
            or any(isinstance(v, RegexValidator) for v in field.validators)
        ):
            return meta
        blank_refused = not field.allow_blank and field.trim_whitespace
        meta["pattern"] = NON_BLANK_TEXT_PATTERN if blank_refused else TEXT_PATTERN
        if field.allow_blank and "minLength" not in meta:
            # drf-spectacular offers a blank field as oneOf [this, {maxLength: 0}]: "" must
            # match only the second, or it matches both and oneOf calls it invalid.
            meta["minLength"] = 1
        return meta

    def error_statuses(self, operation: dict[str, Any]) -> dict[int, str]:
        """The error statuses this operation may answer, each with its description."""
        parameters = operation.get("parameters", [])
        takes_body = "requestBody" in operation
        changes = self.method in _UNSAFE
        statuses = {500}
        if takes_body or parameters or changes:
            statuses.add(400)
        if not any(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            statuses |= {401, 403}
        if any(p["in"] == "path" or p["name"] == "page" for p in parameters):
            statuses.add(404)
        if changes:
            statuses.add(409)
        if takes_body:
            statuses.add(415)
        if self.view.get_throttles():
            statuses.add(429)
        own: dict[int, str | None] = getattr(self.view, "error_responses", {})
        found = {**{status: DESCRIPTIONS[status] for status in statuses}, **own}
        return {status: text for status, text in found.items() if text is not None}

    def _error_response(self, status: int, description: str) -> dict[str, Any]:
        component = ResolvedComponent(
            name=ERROR_COMPONENT,
            type=ResolvedComponent.SCHEMA,
            object=ERROR_COMPONENT,
            schema=ERROR_SCHEMA,
        )
        self.registry.register_on_missing(component)
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": component.ref}},
        }
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "schema": {"type": "integer"},
                    "required": True,
                    "description": "Seconds until a request from this address is accepted.",
                }
            }
        elif status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "schema": {"type": "string"},
                    "description": "The scheme to authenticate with, when none was sent.",
                }
            }
        return response
