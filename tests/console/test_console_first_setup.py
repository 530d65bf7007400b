"""First setup in the console: templates and metadata fields made without Django admin,
generators that create the fields they fill, and extension descriptions shown rendered."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from certyard.enrollment.models import Template
from certyard.inventory.metadata import metadata_field_create, metadata_values_set
from certyard.inventory.metadata.generators import metadata_backfill_run, metadata_backfill_start
from certyard.inventory.models import Certificate, CertificateMetadata, MetadataField
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority
from certyard.workflows.docstrings import docstring_html, docstring_summary
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save
from handlers.builtin.metadata import CryptoStrength
from handlers.parameters import ParameterError
from tests.console.conftest import Inventory

pytestmark = pytest.mark.django_db

Field = MetadataField.Type
TEMPLATES = reverse("console:enrollment-template-list")
TEMPLATE_ADD = reverse("console:enrollment-template-create")
FIELD_ADD = reverse("console:metadata-field-add")
CRYPTO_FIELDS = {
    "key_strength": Field.STRING,
    "signature_hash": Field.STRING,
    "validity_days": Field.INTEGER,
    "strength": Field.STRING,
    "quantum_vulnerable": Field.BOOLEAN,
}


def _errors(html: str) -> list[str]:
    return re.findall(r'<p class="field-error" role="alert">(.*?)</p>', html)


def _granted(user: User, *codenames: str) -> Client:
    for codename in codenames:
        app, name = codename.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=name)
        )
    client = Client()
    client.force_login(User.objects.get(pk=user.pk))
    return client


@pytest.fixture
def root_ca() -> CertificateAuthority:
    return pki_services.ca_create(
        name="Setup Root", key_algorithm="EC-P256", validity_days=365, path_length=1
    )


def _template_form(issuer: CertificateAuthority, **overrides: str) -> dict[str, str]:
    data = {
        "name": "web",
        "description": "TLS servers",
        "enabled": "on",
        "ca": str(issuer.pk),
        "gateway": "",
        "product_id": "",
        "product_parameters": "",
        "validity_days": "90",
        "key_usage": "digital_signature",
        "extended_key_usage": "server_auth",
        "allowed_key_types": "EC-P256\nRSA-2048",
        "allowed_domains": "example.test",
        "san_pattern": "",
        "max_sans": "10",
        "subject_attributes": "",
        "required_metadata": "",
    }
    data.update(overrides)
    return data


# --- Templates ---------------------------------------------------------------------------


def test_the_template_list_has_an_empty_state_that_leads_to_the_form(admin_web: Client) -> None:
    page = admin_web.get(TEMPLATES).content.decode()
    assert 'data-testid="no-templates"' in page
    assert f'href="{TEMPLATE_ADD}"' in page
    assert "admin/enrollment/template" not in page


def test_a_template_is_created_and_edited_in_the_console(
    admin_web: Client, root_ca: CertificateAuthority
) -> None:
    form = admin_web.get(TEMPLATE_ADD)
    assert form.status_code == 200 and 'data-testid="template-form"' in form.content.decode()
    created = admin_web.post(TEMPLATE_ADD, _template_form(root_ca), follow=True)
    assert created.redirect_chain[-1][0] == TEMPLATES
    template = Template.objects.get(name="web")
    assert template.ca == root_ca
    assert template.allowed_key_types == ["EC-P256", "RSA-2048"]
    assert template.allowed_domains == ["example.test"]
    assert template.product_parameters == {}
    page = created.content.decode()
    assert "Template web created." in page
    edit_url = reverse("console:enrollment-template-edit", args=[template.pk])
    assert f'href="{edit_url}"' in page and "90 days" in page

    edited = admin_web.post(edit_url, _template_form(root_ca, validity_days="30"))
    assert edited.status_code == 302
    template.refresh_from_db()
    assert template.validity_days == 30


def test_a_bad_template_is_refused_beside_its_fields_and_nothing_is_saved(
    admin_web: Client, root_ca: CertificateAuthority
) -> None:
    answer = admin_web.post(
        TEMPLATE_ADD,
        _template_form(
            root_ca,
            validity_days="9999",
            allowed_key_types="EC-P256\nDSA-1024",
            required_metadata="no_such_field",
        ),
    )
    assert answer.status_code == 200
    errors = " ".join(_errors(answer.content.decode()))
    assert "between 1 and 3,650 days" in errors
    assert "DSA-1024" in errors
    assert "No metadata field named: no_such_field" in errors
    assert not Template.objects.exists()


def test_the_template_form_offers_no_identity_ca_and_refuses_one(
    admin_web: Client, root_ca: CertificateAuthority
) -> None:
    identity = pki_services.ca_create(name="Identities", validity_days=365, path_length=0)
    CertificateAuthority.objects.filter(pk=identity.pk).update(
        purpose=CertificateAuthority.Purpose.ORCHESTRATORS
    )
    page = admin_web.get(TEMPLATE_ADD).content.decode()
    assert f'value="{root_ca.pk}"' in page
    assert f'value="{identity.pk}"' not in page
    answer = admin_web.post(TEMPLATE_ADD, _template_form(root_ca, ca=str(identity.pk)))
    assert answer.status_code == 200 and not Template.objects.exists()


def test_templates_need_the_add_and_change_permissions(
    plain_user: User, root_ca: CertificateAuthority
) -> None:
    viewer = _granted(plain_user, "enrollment.view_template")
    assert viewer.get(TEMPLATES).status_code == 200
    assert f'href="{TEMPLATE_ADD}"' not in viewer.get(TEMPLATES).content.decode()
    assert viewer.get(TEMPLATE_ADD).status_code == 403
    assert viewer.post(TEMPLATE_ADD, _template_form(root_ca)).status_code == 403
    template = Template.objects.create(name="t", ca=root_ca)
    edit_url = reverse("console:enrollment-template-edit", args=[template.pk])
    assert viewer.post(edit_url, _template_form(root_ca)).status_code == 403
    assert not Template.objects.filter(name="web").exists()


# --- Metadata fields ---------------------------------------------------------------------


def test_a_metadata_field_is_created_and_edited_in_the_console(admin_web: Client) -> None:
    overview = admin_web.get(reverse("console:metadata")).content.decode()
    assert f'href="{FIELD_ADD}"' in overview and "admin/inventory/metadatafield" not in overview
    created = admin_web.post(
        FIELD_ADD,
        {
            "name": "tier",
            "label": "Tier",
            "type": "choice",
            "choices": "gold\nsilver\n",
            "pattern": "",
            "description": "Service tier",
            "order": "10",
        },
        follow=True,
    )
    assert created.redirect_chain[-1][0] == reverse("console:metadata")
    field = MetadataField.objects.get(name="tier")
    assert (field.type, field.choices, field.label) == (Field.CHOICE, ["gold", "silver"], "Tier")
    edit_url = reverse("console:metadata-field-edit", args=[field.pk])
    assert f'href="{edit_url}"' in created.content.decode()
    saved = admin_web.post(
        edit_url,
        {"label": "Service tier", "type": "choice", "choices": "gold\nsilver\nbronze", "order": 5},
    )
    assert saved.status_code == 302
    field.refresh_from_db()
    assert field.choices == ["gold", "silver", "bronze"] and field.label == "Service tier"


def test_a_bad_metadata_field_is_refused_beside_its_fields(admin_web: Client) -> None:
    answer = admin_web.post(
        FIELD_ADD,
        {"name": "9lives", "type": "string", "choices": "a", "pattern": "([", "order": "1"},
    )
    assert answer.status_code == 200
    errors = " ".join(_errors(answer.content.decode()))
    assert "a letter, then letters" in errors
    assert "not a valid regular expression" in errors
    assert "only a choice field has choices" in errors
    assert not MetadataField.objects.exists()


def test_a_field_with_values_keeps_its_type(admin_web: Client, inventory: Inventory) -> None:
    field = metadata_field_create(name="owner", type=Field.STRING)
    certificate = inventory.certificate("month.example.test")
    metadata_values_set(certificates=[certificate], values={"owner": "alice"}, source="x")
    answer = admin_web.post(
        reverse("console:metadata-field-edit", args=[field.pk]),
        {"type": "integer", "order": "100"},
    )
    assert answer.status_code == 200
    assert "its type cannot change" in " ".join(_errors(answer.content.decode()))
    field.refresh_from_db()
    assert field.type == Field.STRING


def test_metadata_fields_need_the_add_and_change_permissions(plain_user: User) -> None:
    viewer = _granted(plain_user, "inventory.view_metadatafield")
    assert viewer.get(FIELD_ADD).status_code == 403
    assert viewer.post(FIELD_ADD, {"name": "x", "type": "string", "order": 1}).status_code == 403
    assert not MetadataField.objects.exists()


# --- Generators declare their fields -----------------------------------------------------


def test_registering_crypto_strength_creates_its_five_fields_and_a_backfill_fills_them(
    admin_web: Client, inventory: Inventory
) -> None:
    assert not MetadataField.objects.exists()
    registration_save(
        registration=HandlerRegistration(name="crypto", handler="certyard.crypto_strength"),
        values={},
    )
    fields = {field.name: field.type for field in MetadataField.objects.all()}
    assert fields == CRYPTO_FIELDS
    # Registering again (or another registration of it) changes nothing.
    registration_save(
        registration=HandlerRegistration(name="crypto 2", handler="certyard.crypto_strength"),
        values={},
    )
    assert MetadataField.objects.count() == 5

    backfill = metadata_backfill_start(actor=None)
    metadata_backfill_run(backfill.pk)
    certificates = Certificate.objects.count()
    for name in CRYPTO_FIELDS:
        assert CertificateMetadata.objects.filter(field__name=name).count() == certificates, name
    leaf = inventory.certificate("month.example.test")
    assert CertificateMetadata.objects.get(certificate=leaf, field__name="strength").value in {
        "weak",
        "acceptable",
        "strong",
    }
    page = admin_web.get(reverse("console:metadata")).content.decode()
    row = re.search(r'data-testid="metadata-generator" data-name="crypto">(.*?)</tr>', page, re.S)
    assert row and "key_strength" in row.group(1) and "generator-fields-missing" not in page
    # Its description is rendered, never raw reStructuredText.
    assert "<code>key_strength</code>" in row.group(1) and "``" not in row.group(1)


def test_missing_generator_fields_are_created_from_the_metadata_page(
    admin_web: Client, plain_user: User
) -> None:
    """A generator registered before generators declared their fields (or whose fields
    were deleted since): the Metadata page names what is missing and offers to create it."""
    registration = registration_save(
        registration=HandlerRegistration(name="crypto", handler="certyard.crypto_strength"),
        values={},
    )
    MetadataField.objects.filter(name__in=["strength", "validity_days"]).delete()
    page = admin_web.get(reverse("console:metadata")).content.decode()
    assert "Missing: validity_days, strength." in page or "Missing: strength" in page
    assert 'data-action="generator-fields-create"' in page
    url = reverse("console:metadata-generator-fields-create", args=[registration.pk])

    # Without the add-field permission: no button, and the POST is refused.
    watcher = _granted(plain_user, "inventory.view_metadatafield")
    assert (
        'data-action="generator-fields-create"'
        not in watcher.get(reverse("console:metadata")).content.decode()
    )
    assert watcher.post(url).status_code == 403
    assert MetadataField.objects.count() == 3

    answer = admin_web.post(url, follow=True)
    assert answer.status_code == 200
    assert {field.name: field.type for field in MetadataField.objects.all()} == CRYPTO_FIELDS
    text = answer.content.decode()
    assert "Created for crypto:" in text and "generator-fields-missing" not in text
    # Again: nothing to do, said so.
    again = admin_web.post(url, follow=True).content.decode()
    assert "every field it fills exists already" in again


def test_a_prefix_names_the_fields_it_creates() -> None:
    registration_save(
        registration=HandlerRegistration(name="crypto", handler="certyard.crypto_strength"),
        values={"prefix": "crypto_"},
    )
    assert set(MetadataField.objects.values_list("name", flat=True)) == {
        f"crypto_{name}" for name in CRYPTO_FIELDS
    }


def test_an_existing_field_of_another_type_is_a_clear_error_and_nothing_is_saved() -> None:
    metadata_field_create(name="quantum_vulnerable", type=Field.STRING)
    metadata_field_create(name="strength", type=Field.CHOICE, choices=["weak", "strong"])
    with pytest.raises(Exception) as raised:
        registration_save(
            registration=HandlerRegistration(name="crypto", handler="certyard.crypto_strength"),
            values={},
        )
    message = getattr(raised.value, "message", str(raised.value))
    assert "quantum_vulnerable" in message and "Text (one line)" in message
    assert not isinstance(raised.value, ParameterError)
    assert not HandlerRegistration.objects.exists()
    # Untouched, and none of the other four was created.
    assert MetadataField.objects.get(name="quantum_vulnerable").type == Field.STRING
    assert set(MetadataField.objects.values_list("name", flat=True)) == {
        "quantum_vulnerable",
        "strength",
    }


def test_the_admin_form_shows_the_conflict_and_saves_nothing(admin_web: Client) -> None:
    metadata_field_create(name="validity_days", type=Field.BOOLEAN)
    add = reverse("admin:workflows_handlerregistration_add") + "?handler=certyard.crypto_strength"
    page = admin_web.get(add).content.decode()
    # The class's description, rendered.
    doc = re.search(r'data-testid="handler-doc">(.*?)</div>', page, re.S).group(1)
    assert "<li><code>key_strength</code>" in doc and "``" not in doc
    answer = admin_web.post(
        add, {"name": "crypto", "order": "100", "timeout_seconds": "30", "prefix": ""}
    )
    assert answer.status_code == 200
    assert "validity_days" in answer.content.decode() and "Yes / no" in answer.content.decode()
    assert not HandlerRegistration.objects.exists()


def test_crypto_strength_declares_five_fields_after_its_prefix() -> None:
    names = [field.name for field in CryptoStrength.declared_fields({"prefix": "c_"})]
    assert names == [f"c_{name}" for name in CRYPTO_FIELDS]
    assert [field.name for field in CryptoStrength.declared_fields({})] == list(CRYPTO_FIELDS)


# --- Descriptions and the admin's look ---------------------------------------------------


def test_descriptions_are_rendered_without_restructuredtext_and_escaped() -> None:
    doc = """Sends :class:`~handlers.base.Thing` and ``code`` with **bold**.

    - one `item`
    - two :func:`pkg.fn`

    1. first
    2. second

    Example::

        <b>kept as text</b>
    """
    rendered = docstring_html(doc)
    assert "<code>Thing</code>" in rendered and "<code>pkg.fn</code>" in rendered
    assert "<strong>bold</strong>" in rendered
    assert "<ul><li>one <code>item</code></li><li>two <code>pkg.fn</code></li></ul>" in rendered
    assert "<ol><li>first</li><li>second</li></ol>" in rendered
    assert "<pre>&lt;b&gt;kept as text&lt;/b&gt;</pre>" in rendered
    assert "``" not in rendered and ":class:" not in rendered and "<b>" not in rendered
    assert docstring_summary("Uses ``x`` and :class:`~a.B`.\n\nMore.") == "Uses x and B."
    assert "<script>" not in docstring_html("<script>alert(1)</script> `<i>`")


def test_django_admin_has_the_consoles_look_and_a_way_back(admin_web: Client) -> None:
    page = admin_web.get(reverse("admin:index")).content.decode()
    assert "certyard/admin.css" in page
    assert 'data-testid="admin-back-to-console"' in page
    assert f'href="{reverse("console:dashboard")}"' in page
    assert "<title>" in page and "Certyard admin" in page
    assert "Django administration" not in page
    assert "style=" not in re.sub(r"<script.*?</script>", "", page, flags=re.S).split("<body")[0]
