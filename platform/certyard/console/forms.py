"""The console's forms: they check what people type, the services decide the rest."""

import datetime as dt
import json
import re
from typing import Any

from django import forms

from certyard.console import selectors
from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore, CertificateStoreType, InventoryStatus
from certyard.inventory.selectors import EXPIRY_WINDOWS_DAYS, CertificateFilters
from certyard.jobs.models import Job
from handlers.text import visible

_MAX_INTERVAL_MINUTES = 525_600  # a year, as the API allows


# Choice labels are outside text (an agent's name, a store's machine and path): shown
# escaped, as on every page (handlers.text.visible).
class OrchestratorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Orchestrator) -> str:
        return visible(f"{obj.name} ({obj.client_machine})")


class StoreChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: CertificateStore) -> str:
        return visible(f"{obj.store_type.short_name} {obj.client_machine}:{obj.store_path}")


def _properties_field(rows: int = 3) -> forms.CharField:
    return forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": rows, "placeholder": '{"recursive": true}'}),
        help_text="A JSON object; leave empty for none.",
    )


def _interval_field() -> forms.IntegerField:
    return forms.IntegerField(
        required=False,
        min_value=1,
        max_value=_MAX_INTERVAL_MINUTES,
        label="Inventory every (minutes)",
        help_text="Leave empty for no schedule.",
    )


def _password_field(help_text: str) -> forms.CharField:
    return forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


def properties_from_json(raw: str) -> dict[str, Any]:
    """A JSON object typed into a form; empty text is no properties."""
    raw = raw.strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(
            f"Properties must be valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."
        ) from None
    if not isinstance(value, dict):
        raise forms.ValidationError('Properties must be a JSON object, like {"key": "value"}.')
    return value


def service_error_to_form(
    form: forms.Form, exc: ServiceError, *, default: str | None = None
) -> None:
    """Put a service's refusal on the form, the one way every console page shows one.

    The refusal's message (the whole sentence) goes beside the first field it names
    (``exc.fields``) that the form has, else beside ``default``, else on top of the form;
    any other named field the form has gets its own messages.
    """
    named = [name for name in exc.fields if name in form.fields]
    first = named[0] if named else (default if default in form.fields else None)
    form.add_error(first, sentence(exc.message))
    for name in named[1:]:
        messages = exc.fields[name]
        for message in [messages] if isinstance(messages, str) else messages:
            form.add_error(name, sentence(str(message)))


# The helper's former name, kept so that callers not yet moved keep working.
form_add_service_error = service_error_to_form


def sentence(message: str) -> str:
    """A service's message as the console shows it: a capital first letter."""
    return message[:1].upper() + message[1:] if message else message


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
    client_machine = forms.CharField(
        max_length=255,
        required=False,
        help_text="Leave empty for the orchestrator's own machine (the only one it can reach).",
    )
    store_path = forms.CharField(max_length=1024)
    properties = _properties_field()
    password = _password_field("Stored encrypted; never shown again.")
    inventory_interval_minutes = _interval_field()

    def clean_properties(self) -> dict[str, Any]:
        return properties_from_json(self.cleaned_data["properties"])


class StoreEditForm(forms.Form):
    """Change a store's path, properties, password and schedule (its type, orchestrator and
    machine are fixed: another one is a new store)."""

    store_path = forms.CharField(max_length=1024)
    properties = _properties_field(rows=8)
    password = _password_field("Leave empty to keep the stored password; it is never shown.")
    clear_password = forms.BooleanField(
        required=False, label="Clear the stored password", help_text="The store has none after."
    )
    inventory_interval_minutes = _interval_field()

    @classmethod
    def for_store(cls, store: CertificateStore, data: Any = None) -> "StoreEditForm":
        return cls(
            data,
            initial={
                "store_path": store.store_path,
                "properties": json.dumps(store.properties, indent=2) if store.properties else "",
                "inventory_interval_minutes": store.inventory_interval_minutes,
            },
        )

    def clean_properties(self) -> dict[str, Any]:
        return properties_from_json(self.cleaned_data["properties"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("clear_password") and cleaned.get("password"):
            self.add_error("password", "Either type a new password or clear it, not both.")
        return cleaned

    def changes(self) -> dict[str, Any]:
        """``store_update``'s keyword arguments: only what the form changed."""
        data = self.cleaned_data
        changes: dict[str, Any] = {
            "store_path": data["store_path"],
            "properties": data["properties"],
        }
        if data.get("clear_password"):
            changes["password"] = ""
        elif data.get("password"):
            changes["password"] = data["password"]
        if "inventory_interval_minutes" in self.changed_data:
            changes["inventory_interval_minutes"] = data["inventory_interval_minutes"]
        return changes


class StoreStatusFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *InventoryStatus.choices]
    )
    orchestrator = forms.UUIDField(required=False, widget=forms.HiddenInput)
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1


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
    labels = forms.CharField(
        required=False,
        max_length=1500,
        help_text="Labels registration rules can trust (token labels), separated by spaces, "
        "commas or lines, e.g. prod-web. The agent cannot choose them.",
    )
    machine_pattern = forms.CharField(
        required=False,
        max_length=255,
        label="Machine pattern",
        help_text="Only client machines matching this glob may register with it, e.g. "
        "*.prod.example.com. Empty: any.",
    )
    blueprint = forms.CharField(
        required=False,
        max_length=200,
        help_text="The only blueprint (its name) an approval through this token may apply. "
        "Empty: any.",
    )

    @property
    def valid_for(self) -> dt.timedelta:
        return dt.timedelta(hours=self.cleaned_data["valid_hours"])

    def clean_labels(self) -> list[str]:
        return [label for label in re.split(r"[\s,]+", self.cleaned_data["labels"]) if label]


class ApiTokenForm(forms.Form):
    """A new API token for the person signed in: what it is for and how long it lives."""

    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “CI deploys”.")
    expires_in_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=365,
        label="Expires in (days)",
        help_text="1 to 365 days.",
    )
    never_expires = forms.BooleanField(
        required=False,
        label="Never expires",
        help_text="Only if you must: a token that never expires works until it is revoked.",
    )

    def __init__(self, *args: Any, default_days: int = 90, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expires_in_days"].initial = default_days

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        days = cleaned.get("expires_in_days")
        never = cleaned.get("never_expires")
        if never and days is not None:
            self.add_error("expires_in_days", "Give a number of days or tick “Never expires”.")
        elif not never and days is None and "expires_in_days" not in self.errors:
            self.add_error("expires_in_days", "Give a number of days (1 to 365).")
        return cleaned

    @property
    def expires_in(self) -> dt.timedelta | None:
        """The token's lifetime; None only when "Never expires" was ticked."""
        if self.cleaned_data["never_expires"]:
            return None
        return dt.timedelta(days=self.cleaned_data["expires_in_days"])


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
    nonconformant = forms.BooleanField(
        required=False,
        label="Non-conformant only",
        help_text="Certificates that break X.509 / RFC 5280 rules (with parse warnings).",
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
            conformant=False if data.get("nonconformant") else None,
        )

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1

    @property
    def is_filtered(self) -> bool:
        return any(
            self.cleaned_data.get(name) for name in ("q", "expiry", "store", "key", "nonconformant")
        )


class JobFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *Job.State.choices])
