"""Backfill the inventory's certificate state (issue 17) from what enrollment and the
built-in CAs already know: revocations (``pki.IssuedCertificate.revoked_at``,
``GatewayRecord.revoked_at``) and renewals (``EnrollmentRequest.renewal_of`` → the
certificate it issued). From now on the services record both as they happen.

It lives in enrollment because enrollment sees the inventory and pki both.
"""

from typing import Any

from django.db import migrations

# RFC 5280 names by CRLReason code, frozen here (a migration does not import app code
# that may change): handlers.gateways.RevocationReason.keyword of each code.
REASON_NAMES = {
    0: "unspecified",
    1: "keyCompromise",
    2: "caCompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    8: "removeFromCrl",
    9: "privilegeWithdrawn",
    10: "aaCompromise",
}
BATCH = 500


def backfill(apps: Any, schema_editor: Any) -> None:
    Certificate = apps.get_model("inventory", "Certificate")
    IssuedCertificate = apps.get_model("pki", "IssuedCertificate")
    GatewayRecord = apps.get_model("enrollment", "GatewayRecord")
    EnrollmentRequest = apps.get_model("enrollment", "EnrollmentRequest")

    def revoke(rows: Any, revoked_at: Any, code: int | None) -> None:
        rows.filter(revoked_at__isnull=True).update(
            revoked_at=revoked_at, revocation_reason=REASON_NAMES.get(code or 0, "unspecified")
        )

    revoked = IssuedCertificate.objects.filter(revoked_at__isnull=False).values_list(
        "sha256", "revoked_at", "revocation_reason"
    )
    for sha256, revoked_at, code in revoked.iterator(chunk_size=BATCH):
        revoke(Certificate.objects.filter(sha256=sha256), revoked_at, code)
    records = GatewayRecord.objects.filter(
        revoked_at__isnull=False, certificate__isnull=False
    ).values_list("certificate_id", "revoked_at", "revocation_reason")
    for certificate_id, revoked_at, code in records.iterator(chunk_size=BATCH):
        revoke(Certificate.objects.filter(pk=certificate_id), revoked_at, code)
    # Oldest renewal first, so a certificate renewed twice ends linked to its latest renewal.
    renewals = (
        EnrollmentRequest.objects.filter(
            state="issued", renewal_of__isnull=False, certificate__isnull=False
        )
        .order_by("issued_at", "created_at")
        .values_list("renewal_of_id", "certificate_id")
    )
    for old_id, new_id in renewals.iterator(chunk_size=BATCH):
        if old_id != new_id:
            Certificate.objects.filter(pk=old_id).exclude(superseded_by_id=new_id).update(
                superseded_by_id=new_id
            )


class Migration(migrations.Migration):
    dependencies = [
        ("enrollment", "0006_target_stores"),
        ("inventory", "0013_certificate_state"),
        ("pki", "0003_crl_refresh_schedule"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True)]
