"""Reads of the inventory app."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from certyard.inventory.models import Certificate, CertificateLocation, CertificateStore

EXPIRY_WINDOWS_DAYS = (7, 30, 90)


@dataclass(frozen=True, slots=True)
class CertificateFilters:
    """What the certificate list can be narrowed by; every field optional."""

    search: str = ""
    expires_within_days: int | None = None
    expired: bool | None = None
    store_id: str | None = None
    key_algorithm: str = ""


def certificate_list(*, filters: CertificateFilters) -> QuerySet[Certificate]:
    """Certificates matching the filters, soonest expiry first.

    Search matches the common name, SANs, issuer (substring), or the serial number
    and fingerprints (prefix, case-insensitive, colons ignored).
    """
    queryset = Certificate.objects.defer("der").order_by("not_after", "pk")
    now = timezone.now()
    if term := filters.search.strip():
        hexed = term.replace(":", "").lower()
        queryset = queryset.filter(
            Q(common_name__icontains=term)
            | Q(sans_text__icontains=term)
            | Q(issuer__icontains=term)
            | Q(serial_number__startswith=hexed.lstrip("0") or "0")
            | Q(sha256__startswith=hexed)
            | Q(sha1__startswith=hexed)
        )
    if filters.expires_within_days is not None:
        queryset = queryset.filter(
            not_after__gte=now, not_after__lt=now + dt.timedelta(days=filters.expires_within_days)
        )
    if filters.expired is True:
        queryset = queryset.filter(not_after__lt=now)
    elif filters.expired is False:
        queryset = queryset.filter(not_after__gte=now)
    if filters.store_id:
        queryset = queryset.filter(
            pk__in=CertificateLocation.objects.filter(store_id=filters.store_id).values(
                "certificate_id"
            )
        )
    if filters.key_algorithm:
        queryset = queryset.filter(key_algorithm__iexact=filters.key_algorithm)
    return queryset


def certificate_chain(*, certificate: Certificate, limit: int = 10) -> list[Certificate]:
    """The certificate and the issuers the inventory knows, leaf first."""
    chain = [certificate]
    current = certificate
    while current.issuer_certificate_id and len(chain) < limit:
        current = Certificate.objects.get(pk=current.issuer_certificate_id)
        if current in chain:
            break
        chain.append(current)
    return chain


def certificate_locations(*, certificate: Certificate) -> QuerySet[CertificateLocation]:
    return CertificateLocation.objects.filter(certificate=certificate).select_related(
        "store", "store__store_type", "store__orchestrator"
    )


def store_list() -> QuerySet[CertificateStore]:
    # An aggregate drops Meta.ordering: order explicitly, or pages repeat and skip.
    return (
        CertificateStore.objects.select_related("store_type", "orchestrator")
        .annotate(location_count=Count("locations"))
        .order_by("client_machine", "store_path", "pk")
    )


def expiry_counts() -> dict[str, int]:
    """Counts for the dashboard: ``total``, ``expired``, and ``d7``/``d30``/``d90``
    (valid now and expiring within that many days)."""
    now = timezone.now()
    aggregates = Certificate.objects.aggregate(
        **{
            f"d{days}": Count(
                "pk", filter=Q(not_after__gte=now, not_after__lt=now + dt.timedelta(days=days))
            )
            for days in EXPIRY_WINDOWS_DAYS
        },
        expired=Count("pk", filter=Q(not_after__lt=now)),
        total=Count("pk"),
    )
    return aggregates
