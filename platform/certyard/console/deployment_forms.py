"""The console's forms for store management: delivering, removing, renewing and replacing
certificates, the certificate list's bulk actions, and discovery.

Forms only check shape (a choice among offered ones, a number in range); every rule about
what may go where is the deployment services' (their refusals come back as form errors).
Passwords are ``PasswordInput`` without ``render_value``: a refused form never echoes one.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Q, QuerySet

from certyard.enrollment.models import Template
from certyard.fleet.models import Orchestrator
from certyard.inventory.authorization import MANAGE_ANY_STORE
from certyard.inventory.models import CertificateStore, CertificateStoreType

#: The most stores a multi-select offers; beyond it, the filter reaches the rest.
STORES_OFFERED = 500

# The kinds a discovery candidate can have (the deployment services' list, for labels).
CANDIDATE_KIND_LABELS = {
    "pem": "PEM",
    "der": "DER",
    "pkcs7": "PKCS#7",
    "pkcs12": "PKCS#12",
    "jks": "JKS",
    "jceks": "JCEKS",
    "key_only": "Key only",
    "unknown": "Unknown",
}


def _lines(text: str) -> list[str]:
    """One value per line (commas also separate), blanks dropped, order kept."""
    values: list[str] = []
    for line in text.replace(",", "\n").splitlines():
        value = line.strip()
        if value and value not in values:
            values.append(value)
    return values


class StoreLabelChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: CertificateStore) -> str:
        # The store's own text escaped (its path and machine came from outside).
        return str(obj)


def stores_actor_may_use(actor: Any) -> QuerySet[CertificateStore]:
    """Approved stores whose type can take a certificate and that ``actor`` may act on.

    The rule of ``certyard.inventory.authorization`` (the grant-all permission, the store's
    creator, its groups) as one query rather than one check per store: these are only the
    choices offered; the deployment services check every chosen store again.
    """
    stores = CertificateStore.objects.filter(approved=True, store_type__supports_add=True)
    if not actor.has_perm(MANAGE_ANY_STORE):
        stores = stores.filter(
            Q(created_by_id=actor.pk) | Q(groups__in=actor.groups.values("pk"))
        ).distinct()
    return stores.select_related("store_type").order_by("client_machine", "store_path", "pk")


class _StoreTargetsMixin:
    """Choose stores: a multi-select, or a filter (store type, orchestrator, path contains)."""

    def _targets_init(self, actor: Any) -> None:
        offered = stores_actor_may_use(actor)
        self.fields["stores"].queryset = offered.filter(  # type: ignore[attr-defined]
            pk__in=list(offered.values_list("pk", flat=True)[:STORES_OFFERED])
        )
        types = CertificateStoreType.objects.filter(supports_add=True).order_by("short_name")
        self.fields["filter_store_type"].queryset = types  # type: ignore[attr-defined]
        orchestrators = Orchestrator.objects.order_by("name")
        self.fields["filter_orchestrator"].queryset = orchestrators  # type: ignore[attr-defined]

    def _entry_parameters_init(self) -> None:
        """A field per entry parameter the offered stores' types declare (their union: a
        store whose type does not take a value given is refused by name, by the service)."""
        offered = self.fields["stores"].queryset  # type: ignore[attr-defined]
        types = CertificateStoreType.objects.filter(
            pk__in=offered.values("store_type_id")
        ).order_by("short_name")
        found: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for store_type in types:
            for spec in store_type.entry_parameters or []:
                if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                    found.setdefault(spec["name"], (spec, []))[1].append(store_type.short_name)
        self.entry_parameter_names: list[str] = []
        for name, (spec, type_names) in sorted(found.items()):
            field = _entry_parameter_field(spec, type_names)
            if field is not None:
                self.fields[ENTRY_PREFIX + name] = field  # type: ignore[attr-defined]
                self.entry_parameter_names.append(name)

    def entry_parameters(self) -> dict[str, Any] | None:
        """The entry parameters given (empty ones left out: the type's default applies)."""
        data = self.cleaned_data  # type: ignore[attr-defined]
        given = {}
        for name in self.entry_parameter_names:
            value = data.get(ENTRY_PREFIX + name)
            if value not in (None, "", False):
                given[name] = value
        return given or None

    def store_filter(self) -> dict[str, str]:
        """The filter for ``stores_matching`` (empty: none given)."""
        data = self.cleaned_data  # type: ignore[attr-defined]
        found: dict[str, str] = {}
        if data.get("filter_store_type"):
            found["store_type"] = data["filter_store_type"].short_name
        if data.get("filter_orchestrator"):
            found["orchestrator"] = str(data["filter_orchestrator"].pk)
        if data.get("filter_path_contains"):
            found["path_contains"] = data["filter_path_contains"]
        return found

    def _targets_clean(self) -> None:
        data = self.cleaned_data  # type: ignore[attr-defined]
        if data.get("stores") and self.store_filter():
            self.add_error(  # type: ignore[attr-defined]
                "stores", "Choose stores or give a filter, not both."
            )
        elif not data.get("stores") and not self.store_filter():
            self.add_error(  # type: ignore[attr-defined]
                "stores", "Choose at least one store, or give a filter that selects stores."
            )


ENTRY_PREFIX = "entry__"


def _entry_parameter_field(spec: dict[str, Any], type_names: list[str]) -> forms.Field | None:
    """A form field for one declared entry parameter (the declaration's wire form)."""
    label = f"{spec.get('display_name') or spec['name']} ({', '.join(type_names)})"
    help_text = str(spec.get("help") or "")
    kind = spec.get("type", "string")
    if kind == "bool":
        return forms.BooleanField(required=False, label=label, help_text=help_text)
    if kind == "int":
        return forms.IntegerField(required=False, label=label, help_text=help_text)
    if kind == "choice":
        choices = [("", "Default")] + [(str(c), str(c)) for c in spec.get("choices") or []]
        return forms.ChoiceField(required=False, label=label, help_text=help_text, choices=choices)
    if kind == "secret":
        return forms.CharField(
            required=False,
            max_length=4096,
            strip=False,
            label=label,
            help_text=help_text,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        )
    if kind == "string":
        return forms.CharField(required=False, max_length=4096, label=label, help_text=help_text)
    return None


def _target_fields() -> dict[str, forms.Field]:
    return {
        "stores": StoreLabelChoiceField(
            queryset=CertificateStore.objects.none(),
            required=False,
            label="Stores",
            help_text="The stores you may act on whose type can take a certificate.",
            widget=forms.SelectMultiple(attrs={"size": 8}),
        ),
        "filter_store_type": forms.ModelChoiceField(
            queryset=CertificateStoreType.objects.none(),
            required=False,
            to_field_name="short_name",
            label="or every store of type",
            empty_label="Any type",
        ),
        "filter_orchestrator": forms.ModelChoiceField(
            queryset=Orchestrator.objects.none(),
            required=False,
            label="on orchestrator",
            empty_label="Any orchestrator",
        ),
        "filter_path_contains": forms.CharField(
            required=False, max_length=1024, label="whose path contains", strip=True
        ),
    }


def _add_option_fields() -> dict[str, forms.Field]:
    return {
        "alias": forms.CharField(
            required=False,
            max_length=512,
            label="Alias",
            help_text="Empty: the store type's default alias.",
        ),
        "overwrite": forms.BooleanField(
            required=False, label="Overwrite an entry already at that alias"
        ),
        "include_private_key": forms.BooleanField(
            required=False,
            initial=True,
            label="Include the private key (where the platform holds it)",
        ),
    }


class DeployForm(_StoreTargetsMixin, forms.Form):
    """Add one certificate to stores."""

    prefix = "deploy"

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields.update(_target_fields())
        self.fields.update(_add_option_fields())
        self._targets_init(actor)
        self._entry_parameters_init()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self._targets_clean()
        return data


class UndeployForm(forms.Form):
    """Remove one certificate from some of its locations' stores, or from all of them."""

    prefix = "undeploy"

    everywhere = forms.BooleanField(required=False, label="From every location")
    stores = forms.ModelMultipleChoiceField(
        queryset=CertificateStore.objects.none(), required=False, label="From the stores"
    )

    def __init__(self, *args: Any, location_stores: QuerySet[CertificateStore], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["stores"].queryset = location_stores

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("everywhere") and not data.get("stores"):
            self.add_error("stores", "Choose a location to remove it from, or every location.")
        return data


def _template_field() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        queryset=Template.objects.order_by("name"),
        to_field_name="name",
        label="Template",
        empty_label="Choose a template",
        help_text="The subject and SANs carry over; the template's rules check them.",
    )


class RenewReplaceForm(forms.Form):
    """Renew one certificate under a template and replace it in every location."""

    prefix = "renew_replace"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["template"] = _template_field()


class BulkActionForm(_StoreTargetsMixin, forms.Form):
    """The certificate list's bulk action: on the selected rows, or every certificate that
    matches the list's filter (``query``, the list's own query string)."""

    ACTION_ADD = "add"
    ACTION_RENEW = "renew_replace"
    ACTION_REMOVE = "remove"
    SCOPE_SELECTED = "selected"
    SCOPE_FILTER = "filter"
    #: More than this many certificates is refused: each is its own batch of jobs.
    MAX_CERTIFICATES = 1000

    action = forms.ChoiceField(
        choices=[
            (ACTION_ADD, "Add to stores"),
            (ACTION_RENEW, "Renew and replace"),
            (ACTION_REMOVE, "Remove from all locations"),
        ],
        label="Action",
    )
    scope = forms.ChoiceField(
        choices=[
            (SCOPE_SELECTED, "The selected certificates"),
            (SCOPE_FILTER, "Every certificate matching the filter"),
        ],
        initial=SCOPE_SELECTED,
        label="On",
        widget=forms.RadioSelect,
    )
    selected = forms.TypedMultipleChoiceField(
        required=False, coerce=int, label="Certificates", widget=forms.MultipleHiddenInput
    )
    query = forms.CharField(required=False, max_length=4000, widget=forms.HiddenInput)
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields.update(_target_fields())
        self.fields.update(_add_option_fields())
        self.fields["template"] = _template_field()
        self.fields["template"].required = False
        self._targets_init(actor)
        self._entry_parameters_init()
        # Any integer is offered: which ids exist and may be acted on is the services' call.
        raw = self.data.getlist(self.add_prefix("selected")) if self.is_bound else []
        self.fields["selected"].choices = [(value, value) for value in raw if value.isdigit()]

    def add_option_fields(self) -> list[forms.BoundField]:
        """The options of "add to stores", in the order the confirmation asks them."""
        names = [
            "stores",
            "filter_store_type",
            "filter_orchestrator",
            "filter_path_contains",
            "alias",
            "overwrite",
            "include_private_key",
            *(ENTRY_PREFIX + name for name in self.entry_parameter_names),
        ]
        return [self[name] for name in names]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("scope") == self.SCOPE_SELECTED and not data.get("selected"):
            self.add_error("selected", "Select at least one certificate on the list.")
        # Step one (from the list) only counts; the options are asked on the next page.
        if not data.get("confirmed"):
            return data
        if data.get("action") == self.ACTION_ADD:
            self._targets_clean()
        if data.get("action") == self.ACTION_RENEW and not data.get("template"):
            self.add_error("template", "Choose the template to renew under.")
        return data


class DiscoveryForm(forms.Form):
    """What a discovery job searches on the agent's machine (always within its roots)."""

    directories = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Directories",
        help_text="Absolute paths, one a line; the agent searches only within its roots.",
    )
    file_patterns = forms.CharField(
        required=False,
        label="File-name patterns",
        help_text="Such as *.pem, *.p12 (comma or line separated); empty: every file.",
    )
    ignored_directories = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Ignored directories",
        help_text="Names (such as .git) or absolute paths, one a line.",
    )
    follow_links = forms.BooleanField(required=False, label="Follow symbolic links")
    max_depth = forms.IntegerField(min_value=0, max_value=64, initial=8, label="Depth")

    def request_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "directories": _lines(data["directories"]),
            "file_patterns": _lines(data.get("file_patterns") or ""),
            "ignored_directories": _lines(data.get("ignored_directories") or ""),
            "follow_links": bool(data.get("follow_links")),
            "max_depth": data["max_depth"],
        }


def _store_type_choices() -> list[tuple[str, str]]:
    return [
        ("", "The detected type"),
        *(
            (t.short_name, f"{t.short_name} — {t.name}")
            for t in CertificateStoreType.objects.order_by("short_name")
        ),
    ]


class CandidateApproveForm(forms.Form):
    """Approve one discovery candidate into a store."""

    store_type = forms.ChoiceField(required=False, label="Store type")
    password = forms.CharField(
        required=False,
        max_length=1024,
        strip=False,
        label="Store password",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["store_type"].choices = _store_type_choices()


class KindApproveForm(forms.Form):
    """Approve every new candidate of a kind (one password for all)."""

    kind = forms.ChoiceField(choices=list(CANDIDATE_KIND_LABELS.items()), label="Kind")
    password = forms.CharField(
        required=False,
        max_length=1024,
        strip=False,
        label="Store password",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
