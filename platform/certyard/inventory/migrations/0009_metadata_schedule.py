"""The every-minute metadata schedule, and the new-certificate cursor.

The cursor starts at the highest certificate id already held: the generators' "once for
each new certificate" begins now, and existing certificates are a backfill's work.
"""

from django.db import migrations
from django.db.models import Max

NAME = "certyard: metadata generators (new certificates, stalled backfills)"
FUNC = "certyard.inventory.tasks.metadata_maintenance"


def create(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={"func": FUNC, "schedule_type": "I", "minutes": 1, "repeats": -1},
    )
    highest = apps.get_model("inventory", "Certificate").objects.aggregate(top=Max("id"))["top"]
    apps.get_model("inventory", "MetadataGeneratorCursor").objects.get_or_create(
        pk=1, defaults={"last_certificate_id": highest or 0}
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("inventory", "0008_metadata"), ("django_q", "0018_task_success_index")]
    operations = [migrations.RunPython(create, remove)]
