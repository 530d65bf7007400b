from django.db import migrations


def forwards(apps, schema_editor):
    """PEM, PKCS12, JKS and JCEKS made (or updated) from their declarations, and the
    existing stores' properties migrated: new properties take their defaults, nothing is
    emptied."""
    from certyard.inventory.declarations import store_types_builtin_sync

    store_types_builtin_sync(
        store_type_model=apps.get_model("inventory", "CertificateStoreType"),
        store_model=apps.get_model("inventory", "CertificateStore"),
    )


class Migration(migrations.Migration):
    dependencies = [("inventory", "0011_store_type_declaration_store_endpoint")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
