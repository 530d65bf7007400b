"""The console's metadata forms: they show the fields; the metadata services check values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

from certyard.errors import ServiceError
from certyard.inventory.metadata import METADATA_FIELD_ATTRIBUTES
from certyard.inventory.metadata.selectors import (
    MetadataEntry,
    MetadataFilter,
    metadata_field_has_values,
    metadata_fields,
    metadata_filter_resolve,
)
from certyard.inventory.models import MetadataField

FieldType = MetadataField.Type
_BOOLEAN_CHOICES = [("", "—"), ("true", "Yes"), ("false", "No")]


def _form_field(field: MetadataField) -> forms.Field:
    """A form field for one metadata field. Every one is optional (empty clears the value)
    and passes text through: the type, pattern and choices are the service's to check, so
    the console says what the API says."""
    common: dict[str, Any] = {"required": False, "label": field.display_name}
    if field.description:
        common["help_text"] = field.description
    if field.type == FieldType.BOOLEAN:
        return forms.ChoiceField(choices=_BOOLEAN_CHOICES, **common)
    if field.type == FieldType.CHOICE:
        choices = [("", "—"), *((choice, choice) for choice in field.choices or [])]
        return forms.ChoiceField(choices=choices, **common)
    if field.type == FieldType.TEXT:
        return forms.CharField(
            max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}), strip=False, **common
        )
    widgets = {
        FieldType.DATE: forms.DateInput(attrs={"type": "date"}),
        FieldType.EMAIL: forms.TextInput(attrs={"type": "email"}),
        FieldType.INTEGER: forms.TextInput(attrs={"inputmode": "numeric"}),
    }
    return forms.CharField(
        max_length=1_000, widget=widgets.get(field.type, forms.TextInput()), strip=False, **common
    )


class _ChoicesField(forms.CharField):
    """A choice field's allowed values, one per line (stored as a list)."""

    widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false"})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(str(v) for v in value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class MetadataFieldForm(forms.ModelForm):
    """Define or change a metadata field, with Django admin's checks: the model's own
    (name, pattern, choices) through ModelForm validation, and the services' (a field's
    type is fixed once certificates have values), which save it."""

    choices = _ChoicesField(
        required=False,
        help_text="For a choice field only: the allowed values, one per line.",
    )

    class Meta:
        model = MetadataField
        fields = list(METADATA_FIELD_ATTRIBUTES)
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # The name is how generators, the API and filters find it: fixed once made.
            self.fields["name"].disabled = True
            self.fields["name"].help_text = "Fixed: generators, the API and filters use it."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        field = self.instance
        if field.pk and "type" in self.changed_data and metadata_field_has_values(field=field):
            self.add_error(
                "type", "Certificates have values for this field: its type cannot change."
            )
        return data

    def values(self) -> dict[str, Any]:
        """The attributes as the metadata services take them."""
        return {name: self.cleaned_data[name] for name in METADATA_FIELD_ATTRIBUTES}


class CertificateMetadataForm(forms.Form):
    """One input per metadata field, filled with the certificate's current values."""

    prefix = "metadata"

    def __init__(self, *args: Any, entries: Sequence[MetadataEntry], **kwargs: Any) -> None:
        kwargs.setdefault("initial", {entry.field.name: entry.value or "" for entry in entries})
        super().__init__(*args, **kwargs)
        self.entries = {entry.field.name: entry for entry in entries}
        for entry in entries:
            self.fields[entry.field.name] = _form_field(entry.field)

    def changed_values(self) -> dict[str, str | None]:
        """Only what the person changed: re-saving an untouched value would make a
        generator's value theirs (and keep generators from updating it)."""
        return {name: self.cleaned_data[name] or None for name in self.changed_data}


class MetadataFilterForm(forms.Form):
    """The certificate list's metadata filter: a field, and a value or "has none"."""

    metadata_field = forms.ModelChoiceField(
        queryset=MetadataField.objects.none(),
        to_field_name="name",
        required=False,
        empty_label="Any metadata",
        label="Metadata field",
        error_messages={"invalid_choice": "There is no such metadata field (any more)."},
    )
    metadata_value = forms.CharField(required=False, max_length=1_000, label="Value", strip=False)
    metadata_empty = forms.BooleanField(required=False, label="Has no value")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["metadata_field"].queryset = metadata_fields()  # type: ignore[attr-defined]
        self.filter: MetadataFilter | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        field: MetadataField | None = data.get("metadata_field")
        value = data.get("metadata_value") or ""
        empty = bool(data.get("metadata_empty"))
        if field is None:
            if (value.strip() or empty) and "metadata_field" not in self.errors:
                self.add_error("metadata_field", "Choose the metadata field to filter on.")
            return data
        try:
            self.filter = metadata_filter_resolve(
                field_name=field.name, value=value if value.strip() else None, empty=empty
            )
        except ServiceError as exc:
            messages = exc.fields.get("metadata_value") or [exc.message]
            self.add_error("metadata_value", messages[0])
        return data
