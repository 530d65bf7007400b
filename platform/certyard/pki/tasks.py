"""Background work of the PKI app, run by django-q2."""

from certyard.pki.services import crls_refresh
from certyard.workflows.scheduled import ScheduledTask

CRL_REFRESH_SCHEDULE_NAME = "certyard: CRL refresh"


def crls_refresh_hourly() -> int:
    """Keep every CA's CRL fresh even when nothing is revoked (the hourly schedule)."""
    return crls_refresh()


# Registered in PkiConfig.ready (certyard.workflows.scheduled).
SCHEDULED_TASKS = (
    ScheduledTask(
        name="crl-refresh",
        label="CRL refresh",
        description="Regenerate the CRL of every built-in CA whose CRL is past half its "
        "life (CERTYARD_CRL_HOURS); the result is how many were regenerated.",
        func=crls_refresh_hourly,
        schedule_name=CRL_REFRESH_SCHEDULE_NAME,
    ),
)
