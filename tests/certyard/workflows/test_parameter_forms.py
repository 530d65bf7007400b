"""Mapping and JSON parameters in Django admin's registration form, help texts said once,
and timeouts defaulted per kind (a registration handler's within the shared budget)."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from certyard.workflows.forms import parameter_field, registration_form_class
from certyard.workflows.invoke import handler_instance
from certyard.workflows.models import HandlerRegistration, registration_timeout_default
from certyard.workflows.selectors import registration_summary
from certyard.workflows.services import registration_save
from handlers import registry
from handlers.base import EventContext, EventHandler, HandlerKind, HandlerResult
from handlers.parameters import Parameter, ParameterError, ParameterType

pytestmark = pytest.mark.django_db

ADD = reverse("admin:workflows_handlerregistration_add")
TYPED = "test.typed_config"  # tests/plugins: a MAPPING "labels" and a JSON "policy" with a schema


@pytest.fixture
def admin_web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def _form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "typed",
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
        "param_path": "/tmp/typed.jsonl",
        "param_labels": "team=ops\n# the cost centre\n\ncost_centre = 4711\n",
        "param_policy": '{"retries": 2, "notify": ["ops@example.test"]}',
        "_save": "Save",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def _row(page: str, field: str) -> str:
    match = re.search(rf'<div class="form-row[^"]*field-{field}\b.*?</div>\s*</div>', page, re.S)
    assert match, f"no form row for {field}"
    return html.unescape(match.group(0))


def _textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1)).strip("\n")


def test_the_add_form_shows_a_mapping_and_pretty_json_textarea(admin_web: Client) -> None:
    page = admin_web.get(ADD, {"handler": TYPED}).content.decode()
    labels = re.search(r'<textarea[^>]*name="param_labels"[^>]*>', page)
    policy = re.search(r'<textarea[^>]*name="param_policy"[^>]*>', page)
    assert labels and "certyard-mapping" in labels.group(0)
    assert policy and "certyard-json" in policy.group(0)
    # The default, indented.
    assert _textarea(page, "param_policy") == '{\n  "retries": 3\n}'
    assert "One key=value per line; lines starting with # are ignored." in _row(
        page, "param_labels"
    )
    assert "JSON, checked against the JSON Schema the class declares." in _row(page, "param_policy")


def test_wrong_values_are_refused_beside_their_fields_in_one_round(admin_web: Client) -> None:
    response = admin_web.post(
        f"{ADD}?handler={TYPED}",
        _form(param_labels="team=ops\nnot a pair\n", param_policy='{"retries": 11}'),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Line 2: 'not a pair' has no '=' (write key=value)." in _row(page, "param_labels")
    assert "At $.retries: 11 is greater than the maximum of 10." in _row(page, "param_policy")
    # What was typed is shown again, as typed.
    assert _textarea(page, "param_labels") == "team=ops\nnot a pair"
    assert not HandlerRegistration.objects.exists()

    page = admin_web.post(
        f"{ADD}?handler={TYPED}",
        _form(param_labels="a=1\na=2", param_policy='{"retries": 1,}'),
    ).content.decode()
    assert "Line 2: the key 'a' is given twice (first on line 1)." in _row(page, "param_labels")
    assert "Is not valid JSON: Expecting property name enclosed in double quotes" in _row(
        page, "param_policy"
    )
    page = admin_web.post(
        f"{ADD}?handler={TYPED}", _form(param_labels="# nothing but a comment")
    ).content.decode()
    assert "Is required." in _row(page, "param_labels")


def test_right_values_are_stored_typed_shown_back_and_reach_self_config(
    admin_web: Client,
) -> None:
    response = admin_web.post(f"{ADD}?handler={TYPED}", _form())
    assert response.status_code == 302, response.content.decode()[:3000]
    registration = HandlerRegistration.objects.get()
    assert registration.parameters["labels"] == {"team": "ops", "cost_centre": "4711"}
    assert registration.parameters["policy"] == {"retries": 2, "notify": ["ops@example.test"]}

    # The change form renders the stored values back as lines and indented JSON.
    change = reverse("admin:workflows_handlerregistration_change", args=[registration.pk])
    page = admin_web.get(change).content.decode()
    # (Key order is the database's: PostgreSQL's jsonb keeps keys in its own order.)
    assert set(_textarea(page, "param_labels").splitlines()) == {"team=ops", "cost_centre=4711"}
    policy_text = _textarea(page, "param_policy")
    assert json.loads(policy_text) == {"retries": 2, "notify": ["ops@example.test"]}
    assert policy_text.startswith('{\n  "') and '\n    "ops@example.test"\n' in policy_text
    # Saving it unchanged keeps it as it was.
    data = _form(param_labels=_textarea(page, "param_labels"))
    data["param_policy"] = _textarea(page, "param_policy")
    assert admin_web.post(change, data).status_code == 302
    registration.refresh_from_db()
    assert registration.parameters["labels"] == {"team": "ops", "cost_centre": "4711"}

    # The handler gets them typed.
    handler = handler_instance(registration, EventHandler)
    assert handler.config["labels"] == {"team": "ops", "cost_centre": "4711"}
    assert handler.config["policy"]["retries"] == 2

    # The console shows them readably, not as Python reprs.
    shown = {p.name: p for p in registration_summary(registration).parameters}
    assert shown["labels"].is_mapping
    assert set(shown["labels"].text.splitlines()) == {"team=ops", "cost_centre=4711"}
    assert shown["policy"].is_json and '"retries": 2' in shown["policy"].text
    console = admin_web.get(
        reverse("console:handler-registration-detail", args=[registration.pk])
    ).content.decode()
    assert re.search(r'data-testid="parameter-entry"><code>team</code> = ops<', console)
    json_shown = re.search(r'data-testid="parameter-json">(.*?)</pre>', console, re.S)
    assert json_shown
    assert json.loads(html.unescape(json_shown.group(1)))["retries"] == 2
    assert html.unescape(json_shown.group(1)).startswith('{\n  "')
    assert "{&#x27;" not in console and "{'" not in console  # no Python repr


def test_the_api_gives_mapping_and_json_values_typed(admin_api: Any) -> None:
    registration_save(
        registration=HandlerRegistration(name="api typed", handler=TYPED),
        values={"path": "/tmp/x", "labels": "a = 1\nb=two=2", "policy": '{"retries": 0}'},
    )
    answer = admin_api.get("/api/v1/handler-registrations/")
    assert answer.status_code == 200
    (listed,) = answer.json()["results"]
    assert listed["parameters"]["labels"] == {"a": "1", "b": "two=2"}
    assert listed["parameters"]["policy"] == {"retries": 0}


def test_a_default_json_value_is_a_copy_per_registration() -> None:
    registration = registration_save(
        registration=HandlerRegistration(name="defaults", handler=TYPED),
        values={"path": "/tmp/x", "labels": {"a": "b"}},
    )
    first = handler_instance(registration, EventHandler)
    first.config["policy"]["retries"] = 99
    again = handler_instance(registration, EventHandler)
    assert again.config["policy"] == {"retries": 3}


def test_registration_save_refuses_bad_values_by_name() -> None:
    with pytest.raises(ParameterError) as refused:
        registration_save(
            registration=HandlerRegistration(name="bad", handler=TYPED),
            values={"path": "/tmp/x", "labels": {"a": 1}, "policy": {"retries": "3"}},
        )
    assert refused.value.errors == {
        "labels": "the value of 'a' must be a text",
        "policy": "at $.retries: '3' is not of type 'integer'",
    }


# --- Help texts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("help_text", "shown"),
    [
        ("Hosts to tell.", "Hosts to tell. One per line."),
        ("Who receives the mail: one email address per line.", None),
        ("", "One per line."),
    ],
)
def test_a_list_help_says_one_per_line_once(help_text: str, shown: str | None) -> None:
    field = parameter_field(Parameter("x", ParameterType.LIST, help=help_text), adding=True)
    assert field.help_text == (shown or help_text)
    assert field.help_text.lower().count("per line") == 1


def test_the_email_handler_form_says_one_per_line_once(admin_web: Client) -> None:
    page = admin_web.get(ADD, {"handler": "certyard.email"}).content.decode()
    row = _row(page, "param_recipients")
    assert row.lower().count("per line") == 1, row


# --- Timeouts -----------------------------------------------------------------------


def test_timeouts_default_per_kind_within_the_registration_budget() -> None:
    assert registration_timeout_default(HandlerKind.REGISTRATION) == 5
    assert registration_timeout_default(HandlerKind.EVENT) == 30
    assert registration_timeout_default(HandlerKind.JOB_COMPLETE) == 30
    assert registration_timeout_default(HandlerKind.METADATA) == 30
    assert registration_timeout_default(HandlerKind.GATEWAY) == 60
    with override_settings(CERTYARD_REGISTRATION_HANDLERS_SECONDS=3.5):
        assert registration_timeout_default(HandlerKind.REGISTRATION) == 3

    decide = registration_save(
        registration=HandlerRegistration(name="decide", handler="test.decide"),
        values={"verdict": "allow"},
    )
    record = registration_save(
        registration=HandlerRegistration(name="record", handler="test.record"),
        values={"path": "/tmp/x"},
    )
    given = registration_save(
        registration=HandlerRegistration(name="given", handler="test.record", timeout_seconds=7),
        values={"path": "/tmp/x"},
    )
    assert (decide.timeout_seconds, record.timeout_seconds, given.timeout_seconds) == (5, 30, 7)
    # A row saved directly still gets one (the column has no null).
    bare = HandlerRegistration.objects.create(name="bare", handler="test.record", kind="event")
    assert bare.timeout_seconds == 30


def test_the_add_form_defaults_the_timeout_by_kind_and_bounds_registration_handlers(
    admin_web: Client,
) -> None:
    page = admin_web.get(ADD, {"handler": "test.decide"}).content.decode()
    assert re.search(r'name="timeout_seconds"[^>]*value="5"', page)
    assert "all registration handlers share 10 s per agent registration" in page
    page = admin_web.get(ADD, {"handler": "test.record"}).content.decode()
    assert re.search(r'name="timeout_seconds"[^>]*value="30"', page)

    data = {
        "name": "slow decider",
        "description": "",
        "enabled": "on",
        "order": "100",
        "timeout_seconds": "11",
        "param_verdict": "allow",
        "param_blueprint": "",
        "_save": "Save",
    }
    page = admin_web.post(f"{ADD}?handler=test.decide", data).content.decode()
    assert "At most 10 s: all registration handlers share a budget of 10 s" in _row(
        page, "timeout_seconds"
    )
    assert not HandlerRegistration.objects.exists()
    data["timeout_seconds"] = "10"
    response = admin_web.post(f"{ADD}?handler=test.decide", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert HandlerRegistration.objects.get().timeout_seconds == 10


def test_a_form_class_for_a_json_parameter_without_schema_takes_any_json() -> None:
    class AnyJson(EventHandler):
        """Any JSON."""

        label = "Any JSON (test)"
        parameters = (Parameter("extra", ParameterType.JSON, default="[1, 2]"),)

        def handle(self, event: EventContext) -> HandlerResult:
            return HandlerResult()

    info = registry.HandlerClass("test.any_json", f"{__name__}:AnyJson", "t", "1", AnyJson)
    form_class = registration_form_class(info, adding=True)
    form = form_class()
    assert form.fields["param_extra"].initial == "[\n  1,\n  2\n]"
    assert form.fields["param_extra"].help_text == "JSON."
