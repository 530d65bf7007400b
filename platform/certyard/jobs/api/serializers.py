"""Serializers of the jobs part of the people's API."""

from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer
from certyard.jobs.models import Job, JobHistory


def _outcome_field(model: type[Job] | type[JobHistory]) -> serializers.ChoiceField:
    """The outcome, blank ("") until the job or attempt ends. Declared, since DRF drops
    ``allow_blank`` from read-only model fields and the schema would then leave "" out."""
    return serializers.ChoiceField(
        choices=model._meta.get_field("outcome").choices, allow_blank=True, read_only=True
    )


class ReportErrorSerializer(Serializer):
    """A report submission of the attempt that failed."""

    at = serializers.CharField()
    error = serializers.CharField()


class JobHistorySerializer(ModelSerializer):
    outcome = _outcome_field(JobHistory)
    report_errors = ReportErrorSerializer(many=True, read_only=True)

    class Meta:
        model = JobHistory
        fields = [
            "attempt",
            "orchestrator",
            "started_at",
            "finished_at",
            "outcome",
            "message",
            "report_errors",
            "result",
        ]


class JobSerializer(ModelSerializer):
    outcome = _outcome_field(Job)
    store_path = serializers.CharField(source="store.store_path", read_only=True, default=None)
    orchestrator_name = serializers.CharField(source="orchestrator.name", read_only=True)
    source_detail = serializers.CharField(
        read_only=True,
        help_text="Who asked, by source: the user name (admin), the API token's name and "
        "prefix and its user (api), the schedule (schedule), the handler registration's "
        "name (handler); empty when unknown.",
    )
    source_registration = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="The handler registration that asked for the job (source handler), or null.",
    )
    retry_of = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        pk_field=serializers.UUIDField(format="hex_verbose"),
        help_text="The job this one retries or follows, or null.",
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "type",
            "state",
            "outcome",
            "source",
            "source_detail",
            "source_registration",
            "retry_of",
            "store",
            "store_path",
            "orchestrator",
            "orchestrator_name",
            "attempts",
            "max_attempts",
            "available_at",
            "lease_expires_at",
            "message",
            "result",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    history = JobHistorySerializer(many=True, read_only=True)
    retries = serializers.PrimaryKeyRelatedField(
        many=True,
        read_only=True,
        pk_field=serializers.UUIDField(format="hex_verbose"),
        help_text="The jobs that retry or follow this one, oldest first.",
    )

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "payload", "history", "retries"]
