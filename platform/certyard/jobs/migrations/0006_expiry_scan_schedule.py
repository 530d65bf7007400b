from django.db import migrations

NAME = "certyard: expiration scan"
FUNC = "certyard.jobs.tasks.expiry_scan_daily"
# The cluster's default task timeout (300 s) is short for a first scan over a large
# inventory; stay below Q_CLUSTER["retry"] (3,660 s), or a second worker starts it again.
KWARGS = "q_options={'timeout': 1800}"


def create(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={"func": FUNC, "schedule_type": "D", "repeats": -1, "kwargs": KWARGS},
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("jobs", "0005_expiry_notice"), ("django_q", "0018_task_success_index")]
    operations = [migrations.RunPython(create, remove)]
