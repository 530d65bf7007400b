"""The console's forms: they check what people type, the services decide the rest."""

import datetime as dt
import json
from typing import Any

from django import forms

from certyard.console import selectors
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.selectors import EXPIRY_WINDOWS_DAYS, CertificateFilters
from certyard.jobs.models import Job

_MAX_INTERVAL_MINUTES = 525_600  # a year, as the API allows


class OrchestratorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Orchestrator) -> str:
        return f"{obj.name} ({obj.client_machine})"


class StoreChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: CertificateStore) -> str:
        return f"{obj.store_type.short_name} {obj.client_machine}:{obj.store_path}"


class StoreCreateForm(forms.Form):
    store_type = forms.ModelChoiceField(
        queryset=CertificateStoreType.objects.filter(supports_inventory=True),
        to_field_name="short_name",
        empty_label=None,
    )
    orchestrator = OrchestratorChoiceField(
        queryset=selectors.orchestrators_approved(),
        help_text="Only approved orchestrators are offered.",
    )
    client_machine = forms.CharField(max_length=255)
    store_path = forms.CharField(max_length=1024)
    properties = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"recursive": true}'}),
        help_text="A JSON object; leave empty for none.",
    )
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; never shown again.",
    )
    inventory_interval_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=_MAX_INTERVAL_MINUTES,
        label="Inventory every (minutes)",
        help_text="Leave empty for no schedule.",
    )

    def clean_properties(self) -> dict[str, Any]:
        raw = self.cleaned_data["properties"].strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Properties must be valid JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno})."
            ) from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Properties must be a JSON object, like {"key": "value"}.')
        return value


class StoreScheduleForm(forms.Form):
    interval_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=_MAX_INTERVAL_MINUTES,
        label="Every (minutes)",
        help_text="Empty stops the schedule.",
    )


class RegistrationTokenForm(forms.Form):
    description = forms.CharField(max_length=200)
    valid_hours = forms.IntegerField(min_value=1, max_value=24 * 365, initial=24)
    reusable = forms.BooleanField(
        required=False, help_text="A one-time token is spent by its first registration."
    )
    approve_on_register = forms.BooleanField(
        required=False, help_text="Orchestrators registering with it start approved."
    )

    @property
    def valid_for(self) -> dt.timedelta:
        return dt.timedelta(hours=self.cleaned_data["valid_hours"])


EXPIRY_EXPIRED = "expired"
KEY_ALGORITHMS = ("RSA", "EC", "Ed25519")


class CertificateSearchForm(forms.Form):
    """The certificate list's GET filters; every field optional."""

    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "CN, SAN, serial, fingerprint or issuer"}
        ),
    )
    expiry = forms.ChoiceField(
        required=False,
        label="Expiry",
        choices=[
            ("", "Any"),
            (EXPIRY_EXPIRED, "Expired"),
            *((str(days), f"Within {days} days") for days in EXPIRY_WINDOWS_DAYS),
        ],
    )
    store = StoreChoiceField(
        required=False, queryset=selectors.store_choices(), empty_label="Any store"
    )
    key = forms.ChoiceField(
        required=False,
        label="Key type",
        choices=[("", "Any"), *((name, name) for name in KEY_ALGORITHMS)],
    )
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)

    def filters(self) -> CertificateFilters:
        data = self.cleaned_data
        expiry = data.get("expiry") or ""
        store = data.get("store")
        return CertificateFilters(
            search=data.get("q") or "",
            expired=True if expiry == EXPIRY_EXPIRED else None,
            expires_within_days=int(expiry) if expiry.isdigit() else None,
            store_id=str(store.pk) if store else None,
            key_algorithm=data.get("key") or "",
        )

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in ("q", "expiry", "store", "key"))


class JobFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *Job.State.choices])
