from django.db import migrations

SCHEDULE_NAME = "certyard: job schedules and leases"


def forwards(apps, schema_editor):
    """The maintenance task and the job permissions follow the models into the jobs app."""
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).update(
        func="certyard.jobs.tasks.maintenance"
    )
    content_type = apps.get_model("contenttypes", "ContentType")
    for model in ("job", "jobhistory"):
        if not content_type.objects.filter(app_label="jobs", model=model).exists():
            content_type.objects.filter(app_label="fleet", model=model).update(app_label="jobs")


def backwards(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).update(
        func="certyard.fleet.tasks.maintenance"
    )
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="jobs", model__in=["job", "jobhistory"]).update(
        app_label="fleet"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("fleet", "0003_maintenance_schedule"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
