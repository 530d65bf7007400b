"""The email handler against a real SMTP server (aiosmtpd) on the loopback."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage as ParsedMail
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from certyard.workflows.actions import PlatformRequests
from handlers.base import HandlerError
from handlers.builtin.email import DEFAULT_BODY, DEFAULT_SUBJECT, EmailNotification
from handlers.parameters import ParameterError, parameters_check
from tests.handlers.support import expiring_event

REFUSED_DOMAIN = "@refused.example.com"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Mailbox:
    """An SMTP server's handler that keeps every mail, refusing one domain's recipients."""

    port: int = 0
    mails: list[tuple[str, list[str], ParsedMail]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.endswith(REFUSED_DOMAIN):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Mailbox]:
    """A real SMTP server on a free loopback port, and Django configured to send to it."""
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = box.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "certyard@example.test"
    try:
        yield box
    finally:
        controller.stop()


def handler(**config: Any) -> EmailNotification:
    """A handler with its configuration checked, and its facade, as the platform gives them."""
    checked = parameters_check(EmailNotification.parameters, config)
    EmailNotification.config_check(checked)
    instance = EmailNotification(checked)
    instance.platform = PlatformRequests()  # the facade the runner gives every event handler
    return instance


def test_an_expiration_mail_reads_well_with_the_default_subject_and_body(
    mailbox: Mailbox,
) -> None:
    result = handler(recipients=["pki@example.com", "Ops <ops@example.com>"]).handle(
        expiring_event()
    )

    assert result.message == "sent to 2 recipients"
    [(sender, recipients, mail)] = mailbox.mails
    assert sender == "certyard@example.test"
    assert recipients == ["pki@example.com", "ops@example.com"]
    assert mail["Subject"] == "[Certyard] certificate.expiring: www.example.com"
    body = mail.get_content()
    assert "expires on 2025-03-13T00:00:00+00:00 (days left: 12)" in body
    assert "store web-1:/etc/ssl/certs under the alias www.pem" in body
    assert "{" not in body
    assert result.output["subject"] == mail["Subject"]


def test_fields_are_substituted_once_and_unknown_ones_stay_as_written(mailbox: Mailbox) -> None:
    event = expiring_event(
        subject_label="CN={kind}\nline two", data={"days": 3, "owner": "{not_after}"}
    )
    handler(
        recipients=["pki@example.com"],
        subject="{subject_label} in {days} days {typo}",
        body="Owner: {owner}; missing: {store}; days: {days}; {subject_id}",
        from_address="alerts@example.com",
    ).handle(event)

    [(sender, _, mail)] = mailbox.mails
    assert sender == "alerts@example.com"
    # A line break from the event's data cannot split the subject header.
    assert mail["Subject"] == "CN={kind} line two in 3 days {typo}"
    assert mail.get_content().strip() == (
        f"Owner: {{not_after}}; missing: {{store}}; days: 3; {'ab' * 32}"
    )


def test_suppress_email_in_the_context_sends_nothing_and_says_so(mailbox: Mailbox) -> None:
    result = handler(recipients=["pki@example.com"]).handle(
        expiring_event(context={"suppress_email": True})
    )

    assert mailbox.mails == []
    assert "suppress" in result.message and "not sent" in result.message
    assert result.output["suppressed"] is True


def test_a_refused_recipient_is_a_permanent_failure(mailbox: Mailbox) -> None:
    with pytest.raises(HandlerError) as caught:
        handler(recipients=[f"ghost{REFUSED_DOMAIN}"]).handle(expiring_event())

    assert caught.value.permanent
    assert f"ghost{REFUSED_DOMAIN}" in caught.value.message
    assert mailbox.mails == []


def test_an_unreachable_mail_server_is_a_failure_worth_retrying(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = free_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5

    with pytest.raises(HandlerError) as caught:
        handler(recipients=["pki@example.com"]).handle(expiring_event())

    assert not caught.value.permanent
    assert "could not be reached" in caught.value.message


def test_config_check_names_each_recipient_that_is_no_address() -> None:
    with pytest.raises(ParameterError) as caught:
        handler(recipients=["pki@example.com", "not-an-address", "a@example.com, b@example.com"])

    message = caught.value.errors["recipients"]
    assert "'not-an-address' is not an email address" in message
    assert "one address per line" in message
    assert "pki@example.com'" not in message


def test_recipients_are_required_and_the_defaults_are_declared() -> None:
    with pytest.raises(ParameterError) as caught:
        handler()
    assert caught.value.errors == {"recipients": "is required"}

    checked = parameters_check(EmailNotification.parameters, {"recipients": "a@example.com"})
    assert checked["subject"] == DEFAULT_SUBJECT == "[Certyard] {kind}: {subject_label}"
    assert checked["body"] == DEFAULT_BODY
    assert "from_address" not in checked
