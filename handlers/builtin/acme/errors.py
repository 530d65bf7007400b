"""What the CA's refusals and the network's failures become: a HandlerError that says
whether the same request could succeed later."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import httpx

from handlers.base import HandlerError

_ERROR_PREFIX = "urn:ietf:params:acme:error:"
# Problems that the same request would meet again: the configuration or the request is at
# fault, so the platform fails the request at once instead of retrying it.
PERMANENT_PROBLEMS = frozenset(
    {
        "accountDoesNotExist",
        "badCSR",
        "badPublicKey",
        "badRevocationReason",
        "badSignatureAlgorithm",
        "caa",
        "externalAccountRequired",
        "invalidContact",
        "invalidProfile",
        "malformed",
        "rejectedIdentifier",
        "unauthorized",
        "unsupportedContact",
        "unsupportedIdentifier",
        "userActionRequired",
    }
)
_PROBLEM_EXCERPT = 300


class AcmeProblem(HandlerError):
    """The CA refused a request with an RFC 7807 problem document.

    Attributes:
        problem_type: The type without the ACME prefix (``rejectedIdentifier``), or the
            full URI for a CA's own types.
        detail: The CA's sentence.
        status: The HTTP status.
    """

    def __init__(self, action: str, status: int, problem: Mapping[str, Any], origin: str) -> None:
        full_type = str(problem.get("type") or "about:blank")
        self.problem_type = full_type.removeprefix(_ERROR_PREFIX)
        self.status = status
        self.detail = str(problem.get("detail") or "").strip()[:_PROBLEM_EXCERPT]
        details = [self.detail] if self.detail else []
        for sub in problem.get("subproblems") or []:
            if isinstance(sub, Mapping) and sub.get("detail"):
                details.append(str(sub["detail"])[:_PROBLEM_EXCERPT])
        said = "; ".join(details) or "no detail given"
        super().__init__(
            f"{action}: {origin} refused: {said} ({self.problem_type})",
            permanent=self.problem_type in PERMANENT_PROBLEMS,
            output={"status_code": status, "problem": dict(problem)},
        )


def _response_problem(action: str, response: httpx.Response, origin: str) -> HandlerError:
    """The error for an answer that is not a success: the problem document when there is one."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict) and problem.get("type"):
        return AcmeProblem(action, response.status_code, problem, origin)
    excerpt = response.text[:_PROBLEM_EXCERPT].strip()
    return HandlerError(
        f"{action}: {origin} answered HTTP {response.status_code}"
        + (f": {excerpt}" if excerpt else ""),
        # A server error may pass; a 4xx without a problem document will not.
        permanent=response.status_code < 500 and response.status_code != 429,
        output={"status_code": response.status_code},
    )


def _tls_refused(exc: BaseException) -> bool:
    """Whether a connection error is a refused server certificate (a configuration matter)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transport_error(action: str, url: str, exc: httpx.HTTPError) -> HandlerError:
    if isinstance(exc, httpx.TimeoutException):
        return HandlerError(f"{action}: {url} did not answer in time")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return HandlerError(f"{action}: {url} cannot be used ({exc})", permanent=True)
    if _tls_refused(exc):
        return HandlerError(
            f"{action}: the HTTPS certificate of {url} is not trusted: put its CA in "
            "ca_bundle (or turn verify_tls off for a test CA)",
            permanent=True,
        )
    reason = str(exc) or type(exc).__name__
    return HandlerError(f"{action}: could not reach {url} ({reason})")


def _problem_text(problem: Any) -> str:
    if isinstance(problem, Mapping):
        detail = str(problem.get("detail") or "").strip()[:_PROBLEM_EXCERPT]
        kind = str(problem.get("type") or "").removeprefix(_ERROR_PREFIX)
        return f"{detail} ({kind})" if kind else detail or "no detail given"
    return "no detail given"
