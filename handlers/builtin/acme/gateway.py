"""The ACME gateway: orders, authorizations and finalization, on the platform's CA
gateway contract."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from handlers.base import HandlerError
from handlers.builtin.acme.challenges import (
    _TOKEN,
    SOLVERS,
    AcmeIdentifier,
    ChallengeSolver,
    key_authorization,
)
from handlers.builtin.acme.client import AcmeSession, _json_object
from handlers.builtin.acme.config import _read_settings, _Settings, acme_parameters
from handlers.builtin.acme.errors import (
    _ERROR_PREFIX,
    PERMANENT_PROBLEMS,
    AcmeProblem,
    _problem_text,
)
from handlers.builtin.acme.jws import _b64
from handlers.gateways import (
    CAGateway,
    CARecord,
    EnrollmentType,
    GatewayEnrollment,
    GatewayRevocation,
    Product,
    RecordStatus,
)
from handlers.parameters import Parameter, ParameterError

logger = logging.getLogger(__name__)

PRODUCT_ID = "default"


def _csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The DNS names and IP addresses a CSR asks for, as ``DNS:``/``IP:`` texts."""
    try:
        extension = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names = [f"DNS:{name}" for name in extension.value.get_values_for_type(x509.DNSName)]
    names += [f"IP:{address}" for address in extension.value.get_values_for_type(x509.IPAddress)]
    return names


def _identifier(san: str) -> dict[str, str] | None:
    """An ACME identifier for ``DNS:name`` or ``IP:address``; None for anything else."""
    kind, _, value = san.partition(":")
    kind, value = kind.strip().upper(), value.strip()
    if kind == "DNS" and value:
        return {"type": "dns", "value": value.lower().rstrip(".")}
    if kind in ("IP", "IP ADDRESS") and value:
        try:
            return {"type": "ip", "value": str(ipaddress.ip_address(value))}
        except ValueError:
            return None
    return None


def _identifiers(
    request: GatewayEnrollment, csr: x509.CertificateSigningRequest
) -> list[dict[str, str]]:
    """The order's identifiers: the request's DNS and IP names, else the CSR's own.

    RFC 8555 section 7.4 wants the CSR to name exactly the order's identifiers; a
    mismatch is refused here, before an order is spent on it.
    """
    identifiers: list[dict[str, str]] = []
    refused: list[str] = []
    for san in request.sans or _csr_names(csr):
        identifier = _identifier(san)
        if identifier is None:
            refused.append(san)
        elif identifier not in identifiers:
            identifiers.append(identifier)
    if refused:
        raise HandlerError(
            f"ACME certifies DNS names and IP addresses only; the request also names "
            f"{', '.join(refused)}",
            permanent=True,
        )
    if not identifiers:
        raise HandlerError(
            "the request names no DNS name or IP address (subject alternative names) to "
            "certify: ACME certifies those only",
            permanent=True,
        )
    in_csr = [identifier for san in _csr_names(csr) if (identifier := _identifier(san))]
    wanted = {(i["type"], i["value"]) for i in identifiers}
    asked = {(i["type"], i["value"]) for i in in_csr}
    if wanted != asked:
        texts = sorted(f"{kind.upper()}:{value}" for kind, value in asked) or ["none"]
        raise HandlerError(
            f"the CSR names {', '.join(texts)} but the request asks for "
            f"{', '.join(sorted(f'{kind.upper()}:{value}' for kind, value in wanted))}: ACME needs "
            "the same names in both",
            permanent=True,
        )
    return identifiers


def _pem_certificates(action: str, text: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except ValueError as exc:
        raise HandlerError(f"{action}: the CA's answer is not a PEM certificate chain") from exc
    return certificates


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


class AcmeGateway(CAGateway):
    """Issues and revokes through an ACME (RFC 8555) CA: Let's Encrypt, step-ca, Pebble.

    **Enrollment** places an order for the request's DNS names and IP addresses, proves
    control of each through the **challenge_solver**, sends the CSR, and returns the
    certificate with its chain. The CA decides validity: a template's validity is not
    sent. Renew and reissue are new orders with the new CSR (ACME has no other kind). A
    retried enrollment places a new order too: ACME has no reference of the client's to
    find the first one by. When the CA is still issuing after **timeout_seconds** the
    request is left *pending* with the order's URL; fetching it later collects the
    certificate.

    **The account** is the key in **account_key_pem** (EC P-256 recommended;
    ``account_key_generate()`` in this package makes one): the account is created at the
    first enrollment (agreeing to the CA's terms of service on the administrator's
    behalf) and found again by its key afterwards. Give **eab_kid** and **eab_hmac_key**
    when the CA binds accounts to an external account. Only the account that ordered a
    certificate can revoke it: keep the key.

    **Solvers** (``challenge_solver``): ``http-01-webroot`` writes
    ``<webroot>/.well-known/acme-challenge/<token>`` for a web server already serving
    the names; ``http-01-standalone`` serves the challenges itself on
    **standalone_address** while the CA validates; ``none`` publishes nothing (the CA
    pre-authorizes the names, or is a test CA). To add a solver (a DNS-01 one for your
    DNS provider), subclass :class:`ChallengeSolver` (``challenge_types = ("dns-01",)``;
    publish :func:`dns01_txt_value` of the key authorization at
    ``_acme-challenge.<name>``), then subclass this gateway::

        class MyAcme(AcmeGateway):
            solvers = {**SOLVERS, "dns-01-mydns": MyDnsSolver}
            parameters = acme_parameters(solvers, extra=(Parameter("dns_token", ...),))

    and declare it under your own entry point.

    **Synchronization** is not offered: RFC 8555 has no way to list what an account was
    issued (its ``orders`` list holds pending orders only, and most CAs leave it out).
    **Fetch** reads the order again: a revocation does not show there.

    Parameters: **directory_url**, **account_key_pem** (secret), **contact_email**,
    **eab_kid** and **eab_hmac_key** (secret), **challenge_solver**, **webroot**,
    **standalone_address**, **ca_bundle** (PEM, trusted for the CA's HTTPS instead of
    the system's), **verify_tls**, **timeout_seconds** (1-600, per order). One product,
    ``default``, whose optional **profile** names one the CA advertises (``meta.profiles``).
    """

    label = "ACME CA"
    supports_sync = False
    solvers: ClassVar[Mapping[str, type[ChallengeSolver]]] = SOLVERS
    parameters = acme_parameters(SOLVERS)

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        _, errors = _read_settings(config, cls.solvers)
        if errors:
            raise ParameterError(errors)

    def _settings(self) -> _Settings:
        settings, errors = _read_settings(self.config, type(self).solvers)
        if errors:
            raise HandlerError(
                "the ACME gateway's parameters are wrong: "
                + "; ".join(f"{name} {message}" for name, message in errors.items()),
                permanent=True,
            )
        return settings

    @contextmanager
    def session(self, settings: _Settings | None = None) -> Iterator[AcmeSession]:
        """A conversation with the CA, closed afterwards."""
        acme = AcmeSession(settings or self._settings())
        try:
            yield acme
        finally:
            acme.close()

    def ping(self) -> None:
        """The directory answers, hands out nonces, and the account key is accepted.

        The account is looked up, not created (``onlyReturnExisting``): a key the CA does
        not know yet is fine, the first enrollment creates its account.
        """
        settings, errors = _read_settings(self.config, type(self).solvers)
        if "directory_url" in errors:
            raise HandlerError(f"directory_url {errors['directory_url']}", permanent=True)
        with self.session(settings) as acme:
            acme.directory()
            acme.new_nonce()
            if errors:
                raise HandlerError(
                    f"{acme.origin} answers, but the parameters are wrong: "
                    + "; ".join(f"{name} {message}" for name, message in errors.items()),
                    permanent=True,
                )
            acme.account_exists()

    def products(self) -> list[Product]:
        return [
            Product(
                PRODUCT_ID,
                "ACME certificate",
                "A domain-validated certificate for the request's DNS names and IP addresses.",
                parameters=(
                    Parameter(
                        "profile",
                        help="A profile the CA advertises (meta.profiles); empty: its default.",
                    ),
                ),
            )
        ]

    def enroll(self, request: GatewayEnrollment) -> CARecord:
        settings = self._settings()
        try:
            csr = x509.load_pem_x509_csr(request.csr_pem.encode("utf-8"))
        except ValueError as exc:
            raise HandlerError(
                "the request's CSR is not a PEM PKCS#10 request", permanent=True
            ) from exc
        identifiers = _identifiers(request, csr)
        profile = str(request.product_parameters.get("profile") or "").strip()
        names = ", ".join(identifier["value"] for identifier in identifiers)
        deadline = time.monotonic() + settings.timeout
        with self.session(settings) as acme:
            payload: dict[str, Any] = {"identifiers": identifiers}
            if profile:
                offered = acme.meta().get("profiles")
                if not isinstance(offered, dict) or profile not in offered:
                    known = ", ".join(sorted(offered)) if isinstance(offered, dict) else "none"
                    raise HandlerError(
                        f"{acme.origin} offers no profile {profile!r} (it offers: {known})",
                        permanent=True,
                    )
                payload["profile"] = profile
            action = f"placing the order for {names}"
            response = acme.post(action, acme.resource("newOrder"), payload)
            order_url = response.headers.get("Location")
            if not order_url:
                raise HandlerError(f"{acme.origin} accepted the order but gave no URL for it")
            order = _json_object(action, response, acme.origin)
            self._authorize(acme, order, deadline)
            order, issued = self._finalize(acme, order_url, order, csr, deadline)
            if not issued:
                return CARecord(
                    ca_request_id=order_url,
                    status=RecordStatus.PENDING,
                    product_id=request.product_id,
                    message=(
                        f"{acme.origin} is still issuing after {settings.timeout} s "
                        f"(order {order.get('status')})"
                    ),
                )
            record, leaf = self._issued(acme, order_url, order, product_id=request.product_id)
        if leaf.public_key() != csr.public_key():
            raise HandlerError(
                f"{acme.origin} issued a certificate for another key than the CSR's",
                permanent=True,
            )
        kind = "renewed" if request.type == EnrollmentType.RENEW else "issued"
        return dataclasses.replace(record, message=f"{kind} by {acme.origin} for {names}")

    def fetch(self, ca_request_id: str) -> CARecord:
        """The order as it stands (``ca_request_id`` is its URL), with its certificate once
        valid. ACME orders do not show revocation: a revoked certificate reads as issued."""
        if not ca_request_id.startswith(("https://", "http://")):
            raise HandlerError(f"{ca_request_id!r} is not an ACME order URL", permanent=True)
        with self.session() as acme:
            order = acme.post_as_get("reading the order", ca_request_id)
            status = order.get("status")
            if status == "valid":
                return self._issued(acme, ca_request_id, order, product_id=PRODUCT_ID)[0]
            if status == "invalid":
                return CARecord(
                    ca_request_id=ca_request_id,
                    status=RecordStatus.FAILED,
                    product_id=PRODUCT_ID,
                    message=f"the order failed: {_problem_text(order.get('error'))}",
                )
            return CARecord(
                ca_request_id=ca_request_id,
                status=RecordStatus.PENDING,
                product_id=PRODUCT_ID,
                message=f"the order is {status}",
            )

    def revoke(self, request: GatewayRevocation) -> CARecord:
        """revokeCert with the certificate and the reason, signed by the account that
        ordered it; a certificate the CA had already revoked counts as revoked."""
        try:
            certificate = x509.load_pem_x509_certificate(request.certificate_pem.encode("utf-8"))
        except ValueError as exc:
            raise HandlerError("the certificate to revoke is not PEM", permanent=True) from exc
        der = certificate.public_bytes(serialization.Encoding.DER)
        payload = {"certificate": _b64(der), "reason": int(request.reason)}
        with self.session() as acme:
            message = f"revoked at {acme.origin} ({request.reason.keyword})"
            try:
                acme.post("revoking the certificate", acme.resource("revokeCert"), payload)
            except AcmeProblem as exc:
                if exc.problem_type != "alreadyRevoked":
                    raise
                message = f"{acme.origin} had already revoked it"
        return CARecord(
            ca_request_id=request.ca_request_id,
            status=RecordStatus.REVOKED,
            certificate_pem=request.certificate_pem,
            serial_number=format(certificate.serial_number, "x"),
            revoked_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            revocation_reason=request.reason,
            message=message,
        )

    # --- Steps of an enrollment -------------------------------------------------------------

    def _authorize(self, acme: AcmeSession, order: Mapping[str, Any], deadline: float) -> None:
        """Get every authorization of the order valid, solving the pending ones."""
        key = acme.settings.account_key
        assert key is not None  # checked with the settings
        solver = acme.settings.solver(self.config)
        prepared: list[tuple[AcmeIdentifier, str, str]] = []
        pending: list[tuple[str, str, AcmeIdentifier]] = []
        try:
            for authz_url in order.get("authorizations") or []:
                authz = acme.post_as_get("reading an authorization", str(authz_url))
                identifier = AcmeIdentifier(
                    str((authz.get("identifier") or {}).get("type", "")),
                    str((authz.get("identifier") or {}).get("value", "")),
                    bool(authz.get("wildcard")),
                )
                status = authz.get("status")
                if status == "valid":
                    continue
                if status != "pending":
                    # A failed or expired authorization the CA reused: a new order may
                    # get a fresh one.
                    raise HandlerError(
                        f"the authorization for {identifier} is {status}: "
                        f"{_problem_text(self._challenge_error(authz))}",
                        output={"authorization": authz},
                    )
                challenge = self._challenge(authz, solver, identifier)
                token = str(challenge.get("token") or "")
                if not _TOKEN.fullmatch(token):
                    raise HandlerError(
                        f"{acme.origin} sent a challenge token that is not base64url"
                    )
                authorization = key_authorization(token, key.thumbprint)
                solver.prepare(identifier, token, authorization)
                prepared.append((identifier, token, authorization))
                pending.append((str(authz_url), str(challenge["url"]), identifier))
            for _, challenge_url, identifier in pending:
                acme.post(f"asking the CA to validate {identifier}", challenge_url, {})
            for authz_url, _, identifier in pending:
                authz, in_time = acme.poll(
                    f"waiting for the validation of {identifier}",
                    authz_url,
                    waiting=("pending",),
                    deadline=deadline,
                )
                if not in_time:
                    raise HandlerError(
                        f"{acme.origin} had not validated {identifier} after "
                        f"{acme.settings.timeout} s"
                    )
                if authz.get("status") != "valid":
                    problem = self._challenge_error(authz)
                    kind = str((problem or {}).get("type", "")).removeprefix(_ERROR_PREFIX)
                    raise HandlerError(
                        f"{acme.origin} could not validate {identifier}: {_problem_text(problem)}",
                        permanent=kind in PERMANENT_PROBLEMS,
                        output={"authorization": authz},
                    )
        finally:
            for identifier, token, authorization in reversed(prepared):
                try:
                    solver.cleanup(identifier, token, authorization)
                except Exception:
                    # The certificate matters more than a stale challenge file.
                    logger.warning(
                        "could not clean up the challenge for %s", identifier, exc_info=True
                    )

    @staticmethod
    def _challenge(
        authz: Mapping[str, Any], solver: ChallengeSolver, identifier: AcmeIdentifier
    ) -> Mapping[str, Any]:
        challenges = [c for c in authz.get("challenges") or [] if isinstance(c, Mapping)]
        by_type = {str(c.get("type")): c for c in challenges if c.get("url")}
        for kind in solver.challenge_types:
            if kind in by_type:
                return by_type[kind]
        offered = ", ".join(by_type) or "none"
        raise HandlerError(
            f"the CA offers no {' or '.join(solver.challenge_types)} challenge for "
            f"{identifier} (it offers: {offered}): choose another challenge_solver",
            permanent=True,
        )

    @staticmethod
    def _challenge_error(authz: Mapping[str, Any]) -> Mapping[str, Any] | None:
        for challenge in authz.get("challenges") or []:
            if isinstance(challenge, Mapping) and isinstance(challenge.get("error"), Mapping):
                return challenge["error"]
        return None

    def _finalize(
        self,
        acme: AcmeSession,
        order_url: str,
        order: dict[str, Any],
        csr: x509.CertificateSigningRequest,
        deadline: float,
    ) -> tuple[dict[str, Any], bool]:
        """Send the CSR once the order is ready; the order and whether it was issued in time."""
        finalized = False
        while True:
            status = order.get("status")
            if status == "valid":
                return order, True
            if status == "invalid":
                raise HandlerError(
                    f"{acme.origin} failed the order: {_problem_text(order.get('error'))}",
                    output={"order": order},
                )
            if status == "ready" and not finalized:
                der = csr.public_bytes(serialization.Encoding.DER)
                response = acme.post(
                    "sending the CSR", str(order.get("finalize")), {"csr": _b64(der)}
                )
                order = _json_object("sending the CSR", response, acme.origin)
                finalized = True
                continue
            if status not in ("pending", "ready", "processing"):
                raise HandlerError(f"{acme.origin} answered an order in status {status!r}")
            order, in_time = acme.poll(
                "waiting for the order",
                order_url,
                waiting=(str(status),),
                deadline=deadline,
            )
            if not in_time:
                if finalized:
                    return order, False
                raise HandlerError(
                    f"{acme.origin} had not made the order ready after {acme.settings.timeout} s"
                )

    @staticmethod
    def _issued(
        acme: AcmeSession, order_url: str, order: Mapping[str, Any], *, product_id: str
    ) -> tuple[CARecord, x509.Certificate]:
        """The issued record, and its certificate as read once (to check its key)."""
        action = "downloading the certificate"
        certificate_url = order.get("certificate")
        if not isinstance(certificate_url, str) or not certificate_url:
            raise HandlerError(f"{action}: {acme.origin} gave no certificate URL for the order")
        response = acme.post(
            action, certificate_url, None, accept="application/pem-certificate-chain"
        )
        chain = _pem_certificates(action, response.text)
        if not chain:
            raise HandlerError(f"{action}: {acme.origin} sent no certificate")
        leaf, *issuers = chain
        record = CARecord(
            ca_request_id=order_url,
            status=RecordStatus.ISSUED,
            certificate_pem=_pem(leaf),
            chain_pem=tuple(_pem(issuer) for issuer in issuers),
            serial_number=format(leaf.serial_number, "x"),
            product_id=product_id,
            message=f"issued by {acme.origin}",
        )
        return record, leaf
