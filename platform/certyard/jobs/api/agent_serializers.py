"""Input checks for the jobs part of the agent API (contract: orchestrators/protocol.py)."""

import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from certyard.api.serializers import Serializer
from orchestrators.protocol import JobOutcome

# The agent's result of a job, as stored on the job: bounded, so a report cannot bloat rows.
RESULT_MAX_BYTES = 64 * 1024


class StoreSummarySerializer(Serializer):
    id = serializers.UUIDField()
    store_type = serializers.CharField(source="store_type.short_name")
    client_machine = serializers.CharField()
    store_path = serializers.CharField()


class JobSummarySerializer(Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    attempt = serializers.IntegerField(source="attempts")
    lease_expires_at = serializers.DateTimeField()
    store = StoreSummarySerializer(allow_null=True)


@extend_schema_field(
    {
        "type": "object",
        "description": "An entry: {alias, private_key, certificates: [PEM, ...]}, or {alias, "
        "error} for one the agent could not use, or {alias, private_key, sha256: [hex, ...]} "
        "for certificates the platform holds (orchestrators.sdk.InventoryEntry.to_wire). "
        "Any object is taken: one that is not a usable entry is answered as a rejected entry "
        "with its reason, and one bad entry never refuses the rest of the report.",
    }
)
class _ReportedEntryField(serializers.DictField):
    """An entry as the agent sent it; the service checks each one and answers its verdict."""


class InventorySerializer(Serializer):
    """A whole report in one request; entries are checked one by one by the service."""

    attempt = serializers.IntegerField(min_value=1, required=False)
    entries = serializers.ListField(child=_ReportedEntryField())


class InventoryChunkParamsSerializer(Serializer):
    """A chunk's numbers. Its entries are checked one by one by the service, each with its
    own verdict, so they are not validated here (and a large chunk costs no second pass)."""

    attempt = serializers.IntegerField(min_value=1, required=False)
    sequence = serializers.IntegerField(min_value=0, max_value=1_000_000)
    # Entry positions are stored as 32-bit integers: bounded far above any report's size
    # (CERTYARD_INVENTORY_MAX_ENTRIES), so first_index plus a chunk's entries always fits.
    first_index = serializers.IntegerField(min_value=0, max_value=1_000_000_000, default=0)


class InventoryChunkSerializer(InventoryChunkParamsSerializer):
    """One chunk of a report, as documented."""

    entries = serializers.ListField(child=_ReportedEntryField())


class SubmissionErrorSerializer(Serializer):
    at = serializers.CharField(max_length=40, allow_blank=True, default="")
    error = serializers.CharField(max_length=2000)


class InventoryCommitSerializer(Serializer):
    attempt = serializers.IntegerField(min_value=1, required=False)
    chunks = serializers.IntegerField(min_value=1, max_value=1_000_000)
    new_certificates = serializers.IntegerField(min_value=0, default=0)
    submission_errors = SubmissionErrorSerializer(many=True, default=list, max_length=100)


class RejectedEntrySerializer(Serializer):
    index = serializers.IntegerField()
    alias = serializers.CharField()
    error = serializers.CharField()


class InventoryChunkAnswerSerializer(Serializer):
    job_id = serializers.UUIDField()
    sequence = serializers.IntegerField()
    accepted = serializers.IntegerField()
    new_certificates = serializers.IntegerField()
    rejected = RejectedEntrySerializer(many=True)
    unknown = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Indexes of entries that named a certificate by SHA-256 the platform does "
        "not hold: send the chunk again with those entries in full.",
    )
    lease_expires_at = serializers.DateTimeField(
        help_text="The lease, renewed by each chunk: a large store may take several leases."
    )


class InventoryAnswerSerializer(Serializer):
    job_id = serializers.UUIDField()
    duplicate = serializers.BooleanField()
    recorded = serializers.BooleanField()
    entries = serializers.IntegerField()
    added = serializers.IntegerField()
    changed = serializers.IntegerField()
    removed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    new_certificates = serializers.IntegerField()
    rejected = RejectedEntrySerializer(many=True)
    rejected_count = serializers.IntegerField()


@extend_schema_field({"type": "object", "additionalProperties": True})
class _ResultField(serializers.JSONField):
    """A JSON object (checked by ``CompleteSerializer.validate_result``)."""


class CompleteSerializer(Serializer):
    status = serializers.ChoiceField(choices=[o.value for o in JobOutcome])
    message = serializers.CharField(allow_blank=True, default="", max_length=100_000)
    attempt = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="The attempt this result is for: an earlier attempt's result is refused "
        "(409 stale_attempt) and cannot end the attempt that replaced it.",
    )
    final = serializers.BooleanField(
        required=False,
        default=False,
        help_text="For a failure: another attempt would meet it again (the store or the job's "
        "own content refused it); the job ends failed now instead of being retried.",
    )
    result = _ResultField(
        required=False,
        help_text="The job's result (add, remove, create, reenrollment): a JSON object of at "
        f"most {RESULT_MAX_BYTES // 1024} KiB when serialised; kept on the job and its attempt.",
    )

    def validate_result(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("the result must be a JSON object")
        try:
            size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
        except ValueError:
            raise serializers.ValidationError(
                "the result must be strict JSON (no NaN or Infinity)"
            ) from None
        if size > RESULT_MAX_BYTES:
            raise serializers.ValidationError(
                f"the result is {size} bytes when serialised; the limit is {RESULT_MAX_BYTES}"
            )
        return value
