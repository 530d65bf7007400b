"""The CA gateway contract: how any certificate authority plugs into Certyard.

A gateway is a handler class (kind ``gateway``) that speaks to one external CA: ACME,
CFSSL, a vendor's REST API. It is discovered through the same ``certyard.handlers``
entry points as every other handler, registered in Django admin with its declared
parameters (secrets encrypted), and referenced by enrollment templates, which name one of
its *products* (the CA's own word for a profile or template).

The platform calls a gateway from a background worker or from an enrollment request,
always with a time limit; a gateway never touches the database and keeps no state of its
own between calls (``self.config`` is all it has). Every method that can fail raises
:class:`handlers.base.HandlerError` with a sentence an administrator can act on; set
``permanent=True`` when the configuration is at fault (a refused credential, an unknown
product), so the request is failed at once instead of retried.

Writing a gateway
-----------------
::

    class MyCA(CAGateway):
        \"\"\"Issues through My CA's REST API.\"\"\"

        label = "My CA"
        parameters = (
            Parameter("url", ParameterType.URL, required=True),
            Parameter("api_key", ParameterType.SECRET, required=True),
        )

        def ping(self) -> None: ...
        def products(self) -> list[Product]: ...
        def enroll(self, request: GatewayEnrollment) -> CARecord: ...
        def fetch(self, ca_request_id: str) -> CARecord: ...
        def revoke(self, request: GatewayRevocation) -> CARecord: ...

and declare it under ``[project.entry-points."certyard.handlers"]``. Override
``synchronize`` (and set ``supports_sync``) when the CA can list what it issued.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, ClassVar

from handlers.base import Handler, HandlerError, HandlerKind
from handlers.parameters import Parameter


class RevocationReason(IntEnum):
    """RFC 5280 CRLReason codes (section 5.3.1); 7 is not assigned."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10

    @property
    def label(self) -> str:
        """``Key compromise``, ``CA compromise``, ...: as a person reads it."""
        words = self.name.replace("_", " ").capitalize()
        return words.replace("Ca ", "CA ").replace("Aa ", "AA ").replace("crl", "CRL")

    @property
    def keyword(self) -> str:
        """The RFC 5280 ASN.1 name, e.g. ``keyCompromise``."""
        head, *rest = self.name.lower().split("_")
        return head + "".join(part.capitalize() for part in rest)


class EnrollmentType(StrEnum):
    NEW = "new"
    RENEW = "renew"  # same subject, a new certificate replacing the prior one
    REISSUE = "reissue"  # the prior certificate again with changed content or key


class RecordStatus(StrEnum):
    """Where a request stands at the CA."""

    ISSUED = "issued"
    PENDING = "pending"  # the CA has it but has not issued yet (e.g. its own approval)
    FAILED = "failed"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Product:
    """Something the CA can issue: a profile, a template, a certificate type.

    Attributes:
        id: What the CA calls it; stored on an enrollment template.
        name: A human name shown in the template form.
        description: One sentence, optional.
        parameters: Extra values a template using this product must give (checked by
            :meth:`CAGateway.validate_product`); e.g. an ACME challenge type.
    """

    id: str
    name: str
    description: str = ""
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True, slots=True)
class GatewayEnrollment:
    """One enrollment the platform asks the CA for, already checked against its template.

    Attributes:
        request_id: The platform's identifier of the request: the same on a retry, so a
            gateway can use it to avoid issuing twice.
        type: New, renew or reissue.
        product_id: The template's product.
        product_parameters: The template's values for the product's parameters.
        csr_pem: The PKCS#10 request (signature verified; for a PFX enrollment the
            platform made the key and the CSR).
        subject: The subject as RFC 4514 text, and ``sans`` as ``TYPE:value`` strings
            (``DNS:example.com``, ``IP:10.0.0.1``): what the template allowed. The subject
            is written as ``CertificateInfo.subject`` is (most specific RDN first, types
            other than ``CN L ST O OU C STREET DC UID`` as dotted OIDs, so an e-mail address
            is ``1.2.840.113549.1.9.1=…``; RFC 4514 escapes); the names are ``DNS:`` and
            ``IP:`` only (IPv6 compressed and lower-case: ``IP:2001:db8::1``), in the
            CSR's order (the common name first when the CSR did not list it). Read
            them with :func:`handlers.helpers.subject_attribute` and
            :func:`handlers.helpers.sans_of`.
        validity_days: The template's validity; a CA free to choose may ignore it.
        prior_ca_request_id, prior_certificate_pem: For renew and reissue, the
            certificate being replaced, as the CA knows it.
    """

    request_id: str
    type: EnrollmentType
    product_id: str
    csr_pem: str
    subject: str
    sans: tuple[str, ...] = ()
    validity_days: int | None = None
    product_parameters: Mapping[str, Any] = field(default_factory=dict)
    prior_ca_request_id: str | None = None
    prior_certificate_pem: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayRevocation:
    """Revoke one certificate the CA issued.

    Attributes:
        ca_request_id: The CA's identifier of the record, as the gateway gave it.
        certificate_pem: The certificate itself (some protocols revoke by content).
        serial_number: Its serial, lowercase hexadecimal.
        reason: The RFC 5280 reason.
    """

    ca_request_id: str
    certificate_pem: str
    serial_number: str
    reason: RevocationReason = RevocationReason.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class CARecord:
    """What the CA holds for one request or certificate.

    Attributes:
        ca_request_id: The CA's identifier, stable: the platform fetches, revokes and
            deduplicates synchronized records by it.
        status: Where it stands.
        certificate_pem: The issued end-entity certificate (PEM), once issued.
        chain_pem: Issuer certificates, nearest first (PEM each), when known.
        serial_number: Lowercase hexadecimal, once issued.
        revoked_at: ISO 8601 UTC, and ``revocation_reason``, when revoked.
        product_id: The product it was issued under, when the CA says.
        message: The CA's words (why it failed, why it waits).
        sync_cursor: Set on records yielded by :meth:`CAGateway.synchronize`: a value the
            platform stores after each record, so an interrupted synchronization resumes
            after the last record kept, and the next incremental one starts there.
    """

    ca_request_id: str
    status: RecordStatus
    certificate_pem: str | None = None
    chain_pem: tuple[str, ...] = ()
    serial_number: str | None = None
    revoked_at: str | None = None
    revocation_reason: RevocationReason | None = None
    product_id: str = ""
    message: str = ""
    sync_cursor: str | None = None


class CAGateway(Handler):
    """Speaks to one certificate authority on the platform's behalf.

    Class attributes:
        supports_sync: True when :meth:`synchronize` can list what the CA issued; the
            console offers synchronization only then.
        supported_types: The enrollment types the CA can do; the platform refuses the
            others before calling :meth:`enroll`.
    """

    kind = HandlerKind.GATEWAY
    supports_sync: ClassVar[bool] = False
    supported_types: ClassVar[tuple[EnrollmentType, ...]] = tuple(EnrollmentType)

    @abc.abstractmethod
    def ping(self) -> None:
        """Return when the CA answers with these parameters; raise HandlerError if not.

        Called by the *Test connection* action in admin and before synchronizing; it
        checks the connection parameters for real (an address that answers, a credential
        the CA accepts), not only their form.
        """

    @abc.abstractmethod
    def products(self) -> list[Product]:
        """What the CA can issue, for the template form."""

    def validate_product(self, product_id: str, product_parameters: Mapping[str, Any]) -> None:
        """Raise HandlerError(permanent=True) if a template's product or values are wrong.

        The default accepts any product :meth:`products` lists and checks the values
        against that product's declared parameters.
        """
        from handlers.parameters import ParameterError, parameters_check

        known = {product.id: product for product in self.products()}
        if product_id not in known:
            names = ", ".join(sorted(known)) or "none"
            raise HandlerError(
                f"the CA offers no product {product_id!r} (it offers: {names})", permanent=True
            )
        try:
            parameters_check(known[product_id].parameters, product_parameters)
        except ParameterError as exc:
            raise HandlerError(str(exc), permanent=True) from exc

    @abc.abstractmethod
    def enroll(self, request: GatewayEnrollment) -> CARecord:
        """Ask the CA for a certificate: ``ISSUED`` with the certificate, or ``PENDING``."""

    @abc.abstractmethod
    def fetch(self, ca_request_id: str) -> CARecord:
        """The CA's current record for one request (to finish a pending one, to refresh)."""

    @abc.abstractmethod
    def revoke(self, request: GatewayRevocation) -> CARecord:
        """Revoke at the CA; return the record as it now stands (``REVOKED``)."""

    def synchronize(self, *, cursor: str | None, full: bool) -> Iterator[CARecord]:
        """Yield the CA's records, oldest first, each with its ``sync_cursor``.

        ``full`` asks for everything; otherwise start after ``cursor`` (None the first
        time). The platform stores each record's cursor as it goes, so a generator that
        is interrupted is simply called again from the last cursor kept.
        """
        raise HandlerError(
            f"{self.label or type(self).__name__} cannot list what its CA issued",
            permanent=True,
        )
