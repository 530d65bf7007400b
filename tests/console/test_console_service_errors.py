"""The console's one way to show a service's refusal on a form."""

from __future__ import annotations

from django import forms

from certyard.console.forms import service_error_to_form
from certyard.errors import ServiceError


class _NameForm(forms.Form):
    name = forms.CharField()
    comment = forms.CharField(required=False)


def _bound() -> _NameForm:
    form = _NameForm({"name": "x", "comment": ""})
    assert form.is_valid()
    return form


def test_a_refusal_naming_a_field_is_shown_beside_it() -> None:
    form = _bound()
    service_error_to_form(form, ServiceError("name is taken", field="name"))
    assert form.errors == {"name": ["Name is taken"]}


def test_the_first_named_field_gets_the_message_and_the_others_their_own() -> None:
    form = _bound()
    exc = ServiceError("name: too long", fields={"name": ["too long"], "comment": ["empty"]})
    service_error_to_form(form, exc)
    assert form.errors == {"name": ["Name: too long"], "comment": ["Empty"]}


def test_a_refusal_naming_no_field_of_the_form_goes_on_top_or_beside_the_default() -> None:
    form = _bound()
    service_error_to_form(form, ServiceError("not now", field="elsewhere"))
    assert form.non_field_errors() == ["Not now"]
    form = _bound()
    service_error_to_form(form, ServiceError("taken", code="conflict"), default="name")
    assert form.errors == {"name": ["Taken"]}
