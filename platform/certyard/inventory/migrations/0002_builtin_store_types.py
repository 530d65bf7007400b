from django.db import migrations

BUILTIN_STORE_TYPES = [
    {
        "short_name": "PEM",
        "name": "PEM files",
        "supports_inventory": True,
        "private_key": "optional",
        "custom_alias": "forbidden",
        "store_path_hint": "A directory of .pem/.crt/.cer files, or one PEM bundle file",
        "properties": [
            {"name": "recursive", "type": "bool", "required": False, "default": False}
        ],
    },
]


def create(apps, schema_editor):
    store_type = apps.get_model("inventory", "CertificateStoreType")
    for fields in BUILTIN_STORE_TYPES:
        store_type.objects.update_or_create(
            short_name=fields["short_name"],
            defaults={k: v for k, v in fields.items() if k != "short_name"},
        )


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
