"""Handler runs in the console: the run log and its filters, a run, a registration, and the
"Handler runs" sections of orchestrator and certificate pages."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from certyard.workflows.services import registration_save
from tests.console.conftest import Inventory

pytestmark = pytest.mark.django_db

RUNS = reverse("console:run-list")
REGISTRATIONS = reverse("console:handler-registration-list")
WEBHOOK_SECRET = "console-never-shows-this-9f3b"


@pytest.fixture
def webhook() -> HandlerRegistration:
    """A webhook on orchestrator approvals, saved as Django admin saves it."""
    return registration_save(
        registration=HandlerRegistration(
            name="ops webhook",
            handler="certyard.webhook",
            events=["orchestrator.approved"],
            store_types=["PEM"],
        ),
        values={"url": "https://hooks.example.test/certyard", "secret": WEBHOOK_SECRET},
    )


@pytest.fixture
def recorder(tmp_path: Any) -> HandlerRegistration:
    return registration_save(
        registration=HandlerRegistration(name="recorder", handler="test.record"),
        values={"path": str(tmp_path / "events.jsonl")},
    )


@pytest.fixture
def make_run() -> Callable[..., HandlerRun]:
    def make(registration: HandlerRegistration | None, **fields: Any) -> HandlerRun:
        subject_type = fields.pop("subject_type", "orchestrator")
        subject_id = fields.pop("subject_id", "4f0c2a7e-0000-4000-8000-000000000001")
        subject_label = fields.pop("subject_label", "agent-x")
        event = Event.objects.create(
            kind=fields.pop("event_kind", "orchestrator.approved"),
            subject_type=subject_type,
            subject_id=subject_id,
            subject_label=subject_label,
            data={"name": subject_label},
        )
        values: dict[str, Any] = {
            "registration": registration,
            "registration_name": registration.name if registration else "deleted one",
            "handler": registration.handler if registration else "gone",
            "kind": registration.kind if registration else "event",
            "event": event,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "subject_label": subject_label,
            "state": HandlerRun.State.SUCCEEDED,
            **fields,
        }
        return HandlerRun.objects.create(**values)

    return make


def _page(client: Client, url: str, **params: Any) -> str:
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _rows(page: str) -> list[str]:
    """The registration names of the listed runs, in order."""
    return re.findall(
        r'data-testid="run-row" data-state="[a-z]+" data-registration="([^"]*)"', page
    )


# --- The run log ------------------------------------------------------------------------


def test_runs_page_lists_runs_newest_first(
    admin_web: Client,
    webhook: HandlerRegistration,
    recorder: HandlerRegistration,
    make_run: Callable[..., HandlerRun],
) -> None:
    make_run(webhook, message="delivered to https://hooks.example.test: 204")
    make_run(recorder, state=HandlerRun.State.FAILED, error="disk full")

    page = _page(admin_web, RUNS)

    assert _rows(page) == ["recorder", "ops webhook"]
    assert "delivered to https://hooks.example.test: 204" in page
    assert "disk full" in page
    detail = reverse("console:handler-registration-detail", args=[webhook.pk])
    assert f'href="{detail}"' in page
    orchestrator_page = reverse(
        "console:orchestrator-detail", args=["4f0c2a7e-0000-4000-8000-000000000001"]
    )
    assert f'href="{orchestrator_page}"' in page


def test_runs_page_filters_by_state_registration_kind_and_subject(
    admin_web: Client,
    webhook: HandlerRegistration,
    recorder: HandlerRegistration,
    make_run: Callable[..., HandlerRun],
) -> None:
    make_run(webhook, state=HandlerRun.State.FAILED, subject_label="alpha-agent")
    make_run(
        recorder,
        subject_type="certificate",
        subject_id="17",
        subject_label="shop.example.test",
    )
    make_run(recorder, state=HandlerRun.State.QUEUED, kind="job_complete", subject_type="job")

    assert _rows(_page(admin_web, RUNS, state="failed")) == ["ops webhook"]
    assert _rows(_page(admin_web, RUNS, registration=recorder.pk)) == ["recorder", "recorder"]
    assert _rows(_page(admin_web, RUNS, kind="job_complete")) == ["recorder"]
    assert _rows(_page(admin_web, RUNS, subject_type="certificate", subject_id="17")) == [
        "recorder"
    ]
    assert _rows(_page(admin_web, RUNS, subject="ALPHA")) == ["ops webhook"]
    assert _rows(_page(admin_web, RUNS, subject="17")) == ["recorder"]
    nothing = _page(admin_web, RUNS, state="running")
    assert 'data-testid="no-match"' in nothing

    refused = _page(admin_web, RUNS, state="exploded", registration="999999")
    assert 'data-testid="filter-errors"' in refused
    assert "That registration does not exist (any more)." in refused
    assert _rows(refused) == []


def test_runs_page_pages_without_counting(
    admin_web: Client, recorder: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    for _ in range(51):
        make_run(recorder)

    first = _page(admin_web, RUNS)
    second = _page(admin_web, RUNS, page=2)

    assert len(_rows(first)) == 50
    assert 'rel="next" href="?page=2"' in first
    assert len(_rows(second)) == 1
    assert 'rel="prev"' in second


def test_runs_page_says_when_nothing_ran_yet(admin_web: Client) -> None:
    page = _page(admin_web, RUNS)

    assert 'data-testid="no-runs"' in page
    assert reverse("admin:workflows_handlerregistration_add") in page


# --- One run ----------------------------------------------------------------------------


def test_run_detail_shows_inputs_output_and_error_escaped(
    admin_web: Client, webhook: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    run = make_run(
        webhook,
        state=HandlerRun.State.FAILED,
        subject_label="<b>agent</b>",
        inputs={"event": "orchestrator.approved", "subject": "<b>agent</b>"},
        output={"status_code": 500, "body": "<img src=x onerror=alert(1)>"},
        message="<i>partial</i>",
        error="hooks.example.test answered 500: <script>alert('run')</script>",
        traceback="Traceback (most recent call last):\nRuntimeError: <svg onload=alert(2)>",
        duration_ms=1234,
    )

    page = _page(admin_web, reverse("console:run-detail", args=[run.pk]))

    assert "&lt;script&gt;alert(&#x27;run&#x27;)&lt;/script&gt;" in page
    assert "<script>alert(" not in page
    assert "<img src=x" not in page and "<svg onload" not in page and "<b>agent" not in page
    assert "&lt;i&gt;partial&lt;/i&gt;" in page
    output = re.search(r'<pre data-testid="run-output">(.*?)</pre>', page, re.S).group(1)
    assert "&quot;status_code&quot;: 500" in output
    assert "\n  &quot;body&quot;" in output  # indented, one key per line
    assert "1234 ms" in page
    assert "RuntimeError: &lt;svg onload=alert(2)&gt;" in page
    assert WEBHOOK_SECRET not in page


def test_run_detail_of_a_deleted_registration_still_reads(
    admin_web: Client, make_run: Callable[..., HandlerRun]
) -> None:
    run = make_run(None)

    page = _page(admin_web, reverse("console:run-detail", args=[run.pk]))

    assert "deleted one" in page
    assert "(deleted)" in page


def test_an_unknown_run_is_a_404(admin_web: Client) -> None:
    assert admin_web.get(reverse("console:run-detail", args=[987654])).status_code == 404


# --- Registrations ----------------------------------------------------------------------


def test_registration_page_summarises_its_configuration_without_secrets(
    admin_web: Client, webhook: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    make_run(webhook, message="delivered")

    page = _page(admin_web, reverse("console:handler-registration-detail", args=[webhook.pk]))

    assert WEBHOOK_SECRET not in page
    parameters = re.search(r'data-testid="registration-parameters">(.*?)</dl>', page, re.S).group(1)
    assert "https://hooks.example.test/certyard" in parameters
    assert "secret, set" in parameters
    assert "<code>3</code>" in parameters  # attempts, its declared default
    assert "orchestrator.approved" in page
    assert "PEM" in page
    assert _rows(page) == ["ops webhook"]
    assert reverse("admin:workflows_handlerregistration_change", args=[webhook.pk]) in page

    listing = _page(admin_web, REGISTRATIONS)
    assert 'data-name="ops webhook" data-class-status="ok"' in listing


def test_registration_page_of_a_missing_class_says_so(admin_web: Client) -> None:
    orphan = HandlerRegistration.objects.create(
        name="tickets",
        handler="acme.tickets",
        kind="event",
        parameters={"queue": "PKI"},
        secrets=json.dumps({"api_key": "orphan-key-77"}),
    )

    page = _page(admin_web, reverse("console:handler-registration-detail", args=[orphan.pk]))

    assert "The class acme.tickets is not installed — this registration is skipped" in page
    assert "PKI" in page
    assert "orphan-key-77" not in page
    assert 'data-testid="no-registration-runs"' in page
    listing = _page(admin_web, REGISTRATIONS)
    assert 'data-name="tickets" data-class-status="missing"' in listing


# --- Sections on subject pages ------------------------------------------------------------


def test_orchestrator_page_shows_the_runs_its_events_queued(
    admin_web: Client, recorder: HandlerRegistration, register: Callable[..., Orchestrator]
) -> None:
    # Registering with an approving token emits orchestrator.registered and .approved;
    # the recorder subscribes to every event, so two runs are queued about it.
    orchestrator = register("handled-agent", approve=True)
    section_url = reverse("console:run-subject", args=["orchestrator", str(orchestrator.pk)])

    page = _page(admin_web, reverse("console:orchestrator-detail", args=[orchestrator.pk]))
    section = _page(admin_web, section_url)

    assert 'data-testid="subject-handler-runs"' in page
    # The rows come with the page; the section's own URL gives the same rows.
    assert _rows(page) == _rows(section) == ["recorder", "recorder"]
    assert 'data-state="queued"' in section


def test_certificate_page_has_a_handler_runs_section(
    admin_web: Client,
    inventory: Inventory,
    recorder: HandlerRegistration,
    make_run: Callable[..., HandlerRun],
) -> None:
    certificate = inventory.certificate("soon.example.test")
    make_run(
        recorder,
        event_kind="certificate.expiring",
        subject_type="certificate",
        subject_id=str(certificate.pk),
        subject_label="soon.example.test",
    )
    section_url = reverse("console:run-subject", args=["certificate", str(certificate.pk)])

    page = _page(admin_web, reverse("console:certificate-detail", args=[certificate.pk]))
    section = _page(admin_web, section_url)
    other = _page(admin_web, reverse("console:run-subject", args=["certificate", "0"]))

    assert _rows(page) == _rows(section) == ["recorder"]
    assert 'data-testid="no-subject-runs"' in other


def test_a_subject_section_links_to_all_runs_when_there_are_more(
    admin_web: Client, recorder: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    for _ in range(11):
        make_run(recorder, subject_type="certificate", subject_id="5")

    section = _page(admin_web, reverse("console:run-subject", args=["certificate", "5"]))

    assert len(_rows(section)) == 10
    assert 'data-testid="all-subject-runs"' in section


# --- Who may see them ----------------------------------------------------------------------


def _pages(run: HandlerRun) -> list[str]:
    return [
        RUNS,
        reverse("console:run-detail", args=[run.pk]),
        reverse("console:run-subject", args=["orchestrator", run.subject_id]),
        REGISTRATIONS,
        reverse("console:handler-registration-detail", args=[run.registration_id]),
    ]


def test_every_runs_page_needs_a_login(
    client: Client, recorder: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    for url in _pages(make_run(recorder)):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"{reverse('login')}?next={url}"


def test_runs_pages_need_the_view_permission(
    plain_web: Client, recorder: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    for url in _pages(make_run(recorder)):
        assert plain_web.get(url).status_code == 403, url


def test_a_viewer_reads_them_all_and_is_offered_no_admin_link(
    viewer_web: Client, recorder: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    run = make_run(recorder)
    for url in _pages(run):
        assert viewer_web.get(url).status_code == 200, url
    page = _page(viewer_web, reverse("console:handler-registration-detail", args=[recorder.pk]))
    assert "/admin/" not in page


def test_orchestrator_page_hides_runs_from_who_may_not_see_them(
    plain_user: User, waiting_orchestrator: Orchestrator
) -> None:
    plain_user.user_permissions.add(Permission.objects.get(codename="view_orchestrator"))
    client = Client()
    client.force_login(plain_user)

    page = _page(client, reverse("console:orchestrator-detail", args=[waiting_orchestrator.pk]))

    assert 'data-testid="subject-handler-runs"' not in page


def test_the_pages_need_no_inline_script_or_style(
    admin_web: Client, webhook: HandlerRegistration, make_run: Callable[..., HandlerRun]
) -> None:
    # The Content-Security-Policy forbids both (see tests/certyard/core/test_browser_security.py).
    run = make_run(webhook, error="<script>no</script>", traceback="x")
    for url in [*_pages(run), reverse("console:handler-registration-detail", args=[webhook.pk])]:
        page = _page(admin_web, url)
        assert not re.findall(r"<script\b(?![^>]*\bsrc=)[^>]*>", page, re.I), url
        assert not re.findall(r"<[a-z][^>]*\sstyle=", page, re.I), url


def test_the_navigation_links_to_handler_runs(admin_web: Client) -> None:
    page = _page(admin_web, RUNS)

    assert re.search(rf'<a href="{RUNS}" aria-current="page">Handler runs</a>', page)
