from django.db import migrations

FILE_PATTERNS = "*.pem,*.crt,*.cer,*.der,*.p7b,*.p7c,*.p12,*.pfx"
PROPERTIES = [
    {"name": "recursive", "type": "bool", "required": False, "default": False},
    {"name": "file_patterns", "type": "string", "required": False, "default": FILE_PATTERNS},
]


def forwards(apps, schema_editor):
    """The built-in PEM store type now reads DER, PKCS#7 and PKCS#12 files too."""
    apps.get_model("inventory", "CertificateStoreType").objects.filter(short_name="PEM").update(
        name="Certificate files (PEM, DER, PKCS#7, PKCS#12)",
        properties=PROPERTIES,
        password_supported=True,
        store_path_hint=(
            "A directory of certificate files (PEM, DER, PKCS#7; PKCS#12 with the store "
            "password), or one bundle file"
        ),
    )


class Migration(migrations.Migration):
    dependencies = [("inventory", "0003_inventory_status_parse_warnings_staging")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
