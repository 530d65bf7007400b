"""Django admin's forms for handler registrations: one form field per declared parameter.

A registration's form depends on its class, so it is built per class
(:func:`registration_form_class`): the class's events, the filters its kind uses, and one
field per :class:`handlers.parameters.Parameter` it declares. The form checks what a
field alone can (a whole number, an email address); :func:`registration_save` decides the
rest, and its per-parameter refusals are shown beside their fields.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from django import forms

from certyard.errors import ServiceError
from certyard.workflows.models import (
    HandlerRegistration,
    registration_timeout_budget,
    registration_timeout_default,
)
from certyard.workflows.services import registration_parameters_check, registration_prepare
from handlers.base import EventKind, HandlerKind
from handlers.parameters import (
    Parameter,
    ParameterError,
    ParameterType,
    json_text,
    mapping_text,
    value_check,
)
from handlers.registry import HandlerClass

# Parameter fields are prefixed: a class may declare a parameter whose name is also a
# registration field (the webhook's own "timeout_seconds").
PARAMETER_PREFIX = "param_"

_LINES = re.compile(r"\n")
_LINES_OR_COMMAS = re.compile(r"[\n,]")


def parameter_field_name(name: str) -> str:
    return PARAMETER_PREFIX + name


def _help_with(help_text: str, sentence: str, *, unless: str) -> str:
    """The class's help with the form's own hint, unless the help already says it (a
    class's "one address per line" needs no "One per line." after it)."""
    if unless.lower() in help_text.lower():
        return help_text
    return f"{help_text} {sentence}".strip()


def initial_text(parameter: Parameter, value: Any) -> Any:
    """A stored value as its field shows it: a mapping as ``key=value`` lines, a JSON
    value indented. These fields take text back, which the checker reads, so a field
    never has to guess whether a text is a value or the JSON of one."""
    if parameter.type == ParameterType.MAPPING and isinstance(value, dict):
        return mapping_text(value)
    if parameter.type == ParameterType.JSON:
        try:
            return json_text(value)
        except (TypeError, ValueError):  # not JSON: nothing a checked save stores
            return ""
    return value


def _default_initial(parameter: Parameter) -> Any:
    if parameter.type in (ParameterType.MAPPING, ParameterType.JSON):
        # A default may be given as text (key=value lines, JSON text): read it first.
        return initial_text(parameter, value_check(parameter, parameter.default))
    return parameter.default


def _message(text: str) -> str:
    """A checker's fragment ("must be a whole number") as a sentence beside a field."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


# --- Fields -------------------------------------------------------------------------


class ListTextField(forms.CharField):
    """A list of texts, typed one per line (or, with ``commas``, comma-separated too).

    Cleans to a list without blanks or repeats; shows a stored list one item per line.
    """

    def __init__(self, *, commas: bool = False, rows: int = 2, **kwargs: Any) -> None:
        self.separator = _LINES_OR_COMMAS if commas else _LINES
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": rows, "cols": 60}))
        super().__init__(**kwargs)

    def split(self, text: Any) -> list[str]:
        if isinstance(text, list | tuple):
            return [str(item) for item in text]
        items: list[str] = []
        for item in self.separator.split(str(text or "")):
            item = item.strip()
            if item and item not in items:
                items.append(item)
        return items

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def clean(self, value: Any) -> list[str]:  # type: ignore[override]
        return self.split(super().clean(value))

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.split(initial) != self.split(data)


class _SecretInput(forms.PasswordInput):
    """Never renders a value, not even the one just typed into a refused form."""

    def __init__(self) -> None:
        super().__init__(render_value=False, attrs={"autocomplete": "new-password"})


def parameter_field(parameter: Parameter, *, adding: bool) -> forms.Field:
    """The form field for one declared parameter.

    Required as declared, unless a default fills it in; a secret is required only when
    adding, since on a change an empty one keeps the stored secret.
    """
    kind = parameter.type
    required = parameter.required and parameter.default is None
    # Django admin's CSS classes give the widgets its usual widths (no inline style: CSP).
    text_attrs = {"class": "vTextField"}
    help_text = parameter.help
    options: dict[str, Any] = {"label": parameter.title, "required": required}
    if adding and parameter.default is not None:
        options["initial"] = _default_initial(parameter)
    field: forms.Field
    if kind == ParameterType.TEXT:
        widget = forms.Textarea(attrs={"rows": 4, "class": "vLargeTextField"})
        field = forms.CharField(strip=False, widget=widget, **options)
    elif kind == ParameterType.INTEGER:
        field = forms.IntegerField(
            min_value=parameter.minimum, max_value=parameter.maximum, **options
        )
    elif kind == ParameterType.BOOLEAN:
        options["required"] = False  # unticked is a value: false
        field = forms.BooleanField(**options)
    elif kind == ParameterType.CHOICE:
        choices = [("", "---------"), *((choice, choice) for choice in parameter.choices)]
        field = forms.ChoiceField(choices=choices, **options)
    elif kind == ParameterType.EMAIL:
        field = forms.EmailField(widget=forms.EmailInput(attrs=text_attrs), **options)
    elif kind == ParameterType.URL:
        widget = forms.URLInput(attrs={"class": "vURLField"})
        field = forms.URLField(assume_scheme="https", widget=widget, **options)
    elif kind == ParameterType.LIST:
        help_text = _help_with(help_text, "One per line.", unless="per line")
        field = ListTextField(rows=4, **options)
        field.widget.attrs["class"] = "vLargeTextField"
    elif kind == ParameterType.MAPPING:
        help_text = _help_with(
            help_text, "One key=value per line; lines starting with # are ignored.", unless="="
        )
        widget = forms.Textarea(
            attrs={"rows": 4, "class": "vLargeTextField certyard-mapping", "spellcheck": "false"}
        )
        # The text goes to the checker as typed: its errors name the line.
        field = forms.CharField(strip=False, widget=widget, **options)
    elif kind == ParameterType.JSON:
        hint = "JSON"
        if parameter.schema is not None:
            hint += ", checked against the JSON Schema the class declares"
        help_text = _help_with(help_text, f"{hint}.", unless="JSON")
        widget = forms.Textarea(
            attrs={"rows": 8, "class": "vLargeTextField certyard-json", "spellcheck": "false"}
        )
        field = forms.CharField(strip=False, widget=widget, **options)
    elif kind == ParameterType.SECRET:
        options["required"] = required and adding
        if not adding:
            help_text = f"{help_text} Leave empty to keep the current secret.".strip()
        field = forms.CharField(strip=False, widget=_SecretInput(), **options)
        field.widget.attrs["class"] = "vTextField"
    else:  # STRING; its pattern is the checker's to enforce, with its own message
        if parameter.pattern:
            help_text = f"{help_text} Must match {parameter.pattern}.".strip()
        field = forms.CharField(widget=forms.TextInput(attrs=text_attrs), **options)
    field.help_text = help_text
    return field


# --- The registration form ----------------------------------------------------------

_BASE_FIELDS = ["name", "description", "enabled", "order"]
_FILTER_FIELDS = {
    HandlerKind.EVENT: ["events", "job_types", "store_types", "orchestrators", "templates"],
    HandlerKind.JOB_COMPLETE: ["job_types", "store_types", "orchestrators"],
}
_RETRIED_KINDS = (HandlerKind.EVENT, HandlerKind.JOB_COMPLETE)


class HandlerRegistrationForm(forms.ModelForm):
    """The fields every registration has; :func:`registration_form_class` adds the rest.

    Validation ends with :func:`registration_prepare` (every check of
    :func:`registration_save`, nothing written), so each refusal of the service is a form
    error beside its field; the admin then saves through ``registration_save``.
    """

    handler_info: ClassVar[HandlerClass]
    adding: ClassVar[bool]
    # Form field name -> the parameter it holds.
    declared: ClassVar[dict[str, Parameter]] = {}

    timeout_seconds = forms.IntegerField(
        min_value=1, max_value=3600, initial=30, help_text="How long one run may take (1-3600)."
    )
    max_attempts = forms.IntegerField(
        min_value=1, max_value=10, initial=3, help_text="Tries per event, the first included."
    )
    retry_backoff_seconds = forms.IntegerField(
        min_value=0,
        max_value=86_400,
        initial=30,
        help_text="Wait before the second try; doubled for each later one.",
    )

    class Meta:
        model = HandlerRegistration
        fields = [*_BASE_FIELDS, "timeout_seconds"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.handler = self.handler_info.name
        if self.instance.pk:
            stored = self.instance.parameters or {}
            for field_name, parameter in self.declared.items():
                if not parameter.secret and parameter.name in stored:
                    self.initial.setdefault(
                        field_name, initial_text(parameter, stored[parameter.name])
                    )
        elif "timeout_seconds" not in self.initial:
            # A new registration starts with its kind's default (a registration handler's
            # within the budget all of them share).
            self.initial["timeout_seconds"] = registration_timeout_default(
                self.handler_info.kind.value
            )

    @classmethod
    def fieldsets(cls) -> list[tuple[str | None, dict[str, Any]]]:
        """How the admin groups this form's fields."""
        kind = cls.handler_info.kind
        groups: list[tuple[str | None, dict[str, Any]]] = [(None, {"fields": _BASE_FIELDS})]
        if cls.declared:
            groups.append(
                (
                    "Parameters",
                    {
                        "fields": list(cls.declared),
                        "description": f"What {cls.handler_info.label} declares it needs.",
                    },
                )
            )
        if kind in _FILTER_FIELDS:
            groups.append(
                (
                    "Applies to",
                    {
                        "fields": _FILTER_FIELDS[kind],
                        "description": "Leave a filter empty to match anything.",
                    },
                )
            )
        running = ["timeout_seconds"]
        if kind in _RETRIED_KINDS:
            running += ["max_attempts", "retry_backoff_seconds"]
        groups.append(("Running", {"fields": running}))
        return groups

    def clean_timeout_seconds(self) -> int | None:
        timeout = self.cleaned_data.get("timeout_seconds")
        budget = registration_timeout_budget()
        if (
            self.handler_info.kind == HandlerKind.REGISTRATION
            and timeout is not None
            and timeout > budget
        ):
            # An error, not a warning: the budget would cut such a run short anyway.
            raise forms.ValidationError(
                f"At most {budget} s: all registration handlers share a budget of {budget} s "
                "per agent registration (CERTYARD_REGISTRATION_HANDLERS_SECONDS).",
                code="over_budget",
            )
        return timeout

    def parameter_values(self) -> dict[str, Any]:
        """The typed parameter values by parameter name (fields in error left out)."""
        return {
            parameter.name: self.cleaned_data[field_name]
            for field_name, parameter in self.declared.items()
            if field_name in self.cleaned_data
        }

    def _parameter_errors_add(self, error: ParameterError) -> None:
        for name, message in error.errors.items():
            field_name = parameter_field_name(name)
            if field_name in self.fields:
                if field_name not in self.errors:
                    self.add_error(field_name, _message(message))
            else:
                # "handler", or a name the class no longer declares.
                self.add_error(None, _message(f"{name}: {message}"))

    def _post_clean(self) -> None:
        super()._post_clean()  # the instance now holds the typed values
        try:
            if self.errors:
                # Say what is wrong with the parameters too, all in one round.
                stored = None
                if self.instance.pk:
                    stored = HandlerRegistration.objects.filter(pk=self.instance.pk).first()
                registration_parameters_check(
                    handler=self.handler_info.name, values=self.parameter_values(), keep=stored
                )
                return
            # A copy: the admin saves the form's own instance, through registration_save.
            registration_prepare(
                registration=copy.copy(self.instance), values=self.parameter_values()
            )
        except ParameterError as exc:
            self._parameter_errors_add(exc)
        except ServiceError as exc:
            self.add_error(None, exc.message)


def _events_field(cls: type, label: str) -> forms.MultipleChoiceField:
    understood: Sequence[str] = getattr(cls, "events", ()) or [kind.value for kind in EventKind]
    return forms.MultipleChoiceField(
        choices=[(event, event) for event in understood],
        required=False,
        # "radiolist inline": Django admin's own style for a list of options in a row.
        widget=forms.CheckboxSelectMultiple(attrs={"class": "radiolist inline"}),
        help_text=(
            f"The events {label} runs on. None ticked: every event"
            + (" it handles." if getattr(cls, "events", ()) else ".")
        ),
    )


def registration_form_class(info: HandlerClass, *, adding: bool) -> type[HandlerRegistrationForm]:
    """The admin form for registering ``info``'s class (which must be loaded)."""
    cls = info.cls
    if cls is None:
        raise ValueError(f"{info.name} cannot be loaded: {info.error}")
    kind = cls.kind
    attrs: dict[str, Any] = {"handler_info": info, "adding": adding}
    filters = _FILTER_FIELDS.get(kind, [])
    if "events" in filters:
        attrs["events"] = _events_field(cls, info.label)
    filter_fields = {
        "job_types": ListTextField(
            commas=True, help_text="Job types (inventory, ...), comma- or line-separated."
        ),
        "store_types": ListTextField(
            commas=True, help_text="Store type short names (PEM, ...), comma- or line-separated."
        ),
        "orchestrators": ListTextField(
            commas=True, label="Orchestrator ids", help_text="Comma- or line-separated."
        ),
        "templates": ListTextField(
            commas=True,
            label="Certificate templates",
            help_text="Template names, comma- or line-separated.",
        ),
    }
    attrs.update((name, field) for name, field in filter_fields.items() if name in filters)
    declared = {parameter_field_name(p.name): p for p in cls.parameters}
    attrs["declared"] = declared
    for field_name, parameter in declared.items():
        attrs[field_name] = parameter_field(parameter, adding=adding)
    if kind == HandlerKind.REGISTRATION:
        budget = registration_timeout_budget()
        attrs["timeout_seconds"] = forms.IntegerField(
            min_value=1,
            max_value=3600,
            help_text=(
                f"How long one run may take (1-{budget}): all registration handlers share "
                f"{budget} s per agent registration."
            ),
        )
    fields = [*_BASE_FIELDS, *filters, "timeout_seconds"]
    if kind in _RETRIED_KINDS:
        fields += ["max_attempts", "retry_backoff_seconds"]
    else:
        # Registration handlers and generators are not retried: no such fields.
        attrs["max_attempts"] = None
        attrs["retry_backoff_seconds"] = None
    attrs["Meta"] = type("Meta", (HandlerRegistrationForm.Meta,), {"fields": fields})
    return type(f"{cls.__name__}RegistrationForm", (HandlerRegistrationForm,), attrs)


class UnavailableClassForm(forms.ModelForm):
    """A registration whose class is gone: only what needs no class can change."""

    class Meta:
        model = HandlerRegistration
        fields = _BASE_FIELDS


# --- Choosing the class -------------------------------------------------------------


class _ClassSelect(forms.Select):
    """A select whose unavailable classes are listed but cannot be picked."""

    def __init__(self, *args: Any, unavailable: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unavailable = set(unavailable)

    def create_option(self, name: str, value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(name, value, *args, **kwargs)
        if value in self.unavailable:
            option["attrs"]["disabled"] = True
        return option


def class_option_label(info: HandlerClass) -> str:
    package = f"{info.distribution} {info.version}".strip() or "unknown package"
    return f"{info.label} — {info.name} ({package})"


class HandlerClassChoiceForm(forms.Form):
    """The first step of adding a registration: which installed class."""

    handler = forms.ChoiceField(label="Handler class")

    def __init__(
        self,
        *args: Any,
        usable: Sequence[HandlerClass],
        unavailable: Sequence[HandlerClass],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.unavailable = {info.name: info for info in unavailable}
        groups: dict[str, list[tuple[str, str]]] = {}
        for info in usable:
            label = info.kind.label if info.kind is not None else "Other"  # type: ignore[attr-defined]
            groups.setdefault(label, []).append((info.name, class_option_label(info)))
        choices: list[Any] = [("", "— choose a class —"), *groups.items()]
        if unavailable:
            choices.append(
                (
                    "Unavailable",
                    [
                        (info.name, f"{info.name} — unavailable: {info.error}")
                        for info in unavailable
                    ],
                )
            )
        field = self.fields["handler"]
        field.choices = choices
        field.widget = _ClassSelect(
            choices=choices,
            unavailable=list(self.unavailable),
            # Django admin's fixed width for large fields: long labels stay in the page.
            attrs={"class": "vLargeTextField"},
        )
        field.help_text = "Each class's form, with its description, comes next."

    def clean_handler(self) -> str:
        name = self.cleaned_data["handler"]
        if name in self.unavailable:
            raise forms.ValidationError(
                f"{name} cannot be used: {self.unavailable[name].error}", code="unavailable"
            )
        return name
