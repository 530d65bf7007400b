"""Reads of the inventory app."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from certyard.inventory.models import (
    Certificate,
    CertificateLocation,
    CertificateMetadata,
    CertificateStatus,
    CertificateStore,
    InventoryStatus,
    TlsEndpoint,
)
from certyard.x509 import CertificateDetails, CertificateParseError
from certyard.x509 import certificate_details as details_from_der
from certyard.x509.names import host_name_matches
from handlers.gateways import RevocationReason

EXPIRY_WINDOWS_DAYS = (7, 30, 90)
# A certificate valid now whose validity ends within this many days is "expiring".
EXPIRING_DAYS = 30
# The dashboard's disjoint expiry windows, in days left, from start (included) to end (not):
# (the list filter's value, the count's key, start, end).
EXPIRY_BANDS: tuple[tuple[str, str, int, int], ...] = (
    ("0-7", "d0_7", 0, 7),
    ("8-30", "d8_30", 7, 30),
    ("31-90", "d31_90", 30, 90),
)
# The certificates a page lists as renewed by one certificate (a renewal renews one; more
# only when several were renewed into the same certificate, e.g. by a backfill).
SUPERSEDES_SHOWN = 20
# A status filter that is no status of its own: neither revoked nor superseded.
STATUS_IN_USE = "in_use"


# --- Certificate state ------------------------------------------------------------------
#
# One definition, read two ways: ``certificate_status`` for a certificate in hand (the
# list's rows, the page's header, the API), ``certificate_status_q`` for a query (the
# filters and the dashboard). The order decides: revoked, then superseded, then what its
# dates say (unknown when not_after is empty, expired, expiring within EXPIRING_DAYS,
# valid). tests/certyard/inventory/test_certificate_state.py checks the two agree.


def certificate_status(certificate: Certificate, *, now: dt.datetime | None = None) -> str:
    """The certificate's ``CertificateStatus`` value (valid, expiring, expired, revoked,
    superseded, unknown)."""
    if certificate.revoked_at is not None:
        return CertificateStatus.REVOKED
    if certificate.superseded_by_id is not None:
        return CertificateStatus.SUPERSEDED
    if certificate.not_after is None:
        return CertificateStatus.UNKNOWN
    now = now or timezone.now()
    if certificate.not_after < now:
        return CertificateStatus.EXPIRED
    if certificate.not_after < now + dt.timedelta(days=EXPIRING_DAYS):
        return CertificateStatus.EXPIRING
    return CertificateStatus.VALID


def certificate_status_q(status: str, *, now: dt.datetime | None = None) -> Q:
    """The certificates whose ``certificate_status`` is ``status``, as a query condition;
    ``STATUS_IN_USE``: those neither revoked nor superseded."""
    now = now or timezone.now()
    in_use = Q(revoked_at__isnull=True, superseded_by__isnull=True)
    conditions = {
        CertificateStatus.REVOKED: Q(revoked_at__isnull=False),
        CertificateStatus.SUPERSEDED: Q(revoked_at__isnull=True, superseded_by__isnull=False),
        CertificateStatus.UNKNOWN: in_use & Q(not_after__isnull=True),
        CertificateStatus.EXPIRED: in_use & Q(not_after__lt=now),
        CertificateStatus.EXPIRING: in_use
        & Q(not_after__gte=now, not_after__lt=now + dt.timedelta(days=EXPIRING_DAYS)),
        CertificateStatus.VALID: in_use & Q(not_after__gte=now + dt.timedelta(days=EXPIRING_DAYS)),
        STATUS_IN_USE: in_use,
    }
    if status not in conditions:
        raise ValueError(f"unknown certificate status {status!r}")
    return conditions[status]


def revocation_reason_label(name: str) -> str:
    """``Key compromise`` for ``keyCompromise``; the name itself when it is no RFC 5280 one."""
    for reason in RevocationReason:
        if reason.keyword == name:
            return reason.label
    return name


def certificate_state_prefetch() -> Prefetch:
    """Prefetch of each certificate's ``supersedes`` (ids only), for lists that show them."""
    return Prefetch(
        "supersedes", queryset=Certificate.objects.only("pk", "superseded_by_id").order_by("pk")
    )


@dataclass(frozen=True, slots=True)
class CertificateState:
    """What the list, the page header and the API show of a certificate's state."""

    status: str
    label: str
    revoked_at: dt.datetime | None
    revocation_reason: str
    revocation_reason_label: str
    superseded_by: Certificate | None
    supersedes: tuple[Certificate, ...]


def certificate_state(
    certificate: Certificate, *, now: dt.datetime | None = None, related: bool = True
) -> CertificateState:
    """The certificate's status with its revocation and its renewals, both ways.

    ``related=False`` reads no other certificate (a list row needs only the status).
    """
    status = certificate_status(certificate, now=now)
    successor: Certificate | None = None
    predecessors: tuple[Certificate, ...] = ()
    if related:
        if certificate.superseded_by_id is not None:
            successor = (
                Certificate.objects.defer("der").filter(pk=certificate.superseded_by_id).first()
            )
        predecessors = tuple(
            Certificate.objects.defer("der")
            .filter(superseded_by=certificate)
            .order_by("not_after", "pk")[:SUPERSEDES_SHOWN]
        )
    return CertificateState(
        status=status,
        label=CertificateStatus(status).label,
        revoked_at=certificate.revoked_at,
        revocation_reason=certificate.revocation_reason,
        revocation_reason_label=revocation_reason_label(certificate.revocation_reason),
        superseded_by=successor,
        supersedes=predecessors,
    )


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
    # A ``CertificateStatus`` value or ``STATUS_IN_USE`` (see certificate_status_q).
    status: str = ""
    # With expires_within_days: only those valid at least this many days more (a band).
    expires_from_days: int | None = None
    # True: CA certificates only; False: end-entity certificates only.
    is_ca: bool | None = None


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
            not_after__gte=now + dt.timedelta(days=filters.expires_from_days or 0),
            not_after__lt=now + dt.timedelta(days=filters.expires_within_days),
        )
    if filters.status:
        queryset = queryset.filter(certificate_status_q(filters.status, now=now))
    if filters.is_ca is not None:
        queryset = queryset.filter(is_ca=filters.is_ca)
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


def store_endpoints(*, store: CertificateStore, status: str = "") -> QuerySet[TlsEndpoint]:
    """A scan store's endpoints with the leaf each served last, in host, port, name order."""
    queryset = TlsEndpoint.objects.filter(store=store).select_related("certificate")
    if status:
        queryset = queryset.filter(status=status)
    return queryset.order_by("host", "port", "sni", "pk")


# What the TLS endpoint list can narrow to, besides a status: the problems a person
# scanning their network looks for first.
ENDPOINT_PROBLEMS = {
    "not_serving": "Not serving TLS (any failure)",
    "expired": "Serving an expired certificate",
    "expiring": f"Serving a certificate expiring within {EXPIRING_DAYS} days",
    "self_signed": "Serving a self-signed certificate",
    "old_tls": "Negotiating TLS 1.1 or older",
}
OLD_TLS_VERSIONS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")


def endpoint_list(
    *, status: str = "", problem: str = "", host: str = "", now: dt.datetime | None = None
) -> QuerySet[TlsEndpoint]:
    """Every scan store's endpoints, narrowed by status, a problem (``ENDPOINT_PROBLEMS``)
    or a host (contains, case-insensitive), in host, port, name order."""
    now = now or timezone.now()
    queryset = TlsEndpoint.objects.select_related("certificate", "store", "store__orchestrator")
    if status:
        queryset = queryset.filter(status=status)
    if host:
        queryset = queryset.filter(Q(host__icontains=host) | Q(sni__icontains=host))
    served = Q(status=TlsEndpoint.Status.OK)
    if problem == "not_serving":
        queryset = queryset.exclude(served)
    elif problem == "expired":
        queryset = queryset.filter(served, certificate__not_after__lt=now)
    elif problem == "expiring":
        queryset = queryset.filter(
            served,
            certificate__not_after__gte=now,
            certificate__not_after__lt=now + dt.timedelta(days=EXPIRING_DAYS),
        )
    elif problem == "self_signed":
        queryset = queryset.filter(served, certificate__self_signed=True)
    elif problem == "old_tls":
        queryset = queryset.filter(served, tls_version__in=OLD_TLS_VERSIONS)
    return queryset.order_by("host", "port", "sni", "pk")


def endpoint_counts() -> dict[str, int]:
    """How many endpoints serve TLS and how many do not (the endpoint list's header)."""
    counts = TlsEndpoint.objects.aggregate(
        total=Count("pk"), serving=Count("pk", filter=Q(status=TlsEndpoint.Status.OK))
    )
    return {"total": counts["total"], "serving": counts["serving"],
            "not_serving": counts["total"] - counts["serving"]}  # fmt: skip


def endpoint_name_matches(endpoint: TlsEndpoint) -> bool | None:
    """Whether the leaf the endpoint served last is valid for the name it was asked for
    (its SNI, or else its host); None when it never served one."""
    certificate = endpoint.certificate
    if certificate is None:
        return None
    sans = certificate.sans if isinstance(certificate.sans, list) else []
    return host_name_matches(endpoint.sni or endpoint.host, sans, certificate.common_name)


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


def certificate_state_counts() -> dict[str, int]:
    """The dashboard's counts, each window disjoint from the others.

    ``in_use`` counts end-entity certificates in use (not CA, not revoked, not superseded),
    and ``expired``, ``d0_7``, ``d8_30``, ``d31_90`` (days left, see EXPIRY_BANDS) and
    ``unknown`` split them; ``ca``, ``revoked`` and ``superseded`` count those apart
    (a revoked CA certificate counts in both), ``total`` every certificate.
    """
    now = timezone.now()
    in_use = certificate_status_q(STATUS_IN_USE, now=now) & Q(is_ca=False)
    bands = {
        key: Count(
            "pk",
            filter=in_use
            & Q(
                not_after__gte=now + dt.timedelta(days=start),
                not_after__lt=now + dt.timedelta(days=end),
            ),
        )
        for _, key, start, end in EXPIRY_BANDS
    }
    return Certificate.objects.aggregate(
        total=Count("pk"),
        in_use=Count("pk", filter=in_use),
        expired=Count("pk", filter=in_use & Q(not_after__lt=now)),
        unknown=Count("pk", filter=in_use & Q(not_after__isnull=True)),
        **bands,
        ca=Count("pk", filter=Q(is_ca=True)),
        revoked=Count("pk", filter=certificate_status_q(CertificateStatus.REVOKED, now=now)),
        superseded=Count("pk", filter=certificate_status_q(CertificateStatus.SUPERSEDED, now=now)),
    )


def orchestrator_expiry_counts(*, orchestrator_id: Any) -> dict[str, int]:
    """``expiry_counts`` of the certificates installed in the orchestrator's stores."""
    installed = CertificateLocation.objects.filter(store__orchestrator_id=orchestrator_id)
    return expiry_counts(
        certificates=Certificate.objects.filter(pk__in=installed.values("certificate_id"))
    )
