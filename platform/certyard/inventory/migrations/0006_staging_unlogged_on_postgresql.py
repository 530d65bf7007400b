from django.db import migrations

TABLE = "inventory_inventorystagedentry"


def unlogged(apps, schema_editor):
    """Staged chunks are scratch: on PostgreSQL they skip the write-ahead log. A crash
    loses only chunks an agent has not committed; it sends its report again."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} SET UNLOGGED")


def logged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} SET LOGGED")


class Migration(migrations.Migration):
    dependencies = [("inventory", "0005_staged_entries_without_constraints")]
    operations = [migrations.RunPython(unlogged, logged)]
