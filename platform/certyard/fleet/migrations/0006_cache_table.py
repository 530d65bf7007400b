"""The shared cache's table (settings.CACHES, the database backend): `migrate` is the only
setup step, so it comes here rather than from a separate `createcachetable`.

Created on every database, Redis configured or not, so switching back to the database
cache needs nothing. The rate limits of the agent API (fleet's endpoints) are its users.
"""

from django.core.management.commands.createcachetable import Command as CreateCacheTable
from django.db import migrations

# Frozen here: settings.CACHE_TABLE may change, this migration may not.
TABLE = "certyard_cache"


def create_cache_table(apps, schema_editor):
    command = CreateCacheTable()
    command.verbosity = 0
    # Django's own definition of the table (key, value, expires), skipped if it exists.
    command.create_table(schema_editor.connection.alias, TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    quoted = schema_editor.connection.ops.quote_name(TABLE)
    schema_editor.execute(f"DROP TABLE IF EXISTS {quoted}")


class Migration(migrations.Migration):

    dependencies = [
        ('fleet', '0005_jobs_move_to_jobs_app'),
    ]

    operations = [
        migrations.RunPython(create_cache_table, drop_cache_table),
    ]
