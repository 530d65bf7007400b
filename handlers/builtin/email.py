"""The built-in email notification ("certyard.email"), sent through the platform facade
(``self.platform.send_mail``): the handler itself imports nothing of Django."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from handlers.base import EventContext, EventHandler, HandlerError, HandlerResult
from handlers.builtin._common import event_fields, setting, substitute
from handlers.parameters import Parameter, ParameterError, ParameterType, value_check
from handlers.text import visible

DEFAULT_SUBJECT = "[Certyard] {kind}: {subject_label}"
DEFAULT_BODY = """\
Hello,

Certyard reports {kind} for the {subject_type} "{subject_label}".

The certificate expires on {not_after} (days left: {days_left}).
It is installed in the store {store} under the alias {alias}.

Renew or replace it before then, or remove it from the store if it is no longer used.

Event {event_id}, at {occurred_at}.
--
Sent by Certyard.
"""

_EMAIL_FORMAT = Parameter("recipient", ParameterType.EMAIL)


def _recipient_problem(recipient: str) -> str | None:
    """Why one recipient line is not an address (``Name <address>`` is fine), or None."""
    if "," in recipient or ";" in recipient:
        return "give one address per line"
    _, address = parseaddr(recipient)
    if not address:
        return "is not an email address"
    try:
        value_check(_EMAIL_FORMAT, address)
    except ValueError:
        return "is not an email address (name@example.com)"
    return None


def _shown(fields: Mapping[str, str], *, keep: str = "") -> dict[str, str]:
    """The event's fields as a mail shows them: a certificate's name or an agent's machine
    is outside text, so its control and invisible characters read as escapes (a CN with
    CRLF stays on its line and cannot start a forged ``Bcc:`` line; a U+202E shows)."""
    return {name: visible(value, keep=keep) for name, value in fields.items()}


def _one_line(text: str) -> str:
    """A subject on one line: event data can hold line breaks, a mail header cannot."""
    return " ".join(text.split())


class EmailNotification(EventHandler):
    """Sends an email about the event to a fixed list of people.

    Use it for expiration warnings (``certificate.expiring``) or any other event. The mail
    goes out through the platform's configured mail server (Django's ``EMAIL_*`` settings).

    Parameters:

    - **recipients**: one email address per line (``Name <address>`` is accepted too).
    - **subject** and **body**: the text of the mail. ``{name}`` is replaced by a field of
      the event: ``{kind}``, ``{subject_label}``, ``{subject_type}``, ``{subject_id}``,
      ``{occurred_at}``, ``{event_id}``, and each detail of the event, e.g. for an
      expiration ``{days}`` (the threshold crossed), ``{days_left}``, ``{not_after}``,
      ``{store}``, ``{alias}``. A name the event does not
      have stays as written, so a typo shows in the mail rather than failing it.
    - **from_address**: the sender; the platform's default sender when left empty.

    The event's fields come from outside (a certificate's name, an agent's machine): in the
    mail, their control and invisible characters read as escapes (``\\r\\n``, ``\\u202E``),
    so a name cannot start a line of its own or turn text around.

    If a handler that runs before this one for the same event asks for it
    (``suppress_email``), no mail is sent and the run says so.

    Example: recipients ``pki-team@example.com``, subject
    ``{subject_label} expires in {days_left} days``.
    """

    label = "Email notification"
    parameters = (
        Parameter(
            "recipients",
            ParameterType.LIST,
            help="Who receives the mail: one email address per line.",
            required=True,
        ),
        Parameter(
            "subject",
            ParameterType.STRING,
            help="The mail's subject; {name} is replaced by a field of the event.",
            default=DEFAULT_SUBJECT,
        ),
        Parameter(
            "body",
            ParameterType.TEXT,
            help="The mail's text; {name} is replaced by a field of the event.",
            default=DEFAULT_BODY,
        ),
        Parameter(
            "from_address",
            ParameterType.EMAIL,
            help="The sender; the platform's default sender (DEFAULT_FROM_EMAIL) if empty.",
        ),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        problems = [
            f"{recipient!r} {problem}"
            for recipient in config.get("recipients") or []
            if (problem := _recipient_problem(recipient))
        ]
        if problems:
            raise ParameterError({"recipients": "; ".join(problems)})

    def handle(self, event: EventContext) -> HandlerResult:
        recipients: list[str] = list(setting(self, "recipients") or [])
        if event.context.get("suppress_email"):
            return HandlerResult(
                message="not sent: a handler before this one asked to suppress email",
                output={"suppressed": True, "recipients": recipients},
            )
        if not recipients:
            raise HandlerError("no recipients are configured", permanent=True)
        fields = event_fields(event)
        # The subject's whitespace is folded to one line as before; the body shows all.
        subject = _one_line(substitute(setting(self, "subject"), _shown(fields, keep="\t\n\r")))
        body = substitute(setting(self, "body"), _shown(fields))
        try:
            self.platform.send_mail(
                subject=subject,
                body=body,
                to=recipients,
                from_address=setting(self, "from_address") or None,
            )
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise HandlerError(
                f"the mail server refused every recipient ({refused})", permanent=True
            ) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise HandlerError(
                f"the mail server refused the sender {exc.sender}: {exc.smtp_code} "
                f"{_reply(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise HandlerError(
                "the mail server refused the platform's credentials (EMAIL_HOST_USER)",
                permanent=True,
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # 5xx is the server's final word; 4xx asks us to come back later.
            raise HandlerError(
                f"the mail server answered {exc.smtp_code} {_reply(exc.smtp_error)}",
                permanent=exc.smtp_code >= 500,
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise HandlerError(
                f"the mail server could not be reached: {type(exc).__name__}: {exc}"
            ) from exc
        count = len(recipients)
        return HandlerResult(
            message=f"sent to {count} recipient{'s' if count != 1 else ''}",
            output={"recipients": recipients, "subject": subject},
        )


def _reply(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
