"""Background work of the PKI app, run by django-q2."""

from certyard.pki.services import crls_refresh


def crls_refresh_hourly() -> int:
    """Keep every CA's CRL fresh even when nothing is revoked (the hourly schedule)."""
    return crls_refresh()
