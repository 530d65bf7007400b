"""The exception services raise when a request cannot be carried out.

Views turn it into an answer: a JSON error on the APIs, a message in the console.
"""

from typing import Any


class ServiceError(Exception):
    """A refusal with a sentence a person understands and a stable code.

    A refusal that concerns one input names it with ``field`` (the message is then that
    field's error), or several with ``fields`` (``{name: [message, …]}``): either way the
    API's error body carries them as ``fields``, the one shape every error has, and the
    console puts each message beside its field. ``details`` holds other machine-readable
    particulars (``enrollment_id``), added to the body as they are.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        http_status: int = 400,
        field: str | None = None,
        fields: dict[str, list[str]] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        # Machine-readable particulars, added to the API's error body.
        self.details = dict(details or {})
        named = {name: list(messages) for name, messages in (fields or {}).items()}
        if field:
            named.setdefault(field, []).append(message)
        if named:
            self.details["fields"] = named

    @property
    def fields(self) -> dict[str, list[str]]:
        """The inputs this refusal concerns, each with its messages (empty for none)."""
        return self.details.get("fields") or {}


class NotFound(ServiceError):
    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message, code="not_found", http_status=404)


class Conflict(ServiceError):
    def __init__(self, message: str, *, code: str = "conflict") -> None:
        super().__init__(message, code=code, http_status=409)
