from django.db import migrations

NAME = "certyard: CRL refresh"
FUNC = "certyard.pki.tasks.crls_refresh_hourly"


def create(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME, defaults={"func": FUNC, "schedule_type": "H", "repeats": -1}
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("pki", "0002_issuing_cas"), ("django_q", "0018_task_success_index")]
    operations = [migrations.RunPython(create, remove)]
