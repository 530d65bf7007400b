"""Input checks for the jobs part of the agent API (contract: orchestrators/protocol.py)."""

from rest_framework import serializers

from orchestrators.protocol import JobOutcome


class StoreSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    store_type = serializers.CharField(source="store_type.short_name")
    client_machine = serializers.CharField()
    store_path = serializers.CharField()


class JobSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    attempt = serializers.IntegerField(source="attempts")
    lease_expires_at = serializers.DateTimeField()
    store = StoreSummarySerializer(allow_null=True)


class InventoryEntrySerializer(serializers.Serializer):
    """Documents an entry's shape; entries are checked one by one by the service."""

    alias = serializers.CharField()
    private_key = serializers.BooleanField(default=False)
    certificates = serializers.ListField(child=serializers.CharField())


class InventorySerializer(serializers.Serializer):
    entries = serializers.ListField(child=serializers.JSONField())


class CompleteSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=[o.value for o in JobOutcome])
    message = serializers.CharField(allow_blank=True, default="", max_length=100_000)
