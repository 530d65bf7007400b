from django.contrib import admin

from certyard.deployment.models import Deployment, DeploymentBatch, DiscoveryCandidate


@admin.register(DeploymentBatch)
class DeploymentBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "certificate", "created_by", "created_at"]
    list_filter = ["kind"]
    readonly_fields = ["certificate", "new_certificate", "template", "created_by"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["id", "action", "state", "store", "alias", "key_origin", "updated_at"]
    list_filter = ["state", "action", "key_origin"]
    # The secret entry parameters are never shown (EncryptedTextField is not editable).
    exclude = ["secret_entry_parameters"]
    readonly_fields = ["batch", "certificate", "store", "job", "enrollment", "requested_by"]


@admin.register(DiscoveryCandidate)
class DiscoveryCandidateAdmin(admin.ModelAdmin):
    list_display = ["path", "orchestrator", "kind", "store_type", "state", "last_seen"]
    list_filter = ["state", "kind"]
    readonly_fields = ["orchestrator", "store", "job"]
