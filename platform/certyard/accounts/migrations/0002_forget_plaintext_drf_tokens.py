"""Old DRF tokens (``rest_framework.authtoken``) were kept in clear: forget them.

A database made before people's API tokens moved to django-rest-knox has a table
``authtoken_token`` with each token's value as its key. Its rows are deleted (on SQLite
with ``secure_delete``, so the freed pages are overwritten, not just unlinked), then the
table is dropped; with it go Django's record of that app's migrations and the admin's
log entries about those tokens (whose object id was the value). Old tokens stop working:
people create new ones in the console. A new database has none of this: nothing happens.
"""

from django.db import migrations

OLD_TABLE = "authtoken_token"


def forget_plaintext_drf_tokens(apps, schema_editor):
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    tables = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        secure_delete = None
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA secure_delete")
            secure_delete = cursor.fetchone()[0]
            cursor.execute("PRAGMA secure_delete = ON")
        try:
            if OLD_TABLE in tables:
                cursor.execute(f"DELETE FROM {quote(OLD_TABLE)}")  # noqa: S608
            if {"django_admin_log", "django_content_type"} <= tables:
                cursor.execute(
                    "DELETE FROM django_admin_log WHERE content_type_id IN "
                    "(SELECT id FROM django_content_type WHERE app_label = %s)",
                    ["authtoken"],
                )
            if OLD_TABLE in tables:
                # DROP TABLE ... (CASCADE on PostgreSQL): the table's files go with it.
                schema_editor.execute(schema_editor.sql_delete_table % {"table": quote(OLD_TABLE)})
                cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])
        finally:
            if secure_delete is not None:
                cursor.execute(f"PRAGMA secure_delete = {int(secure_delete)}")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        # The admin's log table exists before its rows about old tokens are deleted.
        ("admin", "0001_initial"),
        ("contenttypes", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(
            forget_plaintext_drf_tokens, migrations.RunPython.noop, elidable=False
        ),
    ]
