from django.db import migrations, models

# The store types migration 0002 ships; they cannot be deleted.
BUILTIN_SHORT_NAMES = ["PEM"]


def mark_builtin(apps, schema_editor):
    store_type = apps.get_model("inventory", "CertificateStoreType")
    store_type.objects.filter(short_name__in=BUILTIN_SHORT_NAMES).update(builtin=True)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0006_staging_unlogged_on_postgresql"),
    ]

    operations = [
        migrations.AddField(
            model_name="certificatestoretype",
            name="builtin",
            field=models.BooleanField(
                default=False,
                editable=False,
                help_text="Shipped with Certyard: cannot be deleted.",
            ),
        ),
        migrations.RunPython(mark_builtin, migrations.RunPython.noop),
    ]
