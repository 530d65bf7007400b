"""Reads of the pki app: certificate authorities and what they issued."""

from django.db.models import QuerySet

from certyard.pki.models import CertificateAuthority, IssuedCertificate


def ca_list() -> QuerySet[CertificateAuthority]:
    """The CAs by name, with their parent and creator (the list and the detail page show
    both)."""
    return CertificateAuthority.objects.select_related("parent", "created_by").order_by("name")


def ca_children(*, ca: CertificateAuthority) -> QuerySet[CertificateAuthority]:
    """The intermediates this CA signed, by name."""
    return ca.children.order_by("name")


def issued_certificate_list(*, ca: CertificateAuthority) -> QuerySet[IssuedCertificate]:
    """What the CA issued, the newest first."""
    return IssuedCertificate.objects.filter(ca=ca).order_by("-issued_at", "-pk")
