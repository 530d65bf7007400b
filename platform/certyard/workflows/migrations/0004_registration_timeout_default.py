"""A registration's timeout defaults by kind (HandlerRegistration.save fills it in), and
registration handlers stored above their shared budget are brought within it.

The budget already cut every registration handler's run to what was left of it, so a
timeout above it (the old default, 30 s, against a 10 s budget) never applied: lowering
it to the budget changes no run, and lets the admin form (which refuses more) save them.
"""

from django.conf import settings
from django.db import migrations, models


def registration_timeouts_within_budget(apps, schema_editor):
    registration = apps.get_model("workflows", "HandlerRegistration")
    budget = max(1, int(settings.CERTYARD_REGISTRATION_HANDLERS_SECONDS))
    registration.objects.filter(kind="registration", timeout_seconds__gt=budget).update(
        timeout_seconds=budget
    )


class Migration(migrations.Migration):
    dependencies = [
        ("workflows", "0003_gateway_kind"),
    ]

    operations = [
        migrations.AlterField(
            model_name="handlerregistration",
            name="timeout_seconds",
            field=models.PositiveIntegerField(
                default=None,
                help_text="How long one run may take; left out, the default of its kind.",
            ),
        ),
        migrations.RunPython(registration_timeouts_within_budget, migrations.RunPython.noop),
    ]
