"""Job provenance: who asked (``source_detail``, ``source_registration``) and what a job
retries (``retry_of``). Existing jobs keep every row; those a person asked for get
their name as the detail."""

import django.db.models.deletion
from django.db import migrations, models


def details_backfill(apps, schema_editor):
    Job = apps.get_model("jobs", "Job")
    jobs = Job.objects.filter(requested_by__isnull=False, source_detail="").select_related(
        "requested_by"
    )
    for job in jobs.iterator():
        name = getattr(job.requested_by, "username", "") or ""
        Job.objects.filter(pk=job.pk).update(source_detail=str(name)[:200])


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0008_history_result"),
        ("workflows", "0003_gateway_kind"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="retry_of",
            field=models.ForeignKey(
                blank=True,
                help_text="The job this one retries or follows.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="retries",
                to="jobs.job",
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="source_detail",
            field=models.CharField(
                blank=True,
                help_text="Who asked, by source: the user's name (admin), the API token's "
                "name and prefix and its user (API), the django-q2 schedule (schedule), or "
                "the handler registration's name (handler).",
                max_length=200,
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="source_registration",
            field=models.ForeignKey(
                blank=True,
                help_text="The handler registration whose run asked for the job (source handler).",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="jobs_started",
                to="workflows.handlerregistration",
            ),
        ),
        migrations.RunPython(details_backfill, migrations.RunPython.noop, elidable=True),
    ]
