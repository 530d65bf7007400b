"""The console's PKI and enrollment forms: they check what people type, the services decide
the rest (a CSR is never judged here: a refused one is recorded by the service)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django import forms
from django.core.files.uploadedfile import UploadedFile

# Re-exported: the PKI pages reach every form helper through this module.
from certyard.console.forms import sentence as sentence
from certyard.console.forms import service_error_to_form as service_error_to_form
from certyard.console.metadata_forms import _form_field as metadata_form_field
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.inventory.models import MetadataField
from certyard.pki.crypto import name_value_error
from certyard.pki.models import CertificateAuthority, KeyAlgorithm, RevocationReason

# A CA's PKCS#12, a CSR or a PEM certificate with its chain: a few kilobytes each.
MAX_UPLOAD_BYTES = 64 * 1024
MAX_PEM_CHARACTERS = 64 * 1024
PFX_PASSWORD_MIN = 8
METADATA_PREFIX = "metadata__"


class _KeyTextarea(forms.Textarea):
    """A textarea that never sends its value back to the browser (a private key)."""

    def format_value(self, value: Any) -> None:
        return None


def _password(label: str, *, help_text: str = "", min_length: int | None = None) -> forms.CharField:
    return forms.CharField(
        label=label,
        strip=False,
        min_length=min_length,
        max_length=1024,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


def _new_idempotency_key() -> str:
    return secrets.token_urlsafe(24)


def idempotency_key_field() -> forms.CharField:
    """A hidden random key, new on every rendering of the form: the service answers a
    second submission of the same rendering (a double click, a resent POST) with the
    request the first one made instead of issuing again."""
    return forms.CharField(
        widget=forms.HiddenInput,
        required=False,
        max_length=100,
        initial=_new_idempotency_key,
    )


def idempotency_key_renew(form: forms.Form) -> None:
    """Give a form shown again (with its errors) a new key: its next submission is a new
    request, not the one already recorded (refused) under the old key."""
    if form.is_bound and "idempotency_key" in form.fields:
        data = form.data.copy()
        data[form.add_prefix("idempotency_key")] = _new_idempotency_key()
        form.data = data


def _pem_field(
    label: str, *, required: bool = True, help_text: str = "", rows: int = 8
) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        max_length=MAX_PEM_CHARACTERS,
        help_text=help_text,
        widget=forms.Textarea(attrs={"rows": rows, "spellcheck": "false"}),
    )


def upload_read(upload: UploadedFile | None, *, what: str) -> bytes | None:
    """The bytes of an uploaded file, refusing one over :data:`MAX_UPLOAD_BYTES` unread."""
    if upload is None:
        return None
    if upload.size is not None and upload.size > MAX_UPLOAD_BYTES:
        raise forms.ValidationError(
            f"The file is {upload.size / 1024:,.0f} KB; {what} is at most "
            f"{MAX_UPLOAD_BYTES // 1024} KB."
        )
    data = upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise forms.ValidationError(
            f"The file is larger than {MAX_UPLOAD_BYTES // 1024} KB; {what} is at most "
            f"{MAX_UPLOAD_BYTES // 1024} KB."
        )
    if not data:
        raise forms.ValidationError("The file is empty.")
    return data


def _passwords_match(form: forms.Form, first: str, second: str) -> None:
    cleaned = form.cleaned_data
    if first in cleaned and second in cleaned and cleaned[first] != cleaned[second]:
        form.add_error(second, "The two passwords differ.")


# --- Certificate authorities ----------------------------------------------------------------


def ca_path_length(certificate_pem: str) -> tuple[bool, int | None]:
    """Whether the CA certificate allows sub-CAs, and its path length."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, x509.ExtensionNotFound):
        return False, None
    if not constraints.ca:
        return False, None
    return constraints.path_length is None or constraints.path_length > 0, constraints.path_length


def signing_parents() -> list[CertificateAuthority]:
    """Built-in CAs that may sign another CA: enabled, valid, path length above 0."""
    now = dt.datetime.now(dt.UTC)
    candidates = CertificateAuthority.objects.filter(enabled=True).exclude(not_after__lte=now)
    return [ca for ca in candidates if ca_path_length(ca.certificate_pem)[0]]


class ParentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: CertificateAuthority) -> str:
        return f"{obj.name} ({obj.get_origin_display().lower()}, {obj.key_algorithm})"


class CaCreateForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="How Certyard names it; unique.")
    parent = ParentChoiceField(
        queryset=CertificateAuthority.objects.none(),
        required=False,
        label="Issuer",
        empty_label="None: a new root CA",
        help_text="For an intermediate CA: a built-in CA that may sign CAs (its path length "
        "allows it).",
        error_messages={"invalid_choice": "That CA cannot sign CAs (any more)."},
    )
    common_name = forms.CharField(
        max_length=64, required=False, label="Common name (CN)", help_text="Empty: the name."
    )
    organization = forms.CharField(max_length=64, required=False, label="Organization (O)")
    country = forms.CharField(
        max_length=2, min_length=2, required=False, label="Country (C)", help_text="Two letters."
    )
    key_algorithm = forms.ChoiceField(
        choices=KeyAlgorithm.choices, initial=KeyAlgorithm.EC_P384, label="Key type"
    )
    validity_days = forms.IntegerField(
        min_value=1, max_value=36_500, initial=3650, label="Valid for (days)"
    )
    path_length = forms.IntegerField(
        min_value=0,
        max_value=16,
        required=False,
        label="Path length",
        help_text="How many CAs may follow below it: 0 for a CA that issues only end-entity "
        "certificates; empty for no limit.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parent = self.fields["parent"]
        parent.queryset = CertificateAuthority.objects.filter(  # type: ignore[attr-defined]
            pk__in=[ca.pk for ca in signing_parents()]
        )

    def clean_country(self) -> str:
        country = self.cleaned_data["country"].strip().upper()
        if country and not (country.isascii() and country.isalpha()):
            raise forms.ValidationError("Two letters, like DE or US (ISO 3166).")
        return country

    # Counted in UTF-8 bytes (pki.crypto.NAME_BOUNDS), as cryptography counts them: 40
    # "é" are 40 characters but 80 bytes, over the common name's 64.
    def clean_common_name(self) -> str:
        return _name_value("CN", self.cleaned_data["common_name"])

    def clean_organization(self) -> str:
        return _name_value("O", self.cleaned_data["organization"])


def _name_value(short: str, value: str) -> str:
    if value:
        problem = name_value_error(short, value)
        if problem is not None:
            raise forms.ValidationError(sentence(problem) + ".")
    return value


class CaImportPemForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="How Certyard names it; unique.")
    certificate_pem = _pem_field(
        "CA certificate (PEM)",
        help_text="-----BEGIN CERTIFICATE-----…; more certificates after it are its issuers.",
    )
    private_key_pem = forms.CharField(
        label="Private key (PEM)",
        max_length=MAX_PEM_CHARACTERS,
        strip=False,
        widget=_KeyTextarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="Stored encrypted; never shown again (not even when the form is refused).",
    )
    key_password = forms.CharField(
        label="Key password",
        required=False,
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Only for an encrypted key.",
    )
    chain_pem = _pem_field(
        "Issuer chain (PEM)", required=False, rows=5, help_text="The CAs above it, nearest first."
    )


class CaImportPkcs12Form(forms.Form):
    name = forms.CharField(max_length=200, help_text="How Certyard names it; unique.")
    pkcs12 = forms.FileField(
        label="PKCS#12 file (.p12, .pfx)",
        help_text=f"The CA's certificate, its private key and its issuers; at most "
        f"{MAX_UPLOAD_BYTES // 1024} KB.",
    )
    password = forms.CharField(
        label="File password",
        required=False,
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    def clean_pkcs12(self) -> bytes:
        return upload_read(self.cleaned_data.get("pkcs12"), what="a CA's PKCS#12 file") or b""


# --- Enrollment --------------------------------------------------------------------------------


def required_metadata_names(template: Template) -> list[str]:
    """What the service requires at enrollment: the template's and the fields' own."""
    names = {str(name) for name in template.required_metadata or []}
    names.update(
        MetadataField.objects.filter(required_at_enrollment=True).values_list("name", flat=True)
    )
    return sorted(names)


class _MetadataMixin:
    """One required input per metadata value the template asks for."""

    fields: dict[str, forms.Field]
    cleaned_data: dict[str, Any]

    def add_metadata_fields(self, template: Template) -> None:
        names = required_metadata_names(template)
        known = {field.name: field for field in MetadataField.objects.filter(name__in=names)}
        for name in names:
            field = known.get(name)
            if field is not None:
                form_field = metadata_form_field(field)
                form_field.required = True
                if isinstance(form_field, forms.ChoiceField):
                    form_field.choices = [c for c in form_field.choices if c[0] != ""]
            else:
                form_field = forms.CharField(max_length=1_000, label=name)
            form_field.label = f"{form_field.label} (metadata)"
            self.fields[METADATA_PREFIX + name] = form_field

    def metadata(self) -> dict[str, Any]:
        return {
            name.removeprefix(METADATA_PREFIX): value
            for name, value in self.cleaned_data.items()
            if name.startswith(METADATA_PREFIX)
        }


def csr_text_from_upload(data: bytes) -> str:
    """A CSR file as PEM text: PEM as it is, DER converted (what the service reads)."""
    if data.lstrip().startswith(b"-----"):
        try:
            return data.decode("ascii").replace("\x00", "")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not a PEM or DER CSR.") from None
    try:
        csr = x509.load_der_x509_csr(data)
        return csr.public_bytes(serialization.Encoding.PEM).decode()
    except ValueError:
        # Not DER either: hand the text to the service, which records why it is refused.
        return data.decode("utf-8", errors="replace").replace("\x00", "")


class CsrEnrollForm(_MetadataMixin, forms.Form):
    idempotency_key = idempotency_key_field()
    csr = forms.CharField(
        label="CSR (PEM)",
        required=False,
        max_length=MAX_PEM_CHARACTERS,
        widget=forms.Textarea(
            attrs={
                "rows": 10,
                "spellcheck": "false",
                "placeholder": "-----BEGIN CERTIFICATE REQUEST-----",
            }
        ),
        help_text="Paste it, or upload the file below.",
    )
    csr_file = forms.FileField(
        label="…or a CSR file",
        required=False,
        help_text=f"PEM or DER, at most {MAX_UPLOAD_BYTES // 1024} KB.",
    )

    def __init__(self, *args: Any, template: Template, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_metadata_fields(template)

    def clean_csr_file(self) -> str:
        data = upload_read(self.cleaned_data.get("csr_file"), what="a CSR")
        return csr_text_from_upload(data) if data is not None else ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        typed = (cleaned.get("csr") or "").strip()
        uploaded = (cleaned.get("csr_file") or "").strip()
        if "csr" in self.errors or "csr_file" in self.errors:
            return cleaned
        if typed and uploaded:
            self.add_error("csr", "Paste the CSR or upload it, not both.")
        elif not typed and not uploaded:
            self.add_error("csr", "Paste a CSR or upload its file.")
        cleaned["csr_pem"] = typed or uploaded
        return cleaned


class PfxEnrollForm(_MetadataMixin, forms.Form):
    idempotency_key = idempotency_key_field()
    common_name = forms.CharField(max_length=64, label="Common name (CN)")
    sans = forms.CharField(
        label="Subject alternative names",
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="DNS names, and IP:… addresses if the template allows them; separated by "
        "commas, spaces or lines.",
    )
    key_algorithm = forms.ChoiceField(label="Key type")
    password = _password(
        "PKCS#12 password",
        help_text=f"At least {PFX_PASSWORD_MIN} characters; protects the file.",
        min_length=PFX_PASSWORD_MIN,
    )
    password_confirm = _password("Password again")

    def __init__(self, *args: Any, template: Template, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = [str(value) for value in template.allowed_key_types or []]
        choices = [(value, label) for value, label in KeyAlgorithm.choices if value in allowed]
        field = self.fields["key_algorithm"]
        field.choices = choices  # type: ignore[attr-defined]
        if choices:
            preferred = KeyAlgorithm.EC_P256 if KeyAlgorithm.EC_P256 in allowed else choices[0][0]
            field.initial = preferred
        self.add_metadata_fields(template)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        _passwords_match(self, "password", "password_confirm")
        return cleaned


class DecisionForm(forms.Form):
    comment = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded with the decision.",
    )


class DenyForm(forms.Form):
    comment = forms.CharField(
        label="Reason",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required: say why; the requester sees it.",
        error_messages={"required": "Say why the request is denied."},
    )

    prefix = "deny"


class PfxCollectForm(forms.Form):
    password = _password(
        "PKCS#12 password",
        help_text=f"At least {PFX_PASSWORD_MIN} characters; protects the file.",
        min_length=PFX_PASSWORD_MIN,
    )
    password_confirm = _password("Password again")

    prefix = "collect"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        _passwords_match(self, "password", "password_confirm")
        return cleaned


class RequestFilterForm(forms.Form):
    """The request list's tabs."""

    TABS = (
        ("pending", "Pending approval"),
        ("all", "All"),
        ("issued", "Issued"),
        ("failed", "Failed"),
        ("denied", "Denied"),
    )
    state = forms.ChoiceField(required=False, choices=TABS)
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000)

    STATES = {
        "pending": [EnrollmentRequest.State.PENDING],
        "issued": [EnrollmentRequest.State.ISSUED],
        "failed": [EnrollmentRequest.State.FAILED],
        "denied": [EnrollmentRequest.State.DENIED],
    }

    @property
    def page_number(self) -> int:
        return self.cleaned_data.get("page") or 1


# --- Certificates: revoke and renew ------------------------------------------------------------


def revocation_reason_choices() -> list[tuple[int, str]]:
    return [
        (value, label)
        for value, label in RevocationReason.choices
        if value != RevocationReason.REMOVE_FROM_CRL
    ]


class RevokeForm(forms.Form):
    reason = forms.TypedChoiceField(
        coerce=int, choices=revocation_reason_choices, initial=RevocationReason.UNSPECIFIED
    )
    confirm = forms.BooleanField(
        label="Yes, revoke it: relying parties see it revoked at once; this cannot be undone.",
        error_messages={"required": "Tick the box to confirm the revocation."},
    )

    prefix = "revoke"


class RenewCsrForm(forms.Form):
    idempotency_key = idempotency_key_field()
    csr = forms.CharField(
        label="CSR (PEM)",
        max_length=MAX_PEM_CHARACTERS,
        widget=forms.Textarea(
            attrs={
                "rows": 8,
                "spellcheck": "false",
                "placeholder": "-----BEGIN CERTIFICATE REQUEST-----",
            }
        ),
        help_text="For the same key or a new one; the template it was issued under decides.",
        error_messages={"required": "Paste the CSR for the renewed certificate."},
    )

    prefix = "renew"


class RenewPfxForm(forms.Form):
    idempotency_key = idempotency_key_field()
    password = _password(
        "PKCS#12 password",
        help_text=f"At least {PFX_PASSWORD_MIN} characters; protects the file.",
        min_length=PFX_PASSWORD_MIN,
    )
    password_confirm = _password("Password again")
    reuse_key = forms.BooleanField(
        required=False,
        label="Reuse the archived key",
        help_text="Otherwise the platform makes a new key.",
    )

    prefix = "renew"

    def __init__(self, *args: Any, key_archived: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not key_archived:
            del self.fields["reuse_key"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        _passwords_match(self, "password", "password_confirm")
        return cleaned


class GatewaySyncForm(forms.Form):
    full = forms.BooleanField(
        required=False,
        label="Full",
        help_text="Everything the CA holds, not only what changed since the last sync.",
    )
