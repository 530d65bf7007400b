"""The exception services raise when a request cannot be carried out.

Views turn it into an answer: a JSON error on the APIs, a message in the console.
"""

from typing import Any


class ServiceError(Exception):
    """A refusal with a sentence a person understands and a stable code."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        http_status: int = 400,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        # Machine-readable particulars, added to the API's error body.
        self.details = details or {}


class NotFound(ServiceError):
    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message, code="not_found", http_status=404)


class Conflict(ServiceError):
    def __init__(self, message: str, *, code: str = "conflict") -> None:
        super().__init__(message, code=code, http_status=409)
