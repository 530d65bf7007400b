"""The console's pages, at the site root."""

from django.urls import path

from certyard.console import (
    blueprint_views,
    deployment_views,
    metadata_views,
    pki_views,
    run_views,
    scheduled_views,
    template_views,
    views,
)

app_name = "console"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("orchestrators/", views.orchestrator_list, name="orchestrator-list"),
    path("orchestrators/<uuid:pk>/", views.orchestrator_detail, name="orchestrator-detail"),
    path(
        "orchestrators/<uuid:pk>/approve/",
        views.orchestrator_approve,
        name="orchestrator-approve",
    ),
    path(
        "orchestrators/<uuid:pk>/disapprove/",
        views.orchestrator_disapprove,
        name="orchestrator-disapprove",
    ),
    path("orchestrators/<uuid:pk>/reset/", views.orchestrator_reset, name="orchestrator-reset"),
    path(
        "orchestrators/<uuid:pk>/metadata/",
        views.orchestrator_metadata,
        name="orchestrator-metadata",
    ),
    path(
        "orchestrators/<uuid:pk>/revoke-certificate/",
        views.orchestrator_revoke_certificate,
        name="orchestrator-revoke-certificate",
    ),
    path(
        "registration-tokens/",
        views.registration_token_list,
        name="registration-token-list",
    ),
    path(
        "registration-tokens/create/",
        views.registration_token_create,
        name="registration-token-create",
    ),
    path(
        "registration-tokens/<int:pk>/revoke/",
        views.registration_token_revoke,
        name="registration-token-revoke",
    ),
    path("api-tokens/", views.api_token_list, name="api-token-list"),
    path("api-tokens/create/", views.api_token_create, name="api-token-create"),
    path("api-tokens/<int:pk>/revoke/", views.api_token_revoke, name="api-token-revoke"),
    path("stores/", views.store_list, name="store-list"),
    path("endpoints/", views.endpoint_list, name="endpoint-list"),
    path("stores/add/", views.store_create, name="store-create"),
    path("stores/<uuid:pk>/edit/", views.store_edit, name="store-edit"),
    path("stores/<uuid:pk>/delete/", views.store_delete, name="store-delete"),
    path("stores/<uuid:pk>/schedule/", views.store_schedule, name="store-schedule"),
    path(
        "stores/<uuid:pk>/inventory-now/",
        views.store_inventory_now,
        name="store-inventory-now",
    ),
    path("certificates/", views.certificate_list, name="certificate-list"),
    path("certificates/<int:pk>/", views.certificate_detail, name="certificate-detail"),
    path(
        "certificates/<int:pk>/metadata/",
        metadata_views.certificate_metadata_edit,
        name="certificate-metadata-edit",
    ),
    path("metadata/", metadata_views.metadata_overview, name="metadata"),
    path("metadata/fields/add/", metadata_views.metadata_field_add, name="metadata-field-add"),
    path(
        "metadata/fields/<int:pk>/",
        metadata_views.metadata_field_edit,
        name="metadata-field-edit",
    ),
    path(
        "metadata/backfills/",
        metadata_views.metadata_backfill_create,
        name="metadata-backfill-start",
    ),
    path(
        "metadata/backfills/<int:pk>/",
        metadata_views.metadata_backfill_progress,
        name="metadata-backfill-progress",
    ),
    path(
        "metadata/backfills/<int:pk>/cancel/",
        metadata_views.metadata_backfill_stop,
        name="metadata-backfill-cancel",
    ),
    path(
        "metadata/generators/<int:pk>/fields/",
        metadata_views.metadata_generator_fields_create,
        name="metadata-generator-fields-create",
    ),
    path(
        "certificates/<int:pk>/download/",
        views.certificate_download,
        name="certificate-download",
    ),
    path(
        "certificates/<int:pk>/download/chain/",
        views.certificate_download,
        {"chain": True},
        name="certificate-download-chain",
    ),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/rows/", views.job_list, {"rows_only": True}, name="job-rows"),
    path("jobs/<uuid:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:pk>/retry/", views.job_retry, name="job-retry"),
    path("handler-runs/", run_views.run_list, name="run-list"),
    path("handler-runs/<int:pk>/", run_views.run_detail, name="run-detail"),
    path(
        "handler-runs/subject/<slug:subject_type>/<str:subject_id>/",
        run_views.run_subject,
        name="run-subject",
    ),
    path("handlers/", run_views.registration_list, name="handler-registration-list"),
    path("scheduled-tasks/", scheduled_views.scheduled_task_list, name="scheduled-task-list"),
    path(
        "scheduled-tasks/<slug:name>/run/",
        scheduled_views.scheduled_task_run_now,
        name="scheduled-task-run",
    ),
    path("handlers/<int:pk>/", run_views.registration_detail, name="handler-registration-detail"),
    path("blueprints/", blueprint_views.blueprint_list, name="blueprint-list"),
    path("blueprints/<int:pk>/", blueprint_views.blueprint_detail, name="blueprint-detail"),
    path("blueprints/<int:pk>/delete/", blueprint_views.blueprint_delete, name="blueprint-delete"),
    path(
        "orchestrators/<uuid:pk>/save-blueprint/",
        blueprint_views.orchestrator_blueprint_save,
        name="orchestrator-blueprint-save",
    ),
    path(
        "orchestrators/<uuid:pk>/apply-blueprint/",
        blueprint_views.orchestrator_blueprint_apply,
        name="orchestrator-blueprint-apply",
    ),
    # PKI: certificate authorities and CA gateways.
    path("cas/", pki_views.ca_list, name="ca-list"),
    path("cas/add/", pki_views.ca_create, name="ca-create"),
    path("cas/import/", pki_views.ca_import, name="ca-import"),
    path("cas/<int:pk>/", pki_views.ca_detail, name="ca-detail"),
    path("gateways/", pki_views.gateway_list, name="gateway-list"),
    path("gateways/<int:pk>/", pki_views.gateway_detail, name="gateway-detail"),
    path("gateways/<int:pk>/test/", pki_views.gateway_test, name="gateway-test"),
    path("gateways/<int:pk>/sync/", pki_views.gateway_sync, name="gateway-sync"),
    path(
        "gateways/syncs/<int:pk>/",
        pki_views.gateway_sync_progress,
        name="gateway-sync-progress",
    ),
    # Enrollment: enrolling, the templates, the requests and their approval.
    path("enrollment/", pki_views.enroll, name="enroll"),
    path("enrollment/templates/", template_views.template_list, name="enrollment-template-list"),
    path(
        "enrollment/templates/add/",
        template_views.template_create,
        name="enrollment-template-create",
    ),
    path(
        "enrollment/templates/<int:pk>/",
        template_views.template_edit,
        name="enrollment-template-edit",
    ),
    path("enrollment/requests/", pki_views.request_list, name="enrollment-request-list"),
    path(
        "enrollment/requests/<uuid:pk>/",
        pki_views.request_detail,
        name="enrollment-request-detail",
    ),
    path(
        "enrollment/requests/<uuid:pk>/approve/",
        pki_views.request_approve,
        name="enrollment-request-approve",
    ),
    path(
        "enrollment/requests/<uuid:pk>/deny/",
        pki_views.request_deny,
        name="enrollment-request-deny",
    ),
    path(
        "enrollment/requests/<uuid:pk>/collect/",
        pki_views.request_collect,
        name="enrollment-request-collect",
    ),
    path(
        "enrollment/requests/<uuid:pk>/pkcs12/",
        pki_views.request_pkcs12,
        name="enrollment-request-pkcs12",
    ),
    path(
        "enrollment/requests/<uuid:pk>/pkcs12/download/",
        pki_views.request_pkcs12_download,
        name="enrollment-request-pkcs12-download",
    ),
    path(
        "enrollment/requests/<uuid:pk>/certificate.pem",
        pki_views.request_certificate,
        name="enrollment-request-certificate",
    ),
    path(
        "enrollment/requests/<uuid:pk>/chain.pem",
        pki_views.request_certificate,
        {"chain": True},
        name="enrollment-request-chain",
    ),
    path(
        "certificates/<int:pk>/revoke/",
        pki_views.certificate_revoke,
        name="certificate-revoke",
    ),
    path("certificates/<int:pk>/renew/", pki_views.certificate_renew, name="certificate-renew"),
    # Store management (issue 16): store pages, delivery, bulk actions, discovery, batches.
    path("stores/<uuid:pk>/", deployment_views.store_detail, name="store-detail"),
    path(
        "stores/<uuid:pk>/create-store/",
        deployment_views.store_create_job,
        name="store-create-job",
    ),
    path(
        "certificates/<int:pk>/add-to-stores/",
        deployment_views.certificate_deploy,
        name="certificate-deploy",
    ),
    path(
        "certificates/<int:pk>/remove-from-stores/",
        deployment_views.certificate_undeploy,
        name="certificate-undeploy",
    ),
    path(
        "certificates/<int:pk>/renew-and-replace/",
        deployment_views.certificate_renew_replace,
        name="certificate-renew-replace",
    ),
    path("certificates/bulk/", deployment_views.certificate_bulk, name="certificate-bulk"),
    path(
        "orchestrators/<uuid:pk>/discover/",
        deployment_views.orchestrator_discover,
        name="orchestrator-discover",
    ),
    path(
        "orchestrators/<uuid:pk>/discovery/",
        deployment_views.discovery_results,
        name="discovery-results",
    ),
    path(
        "orchestrators/<uuid:pk>/discovery/approve-kind/",
        deployment_views.discovery_approve_kind,
        name="discovery-approve-kind",
    ),
    path(
        "discovery-candidates/<int:pk>/approve/",
        deployment_views.discovery_candidate_approve,
        name="discovery-candidate-approve",
    ),
    path("deployments/<uuid:pk>/", deployment_views.deployment_batch, name="deployment-batch"),
    path(
        "deployments/<uuid:pk>/rows/",
        deployment_views.deployment_batch,
        {"rows_only": True},
        name="deployment-batch-rows",
    ),
]
