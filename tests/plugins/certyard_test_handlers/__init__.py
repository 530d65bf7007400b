"""Handlers for Certyard's tests: each does one thing, well or badly, on purpose.

``RecordEvent`` appends what it received to a file, so a test in another process can see
that (and with what) a worker ran it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from handlers.base import (
    CertificateInfo,
    EventContext,
    EventHandler,
    HandlerError,
    HandlerResult,
    JobCompleteContext,
    JobCompleteHandler,
    MetadataGenerator,
    Platform,
    RegistrationDecision,
    RegistrationHandler,
    RegistrationRequest,
    Verdict,
)
from handlers.parameters import Parameter, ParameterType


def _append(path: str, record: Mapping[str, Any]) -> None:
    with Path(path).open("a", encoding="utf-8") as file:
        file.write(json.dumps(record, default=str) + "\n")


class RecordEvent(EventHandler):
    """Appends each event it receives, as one JSON line, to a file."""

    label = "Record events (test)"
    parameters = (Parameter("path", required=True, help="The file to append to."),)

    def handle(self, event: EventContext) -> HandlerResult:
        _append(self.config["path"], event.as_json())
        return HandlerResult(message=f"recorded {event.kind}", output={"kind": event.kind})


class RecordTypedConfig(EventHandler):
    """Appends, for each event, its mapping and JSON parameters as ``self.config`` holds
    them (with their Python type names), so a test sees them arrive typed."""

    label = "Record typed config (test)"
    parameters = (
        Parameter("path", required=True, help="The file to append to."),
        Parameter("labels", ParameterType.MAPPING, required=True, help="Labels to attach."),
        Parameter(
            "policy",
            ParameterType.JSON,
            help="How to retry.",
            default={"retries": 3},
            schema={
                "type": "object",
                "properties": {
                    "retries": {"type": "integer", "minimum": 0, "maximum": 10},
                    "notify": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["retries"],
                "additionalProperties": False,
            },
        ),
    )

    def handle(self, event: EventContext) -> HandlerResult:
        labels, policy = self.config["labels"], self.config["policy"]
        _append(
            self.config["path"],
            {
                "kind": event.kind,
                "labels": labels,
                "policy": policy,
                "types": {"labels": type(labels).__name__, "policy": type(policy).__name__},
            },
        )
        return HandlerResult(message=f"recorded {len(labels)} labels")


class Raises(EventHandler):
    """Raises an ordinary exception, as a buggy handler would."""

    label = "Raises (test)"
    parameters = (
        Parameter("permanent", ParameterType.BOOLEAN, default=False),
        Parameter("handler_error", ParameterType.BOOLEAN, default=False),
    )

    def handle(self, event: EventContext) -> HandlerResult:
        if self.config["handler_error"]:
            raise HandlerError("the ticket system refused us", permanent=self.config["permanent"])
        raise RuntimeError(f"boom on {event.kind}")


class Hangs(EventHandler):
    """Sleeps far longer than any timeout."""

    label = "Hangs (test)"
    parameters = (Parameter("seconds", ParameterType.INTEGER, default=3600),)

    def handle(self, event: EventContext) -> HandlerResult:
        time.sleep(self.config["seconds"])
        return HandlerResult(message="woke up")


class SuppressEmail(EventHandler):
    """Asks the handlers after it to send no email."""

    label = "Suppress email (test)"

    def handle(self, event: EventContext) -> HandlerResult:
        return HandlerResult(message="email suppressed", context_updates={"suppress_email": True})


class FollowUpInventory(JobCompleteHandler):
    """After a failed job, records it and asks for another inventory of the store."""

    label = "Follow-up inventory (test)"
    parameters = (Parameter("path", required=True),)

    def handle(self, job: JobCompleteContext, platform: Platform) -> HandlerResult:
        _append(
            self.config["path"],
            {
                "job_id": job.job_id,
                "type": job.job_type,
                "outcome": job.outcome,
                "attempt": job.attempt,
            },
        )
        if job.store is not None and job.outcome == "failure" and job.final:
            platform.schedule_job(store_id=job.store["id"], job_type="inventory")
        return HandlerResult(message=f"{job.job_type} ended {job.outcome}")


class GarbageRegistration(RegistrationHandler):
    """Answers something that is not a decision."""

    label = "Garbage decision (test)"

    def decide(self, request: RegistrationRequest) -> Any:
        return {"verdict": "allow"}


class HangingRegistration(RegistrationHandler):
    """Never answers in time."""

    label = "Hanging decision (test)"

    def decide(self, request: RegistrationRequest) -> Any:
        time.sleep(3600)


class RaisingRegistration(RegistrationHandler):
    """Raises an ordinary exception instead of deciding, as a buggy handler would."""

    label = "Raising decision (test)"

    def decide(self, request: RegistrationRequest) -> Any:
        raise RuntimeError(f"boom on {request.name}")


class FixedDecision(RegistrationHandler):
    """Answers the same decision for every agent."""

    label = "Fixed decision (test)"
    parameters = (
        Parameter(
            "verdict", ParameterType.CHOICE, choices=("allow", "deny", "defer"), required=True
        ),
        Parameter("blueprint"),
        Parameter("issue_certificate", ParameterType.BOOLEAN, default=True),
    )

    def decide(self, request: RegistrationRequest) -> RegistrationDecision:
        return RegistrationDecision(
            Verdict(self.config["verdict"]),
            reason=f"fixed for {request.name}",
            blueprint=self.config.get("blueprint") or None,
            metadata={"decided": "fixed"},
            issue_certificate=self.config["issue_certificate"],
        )


# --- Metadata generators that misbehave ---------------------------------------------------


class RaisingGenerator(MetadataGenerator):
    """Raises an ordinary exception for every certificate."""

    label = "Raising generator (test)"

    def generate(self, certificate: CertificateInfo) -> Mapping[str, Any]:
        raise RuntimeError(f"boom on {certificate.common_name}")


class HangingGenerator(MetadataGenerator):
    """Sleeps far longer than any timeout, for every batch."""

    label = "Hanging generator (test)"
    parameters = (Parameter("seconds", ParameterType.INTEGER, default=3600),)

    def generate(self, certificate: CertificateInfo) -> Mapping[str, Any]:
        time.sleep(self.config["seconds"])
        return {}


# --- CA gateways that misbehave -----------------------------------------------------------

from handlers.gateways import (  # noqa: E402 - grouped with the gateways below
    CAGateway,
    CARecord,
    GatewayEnrollment,
    GatewayRevocation,
    Product,
    RecordStatus,
)


class _TestGateway(CAGateway):
    def products(self) -> list[Product]:
        return [Product("default", "Default")]

    def fetch(self, ca_request_id: str) -> CARecord:
        raise HandlerError("nothing to fetch", permanent=True)

    def revoke(self, request: GatewayRevocation) -> CARecord:
        raise HandlerError("nothing to revoke", permanent=True)


class RaisingGateway(_TestGateway):
    """A CA gateway whose enroll raises a plain exception (a bug in a third party's code)."""

    label = "Raising gateway (test)"

    def ping(self) -> None:
        return None

    def enroll(self, request: GatewayEnrollment) -> CARecord:
        raise RuntimeError("the gateway's own bug")


class HangingGateway(_TestGateway):
    """A CA gateway that never answers enroll."""

    label = "Hanging gateway (test)"

    def ping(self) -> None:
        return None

    def enroll(self, request: GatewayEnrollment) -> CARecord:
        time.sleep(3600)
        raise AssertionError("unreachable")


class GarbageGateway(_TestGateway):
    """A CA gateway that answers enroll with something that is not a CARecord, or a
    certificate for another key."""

    label = "Garbage gateway (test)"
    parameters = (Parameter("answer", ParameterType.CHOICE, choices=("text", "other_key")),)

    def ping(self) -> None:
        return None

    def enroll(self, request: GatewayEnrollment) -> Any:
        if self.config.get("answer") == "other_key":
            return CARecord("x-1", RecordStatus.ISSUED, certificate_pem=_stranger_pem())
        return "issued, honest"


def _stranger_pem() -> str:
    """A certificate for a key nobody asked about."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger.example.test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
