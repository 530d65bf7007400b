"""Reads the console needs that the apps' own selectors do not offer (reads only)."""

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet

from certyard.enrollment import selectors as enrollment_selectors
from certyard.enrollment.models import EnrollmentRequest
from certyard.enrollment.services import certificate_revocation_status
from certyard.fleet.models import Orchestrator, RegistrationToken
from certyard.inventory.models import Certificate, CertificateStore, MetadataBackfill
from certyard.jobs.models import Job
from certyard.jobs.selectors import job_list


def orchestrator_status_counts() -> list[tuple[str, str, int]]:
    """``(status, label, count)`` for every orchestrator status, zeros included."""
    counts = dict(
        Orchestrator.objects.order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return [(value, label, counts.get(value, 0)) for value, label in Orchestrator.Status.choices]


def orchestrator_list() -> QuerySet[Orchestrator]:
    """Every orchestrator, in the model's order."""
    return Orchestrator.objects.all()


def orchestrators_approved() -> QuerySet[Orchestrator]:
    """The orchestrators a new store may be given to."""
    return Orchestrator.objects.filter(status=Orchestrator.Status.APPROVED)


def registration_token_list() -> QuerySet[RegistrationToken]:
    return RegistrationToken.objects.select_related("created_by")


def inventory_is_empty() -> bool:
    return not Certificate.objects.exists()


def certificate_detail_queryset() -> QuerySet[Certificate]:
    """Certificates whole (DER included), for a certificate's own pages."""
    return Certificate.objects.all()


@dataclass(frozen=True, slots=True)
class CertificateHeaderActions:
    """Which of the certificate's actions its page header offers this person."""

    renew: bool
    revoke: bool
    add_to_stores: bool

    @property
    def any(self) -> bool:
        return self.renew or self.revoke or self.add_to_stores


@dataclass(frozen=True, slots=True)
class CertificatePkiFacts:
    """What the certificate page's header and PKI panel both show, read once a page."""

    issued_request: EnrollmentRequest | None  # the latest request that issued it, if any
    revocation_status: dict[str, Any] | None  # what its CA or gateway says; None: unknown


def certificate_pki_facts(*, certificate: Certificate) -> CertificatePkiFacts:
    return CertificatePkiFacts(
        issued_request=enrollment_selectors.enrollment_request_issued(certificate=certificate),
        revocation_status=certificate_revocation_status(certificate),
    )


def certificate_header_actions(
    *, certificate: Certificate, user: Any, pki: CertificatePkiFacts
) -> CertificateHeaderActions:
    """Renew when Certyard issued it; revoke when a built-in CA or a CA gateway knows it and
    it is not revoked yet; add to stores: the same conditions as the sections they open
    (templates/console/pki/_certificate_panel.html, deployment/_certificate_panel.html)."""
    renewable = user.has_perm("enrollment.add_enrollmentrequest") and pki.issued_request is not None
    status = pki.revocation_status
    revocable = (
        certificate.revoked_at is None
        and user.has_perm("enrollment.change_enrollmentrequest")
        and status is not None
        and status["revoked_at"] is None
    )
    return CertificateHeaderActions(
        renew=renewable,
        revoke=bool(revocable),
        add_to_stores=user.has_perm("deployment.add_deployment"),
    )


def certificate_ids_by_sha256(*, sha256s: list[str]) -> dict[str, int]:
    """``{sha256: pk}`` of those fingerprints the inventory holds (one query for a page)."""
    return dict(Certificate.objects.filter(sha256__in=sha256s).values_list("sha256", "pk"))


def metadata_backfill_detail_queryset() -> QuerySet[MetadataBackfill]:
    """Backfills with who started them, for the progress card."""
    return MetadataBackfill.objects.select_related("started_by")


def store_choices() -> QuerySet[CertificateStore]:
    """Stores to narrow the certificate list by, labelled with their type."""
    return CertificateStore.objects.select_related("store_type")


def job_detail_queryset() -> QuerySet[Job]:
    """Jobs with their attempts, for the detail page."""
    return job_list().select_related("requested_by").prefetch_related("history__orchestrator")


def job_list_in_state(*, state: str = "") -> QuerySet[Job]:
    """The jobs list, narrowed to one state when given."""
    jobs = job_list()
    return jobs.filter(state=state) if state else jobs


def jobs_failed_recent() -> QuerySet[Job]:
    """Jobs that ended failed, the most recent first."""
    return job_list().filter(state=Job.State.FAILED).order_by("-completed_at", "-created_at")


def orchestrator_jobs_recent(*, orchestrator_id: object) -> QuerySet[Job]:
    return job_list().filter(orchestrator_id=orchestrator_id)
