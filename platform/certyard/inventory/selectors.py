"""Reads of the inventory app."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateMetadata,
    CertificateStore,
    InventoryStatus,
)
from certyard.x509 import CertificateDetails, CertificateParseError
from certyard.x509 import certificate_details as details_from_der

EXPIRY_WINDOWS_DAYS = (7, 30, 90)


@dataclass(frozen=True, slots=True)
class CertificateFilters:
    """What the certificate list can be narrowed by; every field optional."""

    search: str = ""
    expires_within_days: int | None = None
    expired: bool | None = None
    store_id: str | None = None
    key_algorithm: str = ""
    conformant: bool | None = None
    # A metadata field (by id) and, with it, an exact canonical value, or "has no value"
    # (``metadata_empty``); the field alone: has any value.
    metadata_field_id: int | None = None
    metadata_value: str | None = None
    metadata_empty: bool = False


def certificate_list(*, filters: CertificateFilters) -> QuerySet[Certificate]:
    """Certificates matching the filters, soonest expiry first.

    Search matches the common name, SANs, issuer (substring), or the serial number
    and fingerprints (prefix, case-insensitive, colons ignored).
    """
    # Unknown validity (unreadable dates) sorts last on every database.
    queryset = Certificate.objects.defer("der").order_by(F("not_after").asc(nulls_last=True), "pk")
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
    if filters.conformant is not None:
        queryset = queryset.filter(conformant=filters.conformant)
    if filters.metadata_field_id is not None:
        values = CertificateMetadata.objects.filter(field_id=filters.metadata_field_id)
        if filters.metadata_empty:
            queryset = queryset.exclude(pk__in=values.values("certificate_id"))
        else:
            if filters.metadata_value is not None:
                values = values.filter(value=filters.metadata_value)
            queryset = queryset.filter(pk__in=values.values("certificate_id"))
    return queryset


def certificate_details(*, certificate: Certificate) -> CertificateDetails | None:
    """The certificate's extensions and SANs in words; None when its DER cannot be read."""
    try:
        return details_from_der(bytes(certificate.der))
    except CertificateParseError:
        return None


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


def store_list(*, status: str = "", orchestrator_id: Any = None) -> QuerySet[CertificateStore]:
    """Stores with their location counts, narrowed by inventory status or orchestrator."""
    # An aggregate drops Meta.ordering: order explicitly, or pages repeat and skip.
    queryset = (
        CertificateStore.objects.select_related("store_type", "orchestrator")
        .annotate(location_count=Count("locations"))
        .order_by("client_machine", "store_path", "pk")
    )
    if status:
        queryset = queryset.filter(inventory_status=status)
    if orchestrator_id is not None:
        queryset = queryset.filter(orchestrator_id=orchestrator_id)
    return queryset


def stores_failing() -> QuerySet[CertificateStore]:
    """Stores whose last inventory failed, most recently checked first."""
    return (
        CertificateStore.objects.select_related("store_type", "orchestrator")
        .filter(inventory_status=InventoryStatus.FAILING)
        .order_by(F("inventory_checked_at").desc(nulls_last=True), "pk")
    )


def expiry_counts(*, certificates: QuerySet[Certificate] | None = None) -> dict[str, int]:
    """Counts for the dashboard: ``total``, ``expired``, ``d7``/``d30``/``d90`` (valid now
    and expiring within that many days) and ``unknown`` (validity unreadable)."""
    now = timezone.now()
    queryset = Certificate.objects.all() if certificates is None else certificates
    aggregates = queryset.aggregate(
        **{
            f"d{days}": Count(
                "pk", filter=Q(not_after__gte=now, not_after__lt=now + dt.timedelta(days=days))
            )
            for days in EXPIRY_WINDOWS_DAYS
        },
        expired=Count("pk", filter=Q(not_after__lt=now)),
        unknown=Count("pk", filter=Q(not_after__isnull=True)),
        total=Count("pk"),
    )
    return aggregates


def orchestrator_expiry_counts(*, orchestrator_id: Any) -> dict[str, int]:
    """``expiry_counts`` of the certificates installed in the orchestrator's stores."""
    installed = CertificateLocation.objects.filter(store__orchestrator_id=orchestrator_id)
    return expiry_counts(
        certificates=Certificate.objects.filter(pk__in=installed.values("certificate_id"))
    )
