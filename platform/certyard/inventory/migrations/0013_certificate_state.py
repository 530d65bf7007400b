"""A certificate's state beyond its dates (issue 17): revoked, with its reason, and
superseded by the certificate that renewed it. enrollment 0007 backfills both."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0012_builtin_store_types_declared"),
    ]

    operations = [
        migrations.AddField(
            model_name="certificate",
            name="revocation_reason",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The RFC 5280 reason name, e.g. keyCompromise; empty if not revoked.",
                max_length=40,
            ),
        ),
        migrations.AddField(
            model_name="certificate",
            name="revoked_at",
            field=models.DateTimeField(
                blank=True,
                db_index=True,
                help_text="When its CA revoked it; empty if not.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="certificate",
            name="superseded_by",
            field=models.ForeignKey(
                blank=True,
                help_text="The certificate that renewed it.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="supersedes",
                to="inventory.certificate",
            ),
        ),
    ]
