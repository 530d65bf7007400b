"""Untrusted text is shown visibly (issue 14, finding 7): bidi overrides, zero-width and
control characters from certificates, agent names and parameters never reach a page or a
mail as they are; each reads as an escape (``\\u202E``, ``\\r\\n``, ``\\x01``)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateStore,
    CertificateStoreType,
)
from certyard.inventory.services import store_create
from certyard.jobs.services import job_inventory_request
from tests.certs import Issued, private_key
from tests.conftest import RegisteredAgent, entry
from tests.handlers.support import expiring_event
from tests.handlers.test_email import Mailbox, handler, mailbox  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

RLO = "\u202e"  # right-to-left override
ZWSP = "\u200b"  # zero-width space
LRI = "\u2066"  # left-to-right isolate
ZWJ = "\u200d"  # zero-width joiner
BOM = "\ufeff"
# What a certificate found on a server may carry (no NUL: PostgreSQL refuses it in text).
COMMON_NAME = f"pay{RLO}gpj.exe{ZWSP}\r\nBcc: attacker@example.test\x01"
ORGANIZATION = f"Acme{LRI}{ZWJ} Bank\x1b[31m"
SPOOF_SAN = f"evil{RLO}moc.example"
# Characters that must never reach a page or a mail as they are.
HIDDEN = [RLO, ZWSP, LRI, ZWJ, BOM, "\x01", "\x1b", "\x7f", "\x85", "\u2028"]
# How they read instead.
SHOWN = ["\\u202E", "\\u200B", "\\u2066", "\\u200D"]


def _spoofing_certificate() -> Issued:
    """A self-signed leaf whose CN, O and SANs carry bidi, zero-width and control
    characters (cryptography writes them as UTF8String and IA5String as given)."""
    key = private_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    sans = x509.SubjectAlternativeName(
        [
            x509.DNSName("www\r\n.example.test\x7f"),
            x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SPOOF_SAN)])),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=5))
        .add_extension(sans, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


@pytest.fixture
def superuser_web(db: None) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.test", "pw-long-7")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def found(register_agent: Callable[..., RegisteredAgent]) -> dict[str, Any]:
    """The spoofing certificate reported by a registered agent's inventory (the real
    ingestion path), and an orchestrator row registered before names were checked."""
    agent = register_agent("web-agent").orchestrator
    store = store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        client_machine=agent.client_machine,
        store_path="/etc/ssl/certs",
        orchestrator=agent,
    )
    leaf = _spoofing_certificate()
    outcome = inventory_submit(
        store=store, entries=[entry(f"alias{RLO}{ZWSP}\r\nfake", leaf, private_key=True)]
    )
    assert not outcome.rejected
    certificate = Certificate.objects.get(sha256=leaf.sha256)
    assert RLO in certificate.common_name and "\r\n" in certificate.common_name
    # Written directly: rows registered before client_machine was validated.
    old = Orchestrator.objects.create(
        name=f"old{RLO}tnega",
        client_machine=f"db{LRI}-1\r\nmachine: forged{BOM}",
        status=Orchestrator.Status.APPROVED,
        capabilities=["PEM.Inventory"],
        client_parameters={f"role{ZWSP}": f"web{RLO}\r\nX-Forged: 1", "dc": "par\u2028is"},
        metadata={"owner": f"ops{RLO}\x85"},
    )
    # A store of that agent, kept from then, failing; and a job for it.
    old_store = CertificateStore.objects.create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        client_machine=old.client_machine,
        store_path=f"/etc/{RLO}lss\r\n/forged",
        orchestrator=old,
        inventory_status="failing",
        inventory_message=f"cannot read{ZWSP} {RLO}",
    )
    job_inventory_request(store=old_store, source="test")
    return {
        "certificate": certificate,
        "store": old_store,
        "location": CertificateLocation.objects.get(certificate=certificate),
        "orchestrator": old,
    }


def _assert_shown_safely(response: Any, *, expect: tuple[str, ...] = SHOWN[:1]) -> str:
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    leaked = sorted({f"U+{ord(c):04X}" for c in HIDDEN if c in html})
    assert not leaked, f"{response.request['PATH_INFO']} shows {leaked} as they are"
    for escape in expect:
        assert escape in html, f"{response.request['PATH_INFO']} lacks {escape}"
    return html


def _no_forged_line(html: str, *starts: str) -> None:
    """A CR/LF inside a single-line value shows as \\r\\n, so nothing it carries starts a
    line of the page's text. An editable form field's value keeps its text as stored (an
    input shows no line break; saving it must not change it)."""
    html = re.sub(r'value="[^"]*"', 'value=""', html)
    for start in starts:
        assert not re.search(rf"[\r\n]\s*{re.escape(start)}", html), start


# --- The function ------------------------------------------------------------------------


def test_visible_escapes_controls_and_formatting_characters_and_leaves_text_alone() -> None:
    # Imported here, not at the top: the module is new, and the other tests are to run
    # (and fail on their assertions) against the code before it.
    from handlers.text import visible, visible_lines

    assert visible(COMMON_NAME) == "pay\\u202Egpj.exe\\u200B\\r\\nBcc: attacker@example.test\\x01"
    assert visible("a\tb\x00c\x7fd\x9be\u2029f\u061cg") == (
        "a\\tb\\x00c\\x7fd\\x9be\\u2029f\\u061Cg"
    )
    normal = "CN=Zürich Straße 日本 C:\\certs\\x.pem <b>&"
    assert visible(normal) == normal
    assert visible_lines("one\r\ntwo\u202e\n") == "one\ntwo\\u202E\n"


# --- The console -------------------------------------------------------------------------


def test_console_pages_show_certificate_text_escaped(
    superuser_web: Client, found: dict[str, Any]
) -> None:
    certificate = found["certificate"]
    pages = [
        reverse("console:dashboard"),
        reverse("console:certificate-list"),
        reverse("console:certificate-list") + "?q=pay",
        reverse("console:certificate-detail", args=[certificate.pk]),
        reverse("console:store-list"),
        reverse("console:job-list"),
    ]
    for page in pages:
        html = _assert_shown_safely(superuser_web.get(page))
        _no_forged_line(html, "Bcc:", "/forged", "machine: forged")
    listing = _assert_shown_safely(superuser_web.get(reverse("console:certificate-list")))
    assert "pay\\u202Egpj.exe\\u200B\\r\\nBcc: attacker@example.test\\x01" in listing
    _no_forged_line(listing, "Bcc:")
    detail = _assert_shown_safely(
        superuser_web.get(reverse("console:certificate-detail", args=[certificate.pk])),
        expect=("\\u202E", "\\u200B", "\\u2066", "\\u200D"),
    )
    _no_forged_line(detail, "Bcc:", ".example.test", "fake")
    assert "evil\\u202Emoc.example" in detail  # the DirName SAN
    assert "Acme\\u2066\\u200D Bank\\x1b[31m" in detail  # O, in the subject


def test_console_orchestrator_pages_show_names_machines_and_parameters_escaped(
    superuser_web: Client, found: dict[str, Any]
) -> None:
    old = found["orchestrator"]
    listing = _assert_shown_safely(
        superuser_web.get(reverse("console:orchestrator-list")), expect=("\\u202E", "\\u2066")
    )
    assert "old\\u202Etnega" in listing
    assert "db\\u2066-1\\r\\nmachine: forged\\uFEFF" in listing
    _no_forged_line(listing, "machine: forged")
    detail = _assert_shown_safely(
        superuser_web.get(reverse("console:orchestrator-detail", args=[old.pk])),
        expect=("\\u202E", "\\u2066", "\\u200B", "\\uFEFF", "\\u2028"),
    )
    assert "web\\u202E\\r\\nX-Forged: 1" in detail
    _no_forged_line(detail, "machine: forged", "X-Forged")


# --- Django admin ------------------------------------------------------------------------


def _admin_url(obj: Any, view: str) -> str:
    meta = obj._meta
    if view == "changelist":
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[quote(obj.pk)])


@pytest.mark.parametrize(
    ("key", "changelist_shows"),
    [
        ("certificate", "pay\\u202Egpj.exe\\u200B\\r\\nBcc: attacker@example.test\\x01"),
        ("location", "alias\\u202E\\u200B\\r\\nfake"),
        ("store", "\\u202E"),
        ("orchestrator", "db\\u2066-1\\r\\nmachine: forged\\uFEFF"),
    ],
)
def test_django_admin_shows_untrusted_text_escaped(
    superuser_web: Client, found: dict[str, Any], key: str, changelist_shows: str
) -> None:
    obj = found[key]
    changelist = _assert_shown_safely(
        superuser_web.get(_admin_url(obj, "changelist")), expect=(changelist_shows,)
    )
    _no_forged_line(changelist, "Bcc:", "machine: forged", "fake")
    change = _assert_shown_safely(superuser_web.get(_admin_url(obj, "change")))
    _no_forged_line(change, "Bcc:", "fake")


def test_django_admin_certificate_page_reads_every_name_escaped(
    superuser_web: Client, found: dict[str, Any]
) -> None:
    page = _assert_shown_safely(
        superuser_web.get(_admin_url(found["certificate"], "change")),
        expect=("\\u202E", "\\u200B", "\\u2066", "\\u200D", "\\x01", "\\x7f"),
    )
    assert "evil\\u202Emoc.example" in page
    _no_forged_line(page, "Bcc:", ".example.test")


def test_store_and_location_in_admin_of_a_normal_name_read_as_before(
    superuser_web: Client, register_agent: Callable[..., RegisteredAgent]
) -> None:
    agent = register_agent("plain-agent").orchestrator
    store: CertificateStore = store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        client_machine=agent.client_machine,
        store_path="/srv/Zürich/certs",
        orchestrator=agent,
    )
    page = superuser_web.get(_admin_url(agent, "changelist")).content.decode()
    assert "plain-agent.example.test" in page
    page = superuser_web.get(reverse("console:store-list")).content.decode()
    assert "/srv/Zürich/certs" in page and "\\u" not in page
    assert store.pk


# --- Email -------------------------------------------------------------------------------


def test_an_email_about_a_certificate_with_crlf_in_its_name_forges_no_line(
    mailbox: Mailbox,  # noqa: F811 (the fixture)
) -> None:
    event = expiring_event(
        subject_label=f"www{RLO}.example.test\r\nBcc: attacker@example.test",
        data={
            "days_left": 3,
            "not_after": "2025-03-13T00:00:00+00:00",
            "store": "web-1:/etc/ssl\r\nBcc: second@example.test",
            "alias": f"www{ZWSP}.pem\n\nForged paragraph",
        },
    )
    handler(recipients=["pki@example.com"]).handle(event)

    [(_, recipients, mail)] = mailbox.mails
    assert recipients == ["pki@example.com"]
    assert mail["Bcc"] is None
    body = mail.get_content()
    lines = body.splitlines()
    assert not [line for line in lines if line.lstrip().startswith(("Bcc:", "Forged"))], body
    assert not any(c in body for c in HIDDEN)
    assert 'the certificate "www\\u202E.example.test\\r\\nBcc: attacker@example.test"' in body
    assert "alias www\\u200B.pem\\n\\nForged paragraph" in body
    # The subject stays one line, its bidi override shown.
    assert mail["Subject"] == (
        "[Certyard] certificate.expiring: www\\u202E.example.test Bcc: attacker@example.test"
    )
