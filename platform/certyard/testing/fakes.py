"""A recording platform facade, and what a handler run through the platform left behind.

:class:`RecordingPlatform` is the platform's own facade (:class:`PlatformRequests`): every
request a handler makes is recorded exactly as the platform records it on a run (the same
dicts, the same returned ids), and nothing is carried out. The one difference: mail is
kept in :attr:`RecordingPlatform.mails` instead of being sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from certyard.workflows.actions import PlatformRequests

if TYPE_CHECKING:
    from certyard.workflows.models import Event, HandlerRun

__all__ = ["InvokeResult", "RecordingPlatform", "SentMail"]


@dataclass(frozen=True, slots=True)
class SentMail:
    """One mail a handler sent through ``platform.send_mail``.

    Attributes:
        subject, body: As given.
        to: The recipients (``Name <address>`` kept as written).
        from_address: The sender given, or None for the platform's default.
    """

    subject: str
    body: str
    to: tuple[str, ...]
    from_address: str | None = None


class RecordingPlatform(PlatformRequests):
    """A :class:`handlers.base.Platform` for tests: records, carries out nothing.

    It is the platform's own facade, so ``actions`` holds the very dicts a run records in
    ``output["actions"]`` (``{"action": "schedule_job", "store_id": ..., ...}``) and each
    method returns what the platform's returns (the id it allocated, where it allocates
    one). Mail is kept in :attr:`mails` instead of being sent; set :attr:`mail_error` to
    an exception (``smtplib.SMTPRecipientsRefused(...)``, ``OSError(...)``) to make
    ``send_mail`` raise it, as an unreachable or refusing server does.

    Pass it to a job complete handler's ``handle(job, platform)``, set it as an event
    handler's ``handler.platform`` (:func:`~certyard.testing.handler_make` does), or get
    the one the ``certyard_invoke`` fixture uses from the ``certyard_platform`` fixture.

    Example::

        platform = RecordingPlatform()
        handler.handle(job_complete_context(outcome="failure"), platform)
        assert platform.scheduled_jobs == [
            {"action": "schedule_job", "store_id": "...", "job_type": "inventory", ...}
        ]
    """

    def __init__(self, source: str = "tests", *args: Any, **kwargs: Any) -> None:
        super().__init__(source, *args, **kwargs)
        #: The mails sent, in order.
        self.mails: list[SentMail] = []
        #: Raised by ``send_mail`` instead of keeping the mail, when set.
        self.mail_error: BaseException | None = None

    def send_mail(
        self, *, subject: str, body: str, to: Sequence[str], from_address: str | None = None
    ) -> None:
        """Keep the mail in :attr:`mails` (or raise :attr:`mail_error`)."""
        if self.mail_error is not None:
            raise self.mail_error
        self.mails.append(SentMail(str(subject), str(body), tuple(to), from_address or None))

    def actions_named(self, name: str) -> list[dict[str, Any]]:
        """The recorded requests of one kind (``schedule_job``, ``set_metadata``, ...)."""
        return [action for action in self.actions if action.get("action") == name]

    @property
    def scheduled_jobs(self) -> list[dict[str, Any]]:
        """The ``schedule_job`` requests: ``store_id``, ``job_type``, ``delay_seconds``, ..."""
        return self.actions_named("schedule_job")

    @property
    def metadata_set(self) -> list[dict[str, Any]]:
        """The ``set_metadata`` requests: ``certificate_sha256`` and ``values``."""
        return self.actions_named("set_metadata")

    @property
    def approvals(self) -> list[dict[str, Any]]:
        """The ``approve_enrollment`` requests: ``enrollment_id``, ``comment``, ``by``."""
        return self.actions_named("approve_enrollment")

    @property
    def denials(self) -> list[dict[str, Any]]:
        """The ``deny_enrollment`` requests: ``enrollment_id``, ``comment``, ``by``."""
        return self.actions_named("deny_enrollment")

    @property
    def renewals(self) -> list[dict[str, Any]]:
        """The ``renew_certificate`` and ``renew_and_replace`` requests, in order."""
        return [
            action
            for action in self.actions
            if action.get("action") in ("renew_certificate", "renew_and_replace")
        ]

    def clear(self) -> None:
        """Forget the recorded requests and mails (between two calls of one test)."""
        self.actions.clear()
        self.mails.clear()


@dataclass(slots=True)
class InvokeResult:
    """What running a handler through the platform (the ``certyard_invoke`` fixture) left.

    Attributes:
        outcome: How the call ended, as the platform classifies it: ``ok``,
            ``retryable_error``, ``permanent_error``, ``timed_out``, ``missing_class``,
            ``bad_parameters`` or ``bad_answer``.
        result: The handler's answer, once checked: a ``HandlerResult`` (event and job
            complete handlers), a ``RegistrationDecision``, a list of the values a metadata
            generator set per certificate (checked and converted by their fields), or a
            gateway's ``CARecord``; None when it failed.
        run: The :class:`~certyard.workflows.models.HandlerRun` recorded (state, inputs,
            output, message, error, traceback), read back from the database.
        actions: What the handler asked of the platform, as recorded on the run.
        platform: The :class:`RecordingPlatform` the handler was given (event and job
            complete handlers), with its ``mails``.
        event: The event row it ran for (event and job complete handlers).
        errors: A metadata generator's per-certificate problems
            (``{"sha256", "field", "message"}``), as its run records them.
    """

    outcome: str
    result: Any = None
    run: HandlerRun | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    platform: RecordingPlatform | None = None
    event: Event | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.outcome == "ok"

    @property
    def message(self) -> str:
        """The run's message (its one line for the run list)."""
        return self.run.message if self.run is not None else ""

    @property
    def error(self) -> str:
        """The run's error, "" when it succeeded."""
        return self.run.error if self.run is not None else ""

    @property
    def output(self) -> dict[str, Any]:
        """The run's recorded output."""
        return dict(self.run.output) if self.run is not None else {}
