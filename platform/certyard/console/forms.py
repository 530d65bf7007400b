"""The console's forms: they check what people type, the services decide the rest."""

import datetime as dt
import re
from typing import Any

from django import forms

from certyard.console import selectors
from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import (
    CertificateStatus,
    CertificateStore,
    CertificateStoreType,
    InventoryStatus,
    TlsEndpoint,
)
from certyard.inventory.properties import (
    MAX_STRING_PROPERTY,
    endpoint_check,
    properties_check,
    specs_of,
)
from certyard.inventory.selectors import (
    ENDPOINT_PROBLEMS,
    EXPIRY_BANDS,
    EXPIRY_WINDOWS_DAYS,
    STATUS_IN_USE,
    CertificateFilters,
)
from certyard.inventory.services import store_path_refusal
from certyard.jobs.models import Job
from handlers.text import visible
from orchestrators.declarations import PropertySpec, PropertyType

_MAX_INTERVAL_MINUTES = 525_600  # a year, as the API allows


# Choice labels are outside text (an agent's name, a store's machine and path): shown
# escaped, as on every page (handlers.text.visible).
class OrchestratorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Orchestrator) -> str:
        return visible(f"{obj.name} ({obj.client_machine})")


class StoreChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: CertificateStore) -> str:
        return visible(f"{obj.store_type.short_name} {obj.client_machine}:{obj.store_path}")


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


# --- Store forms, generated from the store type's declaration ---------------------------
# One field per declared property, named ``<type>__<property>``: a bool is a checkbox, a
# choice a select, an int a number, a secret a password input never filled back in.


def _property_field_name(store_type: CertificateStoreType, spec: PropertySpec) -> str:
    return f"{store_type.short_name}__{spec.name}"


def _property_field(
    spec: PropertySpec, *, label: str, current: Any = None, has_current: bool = False
) -> forms.Field:
    help_text = spec.help
    if not help_text and spec.type in (PropertyType.STRING, PropertyType.INT) and spec.default:
        # A declaration without help still says what an empty field means.
        help_text = f"Default: {spec.default}."
    options: dict[str, Any] = {"required": False, "label": label, "help_text": help_text}
    value = current if has_current else spec.default
    if spec.type is PropertyType.BOOL:
        return forms.BooleanField(initial=bool(value), **options)
    if spec.type is PropertyType.INT:
        return forms.IntegerField(initial=value, **options)
    if spec.type is PropertyType.SECRET:
        return forms.CharField(
            strip=False,
            max_length=MAX_STRING_PROPERTY,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            **{**options, "help_text": " ".join(filter(None, [spec.help, _KEPT_VALUE_HELP]))},
        )
    if spec.type is PropertyType.CHOICE:
        choices = [(choice, choice) for choice in spec.choices]
        if has_current and current not in spec.choices and isinstance(current, str):
            # A value a store-type change no longer allows: offered as it is, so saving the
            # form unchanged says what is wrong instead of silently picking another one.
            choices.append((current, f"{current} (no longer allowed)"))
        if not spec.required or spec.default is None:
            choices.insert(0, ("", "—"))
        return forms.ChoiceField(choices=choices, initial=value, **options)
    return forms.CharField(max_length=MAX_STRING_PROPERTY, initial=value, strip=False, **options)


_KEPT_VALUE_HELP = "Stored encrypted, never shown; leave empty to keep the stored value."


_COMMON_STORE_FIELDS = (
    "store_type",
    "orchestrator",
    "client_machine",
    "store_path",
    "password",
    "clear_password",
    "inventory_interval_minutes",
)
_ENDPOINT_FIELDS = ("endpoint_host", "endpoint_port", "endpoint_sni")


def _endpoint_fields(form: forms.Form) -> None:
    form.fields["endpoint_host"] = forms.CharField(
        max_length=253,
        required=False,
        label="TLS endpoint host",
        help_text="The DNS name or IP address served from this store; after a write the agent "
        "checks it serves the new certificate. Empty: no check.",
    )
    form.fields["endpoint_port"] = forms.IntegerField(
        required=False, min_value=1, max_value=65535, label="TLS endpoint port"
    )
    form.fields["endpoint_sni"] = forms.CharField(
        max_length=253,
        required=False,
        label="TLS server name (SNI)",
        help_text="Empty: the host.",
    )


def _properties_collect(
    form: forms.Form,
    cleaned: dict[str, Any],
    store_type: CertificateStoreType,
    current: dict[str, Any] | None,
) -> dict[str, Any]:
    """The chosen type's property fields as ``properties`` (the others dropped), checked
    with the service's own rules so each error lands beside its field."""
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for spec in specs_of(store_type.properties):
        field_name = _property_field_name(store_type, spec)
        names[spec.name] = field_name
        value = cleaned.get(field_name)
        if value in ("", None) and spec.type is not PropertyType.BOOL:
            continue  # not given: the default, or (a secret) the stored value
        values[spec.name] = value
    _, errors = properties_check(
        specs_of(store_type.properties),
        values,
        current=current,
        store_type_name=store_type.short_name,
    )
    for name, message in errors.items():
        field_name = names.get(name)
        form.add_error(field_name if field_name in form.fields else None, sentence(message))
    return values


def _endpoint_clean(form: forms.Form, cleaned: dict[str, Any]) -> None:
    """The service's endpoint rules, each error beside its field."""
    if any(name in form.errors for name in ("endpoint_host", "endpoint_port", "endpoint_sni")):
        return
    try:
        endpoint_check(
            host=cleaned.get("endpoint_host"),
            port=cleaned.get("endpoint_port"),
            sni=cleaned.get("endpoint_sni"),
        )
    except ServiceError as exc:
        for name, messages in exc.fields.items():
            for message in messages:
                form.add_error(name, sentence(message))


def _property_keys_drop(cleaned: dict[str, Any]) -> None:
    for key in [key for key in cleaned if "__" in key]:
        del cleaned[key]


_STORE_PATH_HELP = (
    "An absolute path on the orchestrator's machine, inside the folders its agent may read "
    "(its store roots, shown on the orchestrator's page)."
)


def _store_path_clean(
    form: forms.Form,
    cleaned: dict[str, Any],
    store_type: CertificateStoreType | None,
    orchestrator: Orchestrator | None,
) -> None:
    """The service's path rule (the agent's own message), beside the path field."""
    path = cleaned.get("store_path")
    if store_type is None or orchestrator is None or path is None:
        return
    problem = store_path_refusal(store_type=store_type, orchestrator=orchestrator, store_path=path)
    if problem:
        form.add_error("store_path", sentence(problem))


class StoreCreateForm(forms.Form):
    """Add a store: the common fields, then every store type's declared properties (only
    the chosen type's are used), then the TLS endpoint."""

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
    store_path = forms.CharField(max_length=1024, help_text=_STORE_PATH_HELP)
    password = _password_field("Stored encrypted; never shown again.")
    inventory_interval_minutes = _interval_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store_types = list(self.fields["store_type"].queryset)
        for store_type in self.store_types:
            for spec in specs_of(store_type.properties):
                # Its group's legend names the type (property_groups).
                self.fields[_property_field_name(store_type, spec)] = _property_field(
                    spec, label=spec.display_name
                )
        _endpoint_fields(self)

    def common_fields(self) -> list[Any]:
        """The bound fields every store has, in order, for the template."""
        return [self[name] for name in _COMMON_STORE_FIELDS if name in self.fields]

    def endpoint_fields(self) -> list[Any]:
        return [self[name] for name in _ENDPOINT_FIELDS]

    def orchestrator_roots(self) -> dict[str, list[str] | None]:
        """Each offered orchestrator's reported store roots (None: not reported), for the
        page's hint beside the path; the check itself is the service's."""
        rows = self.fields["orchestrator"].queryset.values_list("pk", "store_roots")
        return {str(pk): roots for pk, roots in rows}

    def path_hints(self) -> dict[str, str]:
        """Each store type's example path, as its declaration gives it."""
        return {
            store_type.short_name: store_type.store_path_hint for store_type in self.store_types
        }

    def property_groups(self) -> list[tuple[CertificateStoreType, list[Any]]]:
        """Each store type with its bound property fields, for the template."""
        return [
            (
                store_type,
                [
                    self[_property_field_name(store_type, spec)]
                    for spec in specs_of(store_type.properties)
                ],
            )
            for store_type in self.store_types
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        store_type = cleaned.get("store_type")
        _store_path_clean(self, cleaned, store_type, cleaned.get("orchestrator"))
        properties = _properties_collect(self, cleaned, store_type, None) if store_type else {}
        _endpoint_clean(self, cleaned)
        _property_keys_drop(cleaned)
        cleaned["properties"] = properties
        return cleaned


class StoreEditForm(forms.Form):
    """Change a store's path, properties, password, schedule and TLS endpoint (its type,
    orchestrator and machine are fixed: another one is a new store)."""

    store_path = forms.CharField(max_length=1024, help_text=_STORE_PATH_HELP)
    password = _password_field("Leave empty to keep the stored password; it is never shown.")
    clear_password = forms.BooleanField(
        required=False, label="Clear the stored password", help_text="The store has none after."
    )
    inventory_interval_minutes = _interval_field()

    def __init__(self, *args: Any, store: CertificateStore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = store
        stored = store.properties if isinstance(store.properties, dict) else {}
        for spec in specs_of(store.store_type.properties):
            shown = spec.type is not PropertyType.SECRET and spec.name in stored
            self.fields[_property_field_name(store.store_type, spec)] = _property_field(
                spec,
                label=spec.display_name,
                current=stored.get(spec.name) if shown else None,
                has_current=shown,
            )
        _endpoint_fields(self)

    def common_fields(self) -> list[Any]:
        return [self[name] for name in _COMMON_STORE_FIELDS if name in self.fields]

    def endpoint_fields(self) -> list[Any]:
        return [self[name] for name in _ENDPOINT_FIELDS]

    def property_fields(self) -> list[Any]:
        """The store type's property fields, bound, in their declared order."""
        return [
            self[_property_field_name(self.store.store_type, spec)]
            for spec in specs_of(self.store.store_type.properties)
        ]

    @classmethod
    def for_store(cls, store: CertificateStore, data: Any = None) -> "StoreEditForm":
        return cls(
            data,
            store=store,
            initial={
                "store_path": store.store_path,
                "inventory_interval_minutes": store.inventory_interval_minutes,
                "endpoint_host": store.endpoint_host,
                "endpoint_port": store.endpoint_port,
                "endpoint_sni": store.endpoint_sni,
            },
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("clear_password") and cleaned.get("password"):
            self.add_error("password", "Either type a new password or clear it, not both.")
        if cleaned.get("store_path") != self.store.store_path:  # an unchanged one stays
            _store_path_clean(self, cleaned, self.store.store_type, self.store.orchestrator)
        current = self.store.properties if isinstance(self.store.properties, dict) else {}
        properties = _properties_collect(self, cleaned, self.store.store_type, current)
        _endpoint_clean(self, cleaned)
        _property_keys_drop(cleaned)
        cleaned["properties"] = properties
        return cleaned

    def changes(self) -> dict[str, Any]:
        """``store_update``'s keyword arguments: only what the form changed."""
        data = self.cleaned_data
        changes: dict[str, Any] = {
            "store_path": data["store_path"],
            "properties": data["properties"],
            "endpoint_host": data.get("endpoint_host") or "",
            "endpoint_port": data.get("endpoint_port"),
            "endpoint_sni": data.get("endpoint_sni") or "",
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


class EndpointFilterForm(forms.Form):
    host = forms.CharField(required=False, max_length=255, label="Host or server name")
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *TlsEndpoint.Status.choices]
    )
    problem = forms.ChoiceField(
        required=False, choices=[("", "Any"), *ENDPOINT_PROBLEMS.items()], label="Problem"
    )
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
KIND_CA, KIND_END_ENTITY = "ca", "end_entity"
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
            # The dashboard's disjoint windows.
            *((value, f"{value} days left") for value, _, _, _ in EXPIRY_BANDS),
        ],
    )
    status = forms.ChoiceField(
        required=False,
        label="Status",
        choices=[
            ("", "Any"),
            (STATUS_IN_USE, "In use (not revoked or superseded)"),
            *CertificateStatus.choices,
        ],
    )
    kind = forms.ChoiceField(
        required=False,
        label="Kind",
        choices=[("", "Any"), (KIND_END_ENTITY, "End-entity"), (KIND_CA, "CA")],
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
        band = {value: (start, end) for value, _, start, end in EXPIRY_BANDS}.get(expiry)
        kind = data.get("kind") or ""
        return CertificateFilters(
            search=data.get("q") or "",
            expired=True if expiry == EXPIRY_EXPIRED else None,
            expires_within_days=band[1] if band else int(expiry) if expiry.isdigit() else None,
            expires_from_days=band[0] if band else None,
            store_id=str(store.pk) if store else None,
            key_algorithm=data.get("key") or "",
            conformant=False if data.get("nonconformant") else None,
            status=data.get("status") or "",
            is_ca={KIND_CA: True, KIND_END_ENTITY: False}.get(kind),
        )

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1

    @property
    def is_filtered(self) -> bool:
        return any(
            self.cleaned_data.get(name)
            for name in ("q", "expiry", "status", "kind", "store", "key", "nonconformant")
        )


class JobFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *Job.State.choices])
