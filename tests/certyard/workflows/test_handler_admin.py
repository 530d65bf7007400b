"""Django admin for handler registrations: choose a class, fill in what it declares, read runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse

from certyard.errors import ServiceError
from certyard.workflows import forms as workflow_forms
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from handlers import registry
from handlers.base import EventContext, EventHandler, HandlerResult
from handlers.parameters import Parameter, ParameterError, ParameterType
from handlers.registry import HandlerClass

pytestmark = pytest.mark.django_db

ADD = reverse("admin:workflows_handlerregistration_add")
CHANGELIST = reverse("admin:workflows_handlerregistration_changelist")
RUNS = reverse("admin:workflows_handlerrun_changelist")
WEBHOOK_SECRET = "whsec-never-shown-8c1f2e"


class AllTypes(EventHandler):
    """Takes one parameter of every type. <script>alert("doc")</script>

    A second paragraph, to see paragraphs kept.
    """

    label = "Every parameter type (test)"
    events = ("certificate.expiring", "orchestrator.approved")
    parameters = (
        Parameter("code", help="Three capitals.", required=True, pattern=r"[A-Z]{3}"),
        Parameter("notes", ParameterType.TEXT, help="Free text."),
        Parameter("count", ParameterType.INTEGER, minimum=1, maximum=5, default=2),
        Parameter("verbose", ParameterType.BOOLEAN),
        Parameter("colour", ParameterType.CHOICE, choices=("red", "green"), required=True),
        Parameter("contact", ParameterType.EMAIL),
        Parameter("endpoint", ParameterType.URL),
        Parameter("hosts", ParameterType.LIST, help="Hosts to tell."),
        Parameter("token", ParameterType.SECRET, required=True, help="The API token."),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        if config.get("verbose") and not config.get("notes"):
            raise ParameterError({"notes": "is needed when verbose is on"})

    def handle(self, event: EventContext) -> HandlerResult:
        return HandlerResult()


@pytest.fixture
def all_types() -> Iterator[str]:
    """``AllTypes`` installed as the entry point ``test.all_types``, for this test only."""
    installed = registry.handler_classes()
    info = HandlerClass("test.all_types", f"{__name__}:AllTypes", "certyard-tests", "9.9", AllTypes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "handler_classes", lambda: {**installed, info.name: info})
        yield info.name


@pytest.fixture
def admin_web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def _page(response: Any) -> str:
    return response.content.decode()


def _field_errors(page: str, field: str) -> str:
    """The text of the form row of ``field`` (where Django admin puts its errors)."""
    match = re.search(rf'<div class="form-row[^"]*field-{field}\b.*?</div>\s*</div>', page, re.S)
    assert match, f"no form row for {field}"
    return match.group(0)


def _row(page: str, text: str) -> str:
    """The table row that holds ``text``."""
    match = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*{re.escape(text)}(?:(?!</tr>).)*</tr>", page, re.S)
    assert match, f"no row with {text}"
    return match.group(0)


def _all_types_form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "every type",
        "description": "",
        "enabled": "on",
        "order": "100",
        "events": ["orchestrator.approved"],
        "job_types": "",
        "store_types": "",
        "orchestrators": "",
        "templates": "",
        "timeout_seconds": "30",
        "max_attempts": "3",
        "retry_backoff_seconds": "30",
        "param_code": "ABC",
        "param_notes": "",
        "param_count": "2",
        "param_colour": "red",
        "param_contact": "",
        "param_endpoint": "",
        "param_hosts": "",
        "param_token": "tok-123",
        "_save": "Save",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def _webhook_form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "ops webhook",
        "description": "Tells the ops channel.",
        "enabled": "on",
        "order": "50",
        "events": ["orchestrator.approved", "certificate.expiring"],
        "job_types": "",
        "store_types": "PEM, JKS",
        "orchestrators": "",
        "templates": "web-server\nmail-server",
        "timeout_seconds": "60",
        "max_attempts": "2",
        "retry_backoff_seconds": "10",
        "param_url": "https://hooks.example.test/certyard",
        "param_secret": WEBHOOK_SECRET,
        "param_attempts": "3",
        "param_backoff_seconds": "2",
        "param_timeout_seconds": "10",
        "_save": "Save",
    }
    data.update(changes)
    return data


@pytest.fixture
def webhook(admin_web: Client) -> HandlerRegistration:
    """A webhook registration added through the admin form."""
    response = admin_web.post(f"{ADD}?handler=certyard.webhook", _webhook_form())
    assert response.status_code == 302, _page(response)[:3000]
    return HandlerRegistration.objects.get(name="ops webhook")


def _stored_secrets_column(registration: HandlerRegistration) -> str:
    """The ``secrets`` column as the database holds it (encrypted)."""
    table = HandlerRegistration._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secrets FROM {table} WHERE id = %s", [registration.pk])  # noqa: S608
        return cursor.fetchone()[0]


# --- Step one: the class ---------------------------------------------------------------


def test_adding_starts_with_the_installed_classes_broken_ones_listed_but_not_choosable(
    admin_web: Client,
) -> None:
    response = admin_web.get(ADD)

    assert response.status_code == 200
    page = _page(response)
    assert 'id="handler-class-form"' in page
    # Label, kind, entry point name and package of each usable class.
    assert "Signed webhook — certyard.webhook (certyard " in page
    assert '<optgroup label="Event handler">' in page
    assert "Record events (test) — test.record (certyard-test-handlers 0.1.0)" in page
    # A class that cannot be imported: listed with its error, its option disabled.
    assert re.search(r'<option value="test.broken_import"[^>]*disabled', page)
    row = re.search(
        r'data-name="test.broken_import" data-status="unavailable">.*?</tr>', page, re.S
    )
    assert row and "No module named" in row.group(0)


@pytest.mark.parametrize("name", ["test.broken_import", "no.such.class"])
def test_a_class_that_cannot_be_used_is_refused_at_step_one(admin_web: Client, name: str) -> None:
    response = admin_web.get(ADD, {"handler": name})

    assert response.status_code == 200
    page = _page(response)
    assert 'id="handler-class-form"' in page
    assert "errorlist" in page
    assert 'name="param_' not in page


# --- Step two: one field per declared parameter -----------------------------------------


def test_the_form_has_one_field_per_declared_parameter(admin_web: Client, all_types: str) -> None:
    response = admin_web.get(ADD, {"handler": all_types})

    assert response.status_code == 200
    page = _page(response)
    assert re.search(r'<input type="text" name="param_code"[^>]*required', page)
    assert "Three capitals. Must match [A-Z]{3}." in page
    assert re.search(r'<textarea name="param_notes"', page)
    count = re.search(r'<input type="number" name="param_count"[^>]*>', page).group(0)
    assert 'value="2"' in count and 'min="1"' in count and 'max="5"' in count
    assert "required" not in count  # the default fills it in
    assert re.search(r'<input type="checkbox" name="param_verbose"', page)
    colour = re.search(r'<select name="param_colour".*?</select>', page, re.S).group(0)
    assert '<option value="red">red</option>' in colour and "required" in colour
    assert re.search(r'<input type="email" name="param_contact"', page)
    assert re.search(r'<input type="url" name="param_endpoint"', page)
    assert re.search(r'<textarea name="param_hosts"', page)
    assert "Hosts to tell. One per line." in page
    assert re.search(r'<input type="password" name="param_token"[^>]*required', page)
    # Only the events the class declares.
    assert 'value="certificate.expiring"' in page
    assert 'value="orchestrator.approved"' in page
    assert 'value="job.completed"' not in page
    # Its docstring, escaped, in paragraphs.
    assert "Takes one parameter of every type." in page
    assert "&lt;script&gt;alert(&quot;doc&quot;)&lt;/script&gt;" in page
    assert '<script>alert("doc")' not in page
    assert "<p>A second paragraph, to see paragraphs kept.</p>" in page


def test_a_class_that_declares_no_events_offers_every_event(admin_web: Client) -> None:
    page = _page(admin_web.get(ADD, {"handler": "certyard.webhook"}))

    for kind in ("orchestrator.registered", "job.completed", "certificate.revoked"):
        assert f'value="{kind}"' in page
    # The webhook's own timeout parameter does not clash with the registration's.
    assert 'name="param_timeout_seconds"' in page
    assert 'name="timeout_seconds"' in page


def test_each_kind_gets_the_filters_it_uses(admin_web: Client) -> None:
    job_complete = _page(admin_web.get(ADD, {"handler": "test.follow_up"}))
    assert 'name="job_types"' in job_complete and 'name="store_types"' in job_complete
    assert 'name="events"' not in job_complete and 'name="templates"' not in job_complete

    registration = _page(admin_web.get(ADD, {"handler": "test.garbage_registration"}))
    assert 'name="job_types"' not in registration and 'name="events"' not in registration
    assert 'name="max_attempts"' not in registration
    assert 'name="timeout_seconds"' in registration


def test_all_types_are_saved_converted_with_the_secret_apart(
    admin_web: Client, all_types: str
) -> None:
    response = admin_web.post(
        f"{ADD}?handler={all_types}",
        _all_types_form(
            param_verbose="on",
            param_notes="  kept as typed\n",
            param_count="4",
            param_contact="ops@example.test",
            param_endpoint="https://example.test/x",
            param_hosts="a.example.test\n\nb.example.test\n",
            orchestrators="o-1, o-2\no-3",
        ),
    )

    assert response.status_code == 302, _page(response)[:3000]
    registration = HandlerRegistration.objects.get()
    assert registration.handler == all_types
    assert registration.kind == "event"
    assert registration.events == ["orchestrator.approved"]
    assert registration.orchestrators == ["o-1", "o-2", "o-3"]
    assert registration.parameters == {
        "code": "ABC",
        "notes": "  kept as typed\n",
        "count": 4,
        "verbose": True,
        "colour": "red",
        "contact": "ops@example.test",
        "endpoint": "https://example.test/x",
        "hosts": ["a.example.test", "b.example.test"],
    }
    assert json.loads(registration.secrets) == {"token": "tok-123"}
    assert registration.created_by is not None


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"param_code": "abc"}, "param_code", "Must match the pattern [A-Z]{3}."),
        ({"param_count": "9"}, "param_count", "Ensure this value is less than or equal to 5."),
        ({"param_colour": "blue"}, "param_colour", "Select a valid choice."),
        ({"param_colour": ""}, "param_colour", "This field is required."),
        ({"param_contact": "not-an-address"}, "param_contact", "Enter a valid email address."),
        ({"param_token": ""}, "param_token", "This field is required."),
        # The class's own check of values together, shown on the field it names.
        ({"param_verbose": "on"}, "param_notes", "Is needed when verbose is on."),
    ],
)
def test_a_bad_value_is_refused_beside_its_field(
    admin_web: Client, all_types: str, changes: dict[str, str], field: str, message: str
) -> None:
    response = admin_web.post(f"{ADD}?handler={all_types}", _all_types_form(**changes))

    assert response.status_code == 200
    page = _page(response)
    assert message in _field_errors(page, field)
    assert "errornote" in page
    assert not HandlerRegistration.objects.exists()


def test_a_webhook_url_the_checker_refuses_is_shown_with_its_message(admin_web: Client) -> None:
    # Django's URL field takes ftp://; the class's declaration does not.
    response = admin_web.post(
        f"{ADD}?handler=certyard.webhook", _webhook_form(param_url="ftp://files.example.test/x")
    )

    assert response.status_code == 200
    page = _page(response)
    assert "Must be an http:// or https:// URL." in _field_errors(page, "param_url")
    assert WEBHOOK_SECRET not in page  # a typed secret is not sent back
    assert not HandlerRegistration.objects.exists()


def test_a_service_refusal_is_shown_above_the_form(
    admin_web: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise ServiceError("handler certyard.webhook is not installed or is broken")

    monkeypatch.setattr(workflow_forms, "registration_prepare", refuse)
    response = admin_web.post(f"{ADD}?handler=certyard.webhook", _webhook_form())

    assert response.status_code == 200
    page = _page(response)
    assert re.search(r'class="errorlist nonfield".*?is not installed or is broken', page, re.S)
    assert not HandlerRegistration.objects.exists()


# --- Secrets --------------------------------------------------------------------------------


def test_the_webhook_secret_is_stored_encrypted_and_never_shown(
    admin_web: Client, webhook: HandlerRegistration
) -> None:
    assert webhook.kind == "event"
    assert webhook.store_types == ["PEM", "JKS"]
    assert webhook.templates == ["web-server", "mail-server"]
    assert webhook.parameters == {
        "url": "https://hooks.example.test/certyard",
        "attempts": 3,
        "backoff_seconds": 2,
        "timeout_seconds": 10,
    }
    assert json.loads(webhook.secrets) == {"secret": WEBHOOK_SECRET}
    assert WEBHOOK_SECRET not in _stored_secrets_column(webhook)

    page = _page(
        admin_web.get(reverse("admin:workflows_handlerregistration_change", args=[webhook.pk]))
    )
    assert WEBHOOK_SECRET not in page
    assert "https://hooks.example.test/certyard" in page  # non-secret values are shown
    assert "Leave empty to keep the current secret." in page
    assert "POSTs the event as JSON to a URL" in page  # the class's docstring


def test_an_empty_secret_on_change_keeps_the_stored_one(
    admin_web: Client, webhook: HandlerRegistration
) -> None:
    url = reverse("admin:workflows_handlerregistration_change", args=[webhook.pk])

    response = admin_web.post(
        url, _webhook_form(param_secret="", param_url="https://other.example.test/hook")
    )

    assert response.status_code == 302, _page(response)[:3000]
    webhook.refresh_from_db()
    assert webhook.parameters["url"] == "https://other.example.test/hook"
    assert json.loads(webhook.secrets) == {"secret": WEBHOOK_SECRET}

    response = admin_web.post(url, _webhook_form(param_secret="a-new-secret"))
    assert response.status_code == 302
    webhook.refresh_from_db()
    assert json.loads(webhook.secrets) == {"secret": "a-new-secret"}


# --- A class that is gone -------------------------------------------------------------------


@pytest.fixture
def orphan() -> HandlerRegistration:
    """A registration whose package was uninstalled since."""
    return HandlerRegistration.objects.create(
        name="ticket on expiry",
        handler="acme.tickets",
        kind="event",
        events=["certificate.expiring"],
        parameters={"queue": "PKI-OPS"},
        secrets=json.dumps({"api_key": "orphan-secret-5d2a"}),
    )


def test_a_registration_whose_class_is_missing_opens_with_a_warning(
    admin_web: Client, orphan: HandlerRegistration
) -> None:
    response = admin_web.get(
        reverse("admin:workflows_handlerregistration_change", args=[orphan.pk])
    )

    assert response.status_code == 200
    page = _page(response)
    assert "The class acme.tickets is not installed — this registration is skipped" in page
    assert "PKI-OPS" in page  # its stored parameters, read-only
    assert "orphan-secret-5d2a" not in page
    assert "stored, never shown" in page
    assert 'name="param_' not in page


def test_a_registration_whose_class_is_missing_can_be_disabled_and_deleted(
    admin_web: Client, orphan: HandlerRegistration
) -> None:
    url = reverse("admin:workflows_handlerregistration_change", args=[orphan.pk])

    response = admin_web.post(
        url, {"name": orphan.name, "description": "", "order": "100", "_save": "Save"}
    )

    assert response.status_code == 302, _page(response)[:3000]
    orphan.refresh_from_db()
    assert orphan.enabled is False
    assert orphan.parameters == {"queue": "PKI-OPS"}  # untouched
    assert json.loads(orphan.secrets) == {"api_key": "orphan-secret-5d2a"}

    delete = reverse("admin:workflows_handlerregistration_delete", args=[orphan.pk])
    assert admin_web.post(delete, {"post": "yes"}).status_code == 302
    assert not HandlerRegistration.objects.exists()


# --- The changelist and the runs ------------------------------------------------------------


def _run(registration: HandlerRegistration | None, **fields: Any) -> HandlerRun:
    event = Event.objects.create(
        kind="orchestrator.approved",
        subject_type="orchestrator",
        subject_id="7b1e",
        subject_label="agent-7",
        data={"name": "agent-7"},
    )
    values: dict[str, Any] = {
        "registration": registration,
        "registration_name": registration.name if registration else "gone",
        "handler": registration.handler if registration else "gone",
        "kind": "event",
        "event": event,
        "subject_type": "orchestrator",
        "subject_id": "7b1e",
        "subject_label": "agent-7",
        "state": HandlerRun.State.SUCCEEDED,
        **fields,
    }
    return HandlerRun.objects.create(**values)


def test_the_changelist_shows_class_status_and_last_run(
    admin_web: Client, webhook: HandlerRegistration, orphan: HandlerRegistration
) -> None:
    _run(webhook, state=HandlerRun.State.FAILED)

    page = _page(admin_web.get(CHANGELIST))

    webhook_row = _row(page, "ops webhook")
    assert "certyard.webhook" in webhook_row
    assert '<td class="field-class_status">ok</td>' in webhook_row
    assert "failed, " in webhook_row
    assert f"{RUNS}?registration__id__exact={webhook.pk}" in webhook_row
    orphan_row = _row(page, "ticket on expiry")
    assert '<td class="field-class_status">missing</td>' in orphan_row
    assert '<td class="field-last_run">never</td>' in orphan_row


def test_a_registration_page_links_to_its_runs(
    admin_web: Client, webhook: HandlerRegistration
) -> None:
    page = _page(
        admin_web.get(reverse("admin:workflows_handlerregistration_change", args=[webhook.pk]))
    )

    assert f'href="{RUNS}?registration__id__exact={webhook.pk}"' in page


def test_runs_are_read_only_and_show_what_the_handler_did(
    admin_web: Client, webhook: HandlerRegistration
) -> None:
    run = _run(
        webhook,
        state=HandlerRun.State.FAILED,
        inputs={"event": "orchestrator.approved", "subject": "agent-7"},
        output={"status_code": 500, "body": "<b>boom</b>"},
        message="",
        error="hooks.example.test answered 500: <script>alert(1)</script>",
        traceback='Traceback (most recent call last):\n  File "x.py"\nRuntimeError: <img src=x>',
    )
    _run(None, state=HandlerRun.State.SUCCEEDED, subject_label="other-subject")
    change = reverse("admin:workflows_handlerrun_change", args=[run.pk])

    response = admin_web.get(change)

    assert response.status_code == 200
    page = _page(response)
    assert "&quot;status_code&quot;: 500" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page and "<img src=x>" not in page
    assert "RuntimeError: &lt;img src=x&gt;" in page
    assert 'name="_save"' not in page
    assert admin_web.post(change, {}).status_code == 403
    assert admin_web.get(reverse("admin:workflows_handlerrun_add")).status_code == 403
    delete = reverse("admin:workflows_handlerrun_delete", args=[run.pk])
    assert admin_web.get(delete).status_code == 403

    def listed(query: str) -> str:
        response = admin_web.get(f"{RUNS}?{query}")
        assert response.status_code == 200
        return _page(response)

    assert "agent-7" in listed(f"registration__id__exact={webhook.pk}")
    assert "other-subject" not in listed(f"registration__id__exact={webhook.pk}")
    assert "other-subject" not in listed("state__exact=failed")
    assert "other-subject" in listed("kind__exact=event&q=other")
    assert "agent-7" not in listed("q=other")


def test_events_are_read_only(admin_web: Client, webhook: HandlerRegistration) -> None:
    run = _run(webhook)
    change = reverse("admin:workflows_event_change", args=[run.event_id])

    page = _page(admin_web.get(change))

    assert "orchestrator.approved" in page
    assert f"{RUNS}?event__id__exact={run.event_id}" in page
    assert admin_web.post(change, {}).status_code == 403
    assert admin_web.get(reverse("admin:workflows_event_add")).status_code == 403
    listed = admin_web.get(
        reverse("admin:workflows_event_changelist"), {"kind": "orchestrator.approved"}
    )
    assert listed.status_code == 200
    assert admin_web.get(f"{RUNS}?event__id__exact={run.event_id}").status_code == 200


def test_a_person_without_permission_cannot_open_registrations(
    django_user_model: Any, webhook: HandlerRegistration
) -> None:
    staff = django_user_model.objects.create_user("staff", "staff@example.test", is_staff=True)
    client = Client()
    client.force_login(staff)

    assert client.get(ADD).status_code == 403
    assert client.get(CHANGELIST).status_code == 403


def test_a_person_who_may_only_view_sees_a_registration_read_only(
    django_user_model: Any, webhook: HandlerRegistration
) -> None:
    staff = django_user_model.objects.create_user("viewer", "viewer@example.test", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename="view_handlerregistration"))
    client = Client()
    client.force_login(staff)
    url = reverse("admin:workflows_handlerregistration_change", args=[webhook.pk])

    response = client.get(url)

    assert response.status_code == 200
    page = _page(response)
    assert WEBHOOK_SECRET not in page
    assert 'name="_save"' not in page
    assert client.post(url, _webhook_form()).status_code == 403
    assert client.get(ADD).status_code == 403


def test_every_workflows_admin_page_answers_and_shows_no_secret(
    admin_web: Client, webhook: HandlerRegistration, orphan: HandlerRegistration
) -> None:
    run = _run(webhook, inputs={"event": "orchestrator.approved"})
    objects = {"handlerregistration": webhook.pk, "handlerrun": run.pk, "event": run.event_id}
    writable = {"handlerregistration"}

    for model, pk in objects.items():
        pages = {
            reverse(f"admin:workflows_{model}_changelist"): 200,
            reverse(f"admin:workflows_{model}_changelist") + "?q=x": 200,
            reverse(f"admin:workflows_{model}_add"): 200 if model in writable else 403,
            reverse(f"admin:workflows_{model}_change", args=[pk]): 200,
            reverse(f"admin:workflows_{model}_delete", args=[pk]): 200
            if model in writable
            else 403,
            reverse(f"admin:workflows_{model}_history", args=[pk]): 200,
        }
        for url, status in pages.items():
            response = admin_web.get(url)
            assert response.status_code == status, url
            page = _page(response)
            assert WEBHOOK_SECRET not in page, url
            assert "orphan-secret-5d2a" not in page, url


INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^>]*\sstyle=", re.IGNORECASE)


def test_the_pages_need_no_inline_script_or_style(
    admin_web: Client, webhook: HandlerRegistration, orphan: HandlerRegistration
) -> None:
    # The Content-Security-Policy forbids both (see tests/certyard/core/test_browser_security.py).
    run = _run(webhook)
    for url in [
        ADD,
        f"{ADD}?handler=certyard.webhook",
        reverse("admin:workflows_handlerregistration_change", args=[webhook.pk]),
        reverse("admin:workflows_handlerregistration_change", args=[orphan.pk]),
        CHANGELIST,
        reverse("admin:workflows_handlerrun_change", args=[run.pk]),
        reverse("admin:workflows_event_change", args=[run.event_id]),
    ]:
        page = _page(admin_web.get(url))
        scripts = [tag for tag in INLINE_SCRIPT.findall(page) if "application/json" not in tag]
        assert scripts == [], url
        assert STYLE_ATTRIBUTE.findall(page) == [], url
