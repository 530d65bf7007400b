"""The CFSSL CA gateway ("certyard.cfssl"): issue and revoke through ``cfssl serve``.

CFSSL's HTTP API (``/api/v1/cfssl/...``) signs a CSR with a profile of its signing
configuration and revokes by serial; it cannot list what it issued, nor (in the 1.2
release Debian ships) look one certificate up by serial. Both need the CA's *certificate
database* (``cfssl serve -db-config``), a SQLite file in which CFSSL records every
certificate it signs, with its revocation status. This gateway reads that file, read-only,
when ``certdb_path`` is set: to fetch one record and to synchronize.

What the certdb holds (CFSSL 1.2, table ``certificates``): ``serial_number`` as decimal
text, ``authority_key_identifier`` as lowercase hex, ``ca_label``, ``status`` (``good`` or
``revoked``), ``reason`` (the RFC 5280 code), ``expiry``, ``revoked_at`` and ``pem``; its
key is the pair (serial, authority key identifier). CFSSL 1.2 records an *empty* authority
key identifier (it reads it from the template before signing), later releases the real
one: the gateway names a certificate by its own serial and authority key identifier and
tries both forms when it speaks to CFSSL.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from handlers.base import HandlerError
from handlers.builtin._common import setting
from handlers.gateways import (
    CAGateway,
    CARecord,
    GatewayEnrollment,
    GatewayRevocation,
    Product,
    RecordStatus,
    RevocationReason,
)
from handlers.parameters import Parameter, ParameterError, ParameterType

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/cfssl/"
#: Rows read from the certdb per query while synchronizing. Each batch is read whole
#: before any record is yielded, so no read lock is held while the platform stores the
#: records (a held lock would make CFSSL's own inserts fail with "database is locked").
SYNC_BATCH_SIZE = 200
_RESPONSE_EXCERPT = 200
_HEX = re.compile(r"[0-9a-f]*")
# CFSSL's error codes are category * 1000 + reason (cfssl/errors). The categories that
# say the request or the configuration is wrong: Certificate, PrivateKey, Root, Policy,
# CSR. The others (intermediates, OCSP, the certificate store, dialing a remote) are the
# CA's own trouble and may pass.
_PERMANENT_CATEGORIES = frozenset({1, 2, 4, 5, 9})
_CERTSTORE_CATEGORY = 11
# How the platform writes SANs, and what CFSSL's "hosts" makes of each value: an IP
# address, an email address (with "@"), anything else a DNS name.
_HOST_PREFIXES = frozenset({"dns", "ip", "ip address", "email", "rfc822"})
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?"
)
# The certdb queries, written out whole (the columns CFSSL 1.2's INSERT names, and rowid).
_SYNC_QUERY = """
    SELECT rowid, serial_number, authority_key_identifier, ca_label, status, reason,
           revoked_at, pem
    FROM certificates WHERE rowid > ? ORDER BY rowid LIMIT ?"""
_SYNC_LABEL_QUERY = """
    SELECT rowid, serial_number, authority_key_identifier, ca_label, status, reason,
           revoked_at, pem
    FROM certificates WHERE rowid > ? AND ca_label = ? ORDER BY rowid LIMIT ?"""
_SERIAL_QUERY = """
    SELECT rowid, serial_number, authority_key_identifier, ca_label, status, reason,
           revoked_at, pem
    FROM certificates WHERE serial_number = ? ORDER BY rowid"""


def _shown_url(url: str) -> str:
    """The URL as messages show it: without credentials, query or fragment."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "the configured URL"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path.rstrip('/')}"


def _permanent(code: Any) -> bool:
    """Whether a CFSSL error code says that the same request would fail again."""
    if not isinstance(code, int):
        return False
    if 400 <= code < 500:  # CFSSL's HTTP-like codes: a bad request, a refused token
        return True
    if code < 1000:
        return False
    return code // 1000 in _PERMANENT_CATEGORIES


def _not_found(error: HandlerError) -> bool:
    """Whether CFSSL refused because its certificate store has no such certificate."""
    return any(
        isinstance(item.get("code"), int)
        and item["code"] // 1000 == _CERTSTORE_CATEGORY
        and "not found" in str(item.get("message", "")).lower()
        for item in error.output.get("errors", [])
    )


def _hosts(sans: tuple[str, ...]) -> list[str]:
    """The platform's ``TYPE:value`` SANs as CFSSL's ``hosts`` (values without prefix).

    CFSSL 1.2 decides a name's type by its form, so a type it cannot tell apart (a URI
    would become a DNS name) is refused instead of issued wrongly.
    """
    hosts: list[str] = []
    for san in sans:
        kind, colon, value = san.partition(":")
        if not colon or kind.strip().lower() not in _HOST_PREFIXES:
            raise HandlerError(
                f"CFSSL can only put DNS names, IP addresses and email addresses in a "
                f"certificate, not {san!r}",
                permanent=True,
            )
        hosts.append(value.strip())
    return hosts


def _iso_utc(value: Any) -> str | None:
    """A certdb timestamp as ISO 8601 UTC; None when empty or Go's zero time (year 1).

    CFSSL writes ``revoked_at`` with SQLite's CURRENT_TIMESTAMP (``2026-12-01 14:35:51``,
    UTC) and its zero value as ``0001-01-01 00:00:00+00:00``; other drivers add
    nanoseconds, which ``datetime`` cannot read as they are.
    """
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _TIMESTAMP.match(str(value or "").strip())
    if not match or match[1].startswith("0001-"):
        return None
    day, clock, fraction, zone = match.groups()
    text = f"{day}T{clock}"
    if fraction:
        text += "." + fraction[:6].ljust(6, "0")
    zone = zone or "+00:00"
    text += "+00:00" if zone == "Z" else zone
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(dt.UTC).isoformat()


def _reason(value: Any) -> RevocationReason:
    try:
        return RevocationReason(int(value))
    except (TypeError, ValueError):
        return RevocationReason.UNSPECIFIED


def _authority_key_id(certificate: x509.Certificate) -> str:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return ""
    return (extension.value.key_identifier or b"").hex()


def _subject_key_id(certificate: x509.Certificate) -> str:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return ""
    return extension.value.digest.hex()


def cfssl_request_id(certificate: x509.Certificate) -> str:
    """The gateway's ``ca_request_id`` of a certificate: ``<serial hex>:<AKI hex>``.

    The pair CFSSL's certdb keys on, taken from the certificate itself (not from the
    certdb, where CFSSL 1.2 leaves the AKI empty), so enrollment, fetch and synchronize
    give the same identifier whatever the CFSSL release.
    """
    return f"{certificate.serial_number:x}:{_authority_key_id(certificate)}"


def _request_id_parse(ca_request_id: str) -> tuple[int, str]:
    """The serial and the authority key identifier a ``ca_request_id`` names."""
    serial_hex, colon, aki = ca_request_id.strip().lower().partition(":")
    if not colon or not serial_hex or not _HEX.fullmatch(serial_hex) or not _HEX.fullmatch(aki):
        raise HandlerError(
            f"{ca_request_id!r} is not a CFSSL request id (<serial hex>:<authority key id hex>)",
            permanent=True,
        )
    return int(serial_hex, 16), aki


class CfsslGateway(CAGateway):
    """Issues and revokes certificates through a CFSSL server (``cfssl serve``).

    **Products** are the signing profiles of the CFSSL configuration (``-config``). CFSSL's
    API cannot list them, and CFSSL 1.2 signs with its *default* policy when asked for a
    profile it does not have; so list in **profiles** the ones templates may use, and the
    gateway refuses any other. ``default`` names the configuration's default policy.

    Enrollment POSTs the CSR to ``/api/v1/cfssl/sign`` with the profile and the approved
    SANs as ``hosts`` (DNS names, IP addresses, email addresses; the subject is the CSR's,
    validity the profile's). With **auth_key** set it uses ``/api/v1/cfssl/authsign``
    instead: the request signed with HMAC-SHA256 under that key, which must be the
    ``auth_key`` of every listed profile in CFSSL's configuration (``"type": "standard"``).
    Renewal and reissue sign the new CSR. CFSSL has no idempotency key: a request whose
    answer was lost (a timeout) and is tried again may be issued twice.

    Revocation POSTs to ``/api/v1/cfssl/revoke`` with the RFC 5280 reason; it needs a
    CFSSL started with a certificate database (``-db-config``), where it is recorded.
    CFSSL's revoke endpoint asks no credential: keep its API on a network only the
    platform reaches.

    **certdb_path** is that database's SQLite file, readable by the platform's workers.
    CFSSL's API can neither list what it issued nor find a certificate by serial, so
    fetching a record and synchronizing read that file (read-only, never locked for
    long). Synchronization yields the certificates in the order CFSSL recorded them; an
    incremental one yields those recorded since the last, so a revocation of a
    certificate already synchronized shows in the next *full* synchronization (or
    fetch). With **label** set, only the certificates CFSSL recorded under that label.

    Parameters: **url** (``http://127.0.0.1:8888``), **profiles** (one a line),
    **label** (the CA label of a multi-root CFSSL), **auth_key** (hex, never shown
    again), **certdb_path** (absolute), **timeout_seconds** (per HTTP request).
    """

    label = "CFSSL"
    supports_sync = True
    parameters = (
        Parameter(
            "url",
            ParameterType.URL,
            help="The CFSSL server, e.g. http://127.0.0.1:8888 (the API is under /api/v1/cfssl/).",
            required=True,
        ),
        Parameter(
            "profiles",
            ParameterType.LIST,
            help="The signing profiles of CFSSL's configuration templates may use, one a line.",
            default=["default"],
        ),
        Parameter(
            "label",
            ParameterType.STRING,
            help="The CA label, for a CFSSL serving several CAs; empty for its only one.",
        ),
        Parameter(
            "auth_key",
            ParameterType.SECRET,
            help="The hexadecimal auth_key of the profiles, to sign through authsign (HMAC).",
        ),
        Parameter(
            "certdb_path",
            ParameterType.STRING,
            help="CFSSL's SQLite certificate database (its -db-config), for fetch and sync.",
            pattern=r"/.+",
        ),
        Parameter(
            "timeout_seconds",
            ParameterType.INTEGER,
            help="How long one request to CFSSL may take.",
            default=30,
            minimum=1,
            maximum=300,
        ),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        errors: dict[str, str] = {}
        auth_key = config.get("auth_key") or ""
        if auth_key:
            try:
                if not bytes.fromhex(auth_key.strip()):
                    raise ValueError
            except ValueError:
                errors["auth_key"] = "must be the hexadecimal key of CFSSL's auth_keys"
        profiles = config.get("profiles") or []
        if len(set(profiles)) != len(profiles):
            errors["profiles"] = "names a profile twice"
        if errors:
            raise ParameterError(errors)

    # --- The contract -------------------------------------------------------------------

    def ping(self) -> None:
        """Check that CFSSL answers, has a CA, and (with an auth key) accepts the key.

        The key is checked without issuing anything: an authsign request with an empty
        CSR is refused for its token before CFSSL looks at the CSR.
        """
        with self._client() as client:
            self._ca_certificate(client)
            if self._auth_key():
                for profile in self._profiles():
                    try:
                        self._sign(client, {"certificate_request": "", "profile": profile})
                    except HandlerError as exc:
                        messages = " ".join(
                            str(item.get("message", "")) for item in exc.output.get("errors", [])
                        )
                        if "missing parameter" not in messages:
                            raise
                        # The token was accepted; only the (absent) CSR was refused.

    def products(self) -> list[Product]:
        return [
            Product(id=name, name=name, description=f"CFSSL signing profile {name!r}")
            for name in self._profiles()
        ]

    def enroll(self, request: GatewayEnrollment) -> CARecord:
        self.validate_product(request.product_id, request.product_parameters)
        payload: dict[str, Any] = {
            "certificate_request": request.csr_pem,
            # Always sent, even empty: CFSSL then issues exactly the approved names, not
            # whatever else the CSR asked for.
            "hosts": _hosts(request.sans),
            "profile": request.product_id,
        }
        label = self._label()
        if label:
            payload["label"] = label
        with self._client() as client:
            # The CA first: if CFSSL cannot say who it is, nothing has been issued yet and
            # the request can simply be tried again.
            ca = self._ca_certificate(client)
            result = self._sign(client, payload)
        certificate = self._certificate(result.get("certificate"), "sign")
        return self._record(certificate, RecordStatus.ISSUED, ca, product_id=request.product_id)

    def fetch(self, ca_request_id: str) -> CARecord:
        serial, aki = _request_id_parse(ca_request_id)
        path = self._certdb_path("fetching a certificate")
        with self._client() as client:
            ca = self._ca_certificate(client)
        with self._certdb(path) as connection:
            row = self._certdb_row(connection, serial, aki)
        if row is None:
            raise HandlerError(
                f"CFSSL's certificate database {path} holds no certificate {ca_request_id}",
                permanent=True,
            )
        record = self._row_record(row, ca)
        if record is None:
            raise HandlerError(f"the certificate database {path} holds an unreadable PEM")
        return record

    def revoke(self, request: GatewayRevocation) -> CARecord:
        serial, aki = _request_id_parse(request.ca_request_id)
        certdb = self._certdb_path_or_none()
        if certdb:
            current = self.fetch(request.ca_request_id)
            if current.status == RecordStatus.REVOKED:
                # Revoking again would move CFSSL's revocation time (and reason).
                return current
        payload = {
            # The certdb's form of the serial: decimal text (hex is "not found").
            "serial": str(serial),
            "authority_key_id": aki,
            # CFSSL takes the RFC 5280 keyword in any case, or the code.
            "reason": request.reason.keyword,
        }
        with self._client() as client:
            try:
                try:
                    self._call(client, "revoke", payload)
                except HandlerError as exc:
                    if not (_not_found(exc) and aki):
                        raise
                    # CFSSL 1.2 recorded the certificate under an empty authority key id.
                    self._call(client, "revoke", {**payload, "authority_key_id": ""})
            except HandlerError as exc:
                if not _not_found(exc):
                    raise
                raise HandlerError(
                    f"CFSSL has no record of {request.ca_request_id} to revoke (it records "
                    f"only what it signs while started with a certificate database)",
                    permanent=True,
                    output=exc.output,
                ) from exc
        if certdb:
            return self.fetch(request.ca_request_id)
        return CARecord(
            ca_request_id=request.ca_request_id,
            status=RecordStatus.REVOKED,
            certificate_pem=request.certificate_pem or None,
            serial_number=f"{serial:x}",
            revoked_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            revocation_reason=request.reason,
        )

    def synchronize(self, *, cursor: str | None, full: bool) -> Iterator[CARecord]:
        """Yield the certdb's certificates by ``rowid``, in batches; the cursor is the rowid.

        The rowid is the order CFSSL inserted rows in (its table has no integer key of its
        own; a ``VACUUM`` of the file could renumber, after which run a full
        synchronization).
        """
        path = self._certdb_path("synchronizing")
        after = 0
        if cursor and not full:
            if not cursor.isdigit():
                raise HandlerError(
                    f"the synchronization cursor {cursor!r} is not a CFSSL certdb row number: "
                    f"run a full synchronization",
                    permanent=True,
                )
            after = int(cursor)
        with self._client() as client:
            ca = self._ca_certificate(client)
        label = self._label()
        with self._certdb(path) as connection:
            while True:
                arguments: tuple[Any, ...]
                if label:
                    query, arguments = _SYNC_LABEL_QUERY, (after, label, SYNC_BATCH_SIZE)
                else:
                    query, arguments = _SYNC_QUERY, (after, SYNC_BATCH_SIZE)
                rows = self._certdb_query(connection, path, query, arguments)
                for row in rows:
                    after = row["rowid"]
                    record = self._row_record(row, ca)
                    if record is not None:
                        yield record
                if len(rows) < SYNC_BATCH_SIZE:
                    return

    # --- HTTP ---------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        timeout = int(setting(self, "timeout_seconds"))
        return httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": "Certyard-CFSSL/1", "Content-Type": "application/json"},
        )

    def _call(self, client: httpx.Client, endpoint: str, payload: Mapping[str, Any]) -> Any:
        """POST ``payload`` to one endpoint; CFSSL's ``result``, or HandlerError."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        return self._post(client, endpoint, body)

    def _post(self, client: httpx.Client, endpoint: str, body: bytes) -> Any:
        url: str = setting(self, "url")
        shown = _shown_url(url)
        target = url.rstrip("/") + API_PREFIX + endpoint
        try:
            response = client.post(target, content=body)
        except httpx.TimeoutException as exc:
            timeout = setting(self, "timeout_seconds")
            raise HandlerError(f"CFSSL at {shown} did not answer within {timeout} s") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise HandlerError(f"the URL {shown} cannot be used: {exc}", permanent=True) from exc
        except httpx.TransportError as exc:
            raise HandlerError(
                f"could not connect to CFSSL at {shown} ({type(exc).__name__}: {exc})"
            ) from exc
        output: dict[str, Any] = {"endpoint": endpoint, "status_code": response.status_code}
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
            excerpt = response.text[:_RESPONSE_EXCERPT].strip()
            problem = f"{shown} answered {response.status_code} to {API_PREFIX}{endpoint}" + (
                f" ({excerpt})" if excerpt else ""
            )
            if response.status_code >= 500 or response.status_code == 429:
                raise HandlerError(problem, output=output)
            # Something answers at that address, and it is not CFSSL: the URL is wrong.
            raise HandlerError(
                f"{problem}, which is not CFSSL: check the url", permanent=True, output=output
            )
        if answer["success"]:
            return answer.get("result")
        errors = [
            {"code": item.get("code"), "message": str(item.get("message", ""))}
            for item in answer.get("errors") or []
            if isinstance(item, dict)
        ] or [{"code": response.status_code, "message": "refused without saying why"}]
        output["errors"] = errors
        said = "; ".join(f"{item['message']} (code {item['code']})" for item in errors)
        raise HandlerError(
            f"CFSSL at {shown} refused {endpoint}: {said}",
            permanent=any(_permanent(item["code"]) for item in errors),
            output=output,
        )

    def _sign(self, client: httpx.Client, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """Sign through ``sign``, or ``authsign`` with the request HMAC'd under the key.

        CFSSL's authenticated request is ``{"token": b64(HMAC-SHA256(key, request)),
        "request": b64(request)}``: the token covers the exact bytes CFSSL decodes.
        """
        key = self._auth_key()
        if key is None:
            result = self._call(client, "sign", payload)
        else:
            inner = json.dumps(payload, separators=(",", ":")).encode()
            token = hmac.new(key, inner, hashlib.sha256).digest()
            envelope = {
                "token": base64.b64encode(token).decode("ascii"),
                "request": base64.b64encode(inner).decode("ascii"),
            }
            result = self._call(client, "authsign", envelope)
        if not isinstance(result, dict):
            raise HandlerError("CFSSL answered the signing request without a result")
        return result

    def _ca_certificate(self, client: httpx.Client) -> x509.Certificate:
        """The signing CA's certificate, from ``info`` (also proves the URL is CFSSL)."""
        payload = {"label": self._label()} if self._label() else {}
        result = self._call(client, "info", payload)
        if not isinstance(result, dict) or not result.get("certificate"):
            raise HandlerError(
                f"CFSSL at {_shown_url(setting(self, 'url'))} gave no CA certificate "
                f"(is it started with -ca and -ca-key?)",
                permanent=True,
            )
        return self._certificate(result["certificate"], "info")

    @staticmethod
    def _certificate(pem: Any, endpoint: str) -> x509.Certificate:
        if isinstance(pem, bytes):
            pem = pem.decode("ascii", "replace")
        if not isinstance(pem, str) or not pem.strip():
            raise HandlerError(f"CFSSL's {endpoint} answer holds no certificate")
        try:
            return x509.load_pem_x509_certificate(pem.encode("ascii", "replace"))
        except ValueError as exc:
            raise HandlerError(
                f"CFSSL's {endpoint} answer holds an unreadable certificate"
            ) from exc

    # --- Records ------------------------------------------------------------------------

    @staticmethod
    def _record(
        certificate: x509.Certificate,
        status: RecordStatus,
        ca: x509.Certificate,
        *,
        product_id: str = "",
        revoked_at: str | None = None,
        reason: RevocationReason | None = None,
        cursor: str | None = None,
    ) -> CARecord:
        aki = _authority_key_id(certificate)
        issued_by_ca = certificate.issuer == ca.subject and (
            not aki or not _subject_key_id(ca) or aki == _subject_key_id(ca)
        )
        chain: tuple[str, ...] = ()
        if issued_by_ca:
            chain = (ca.public_bytes(Encoding.PEM).decode("ascii"),)
        return CARecord(
            ca_request_id=cfssl_request_id(certificate),
            status=status,
            certificate_pem=certificate.public_bytes(Encoding.PEM).decode("ascii"),
            chain_pem=chain,
            serial_number=f"{certificate.serial_number:x}",
            revoked_at=revoked_at,
            revocation_reason=reason,
            product_id=product_id,
            sync_cursor=cursor,
        )

    def _row_record(self, row: sqlite3.Row, ca: x509.Certificate) -> CARecord | None:
        """One certdb row as a record; None (and a warning) for a PEM that will not parse."""
        pem = row["pem"]
        try:
            certificate = self._certificate(pem, "certdb")
        except HandlerError:
            logger.warning("CFSSL certdb row %s holds an unreadable PEM: skipped", row["rowid"])
            return None
        status = str(row["status"] or "").lower()
        if status == "revoked":
            return self._record(
                certificate,
                RecordStatus.REVOKED,
                ca,
                revoked_at=_iso_utc(row["revoked_at"]),
                reason=_reason(row["reason"]),
                cursor=str(row["rowid"]),
            )
        return self._record(certificate, RecordStatus.ISSUED, ca, cursor=str(row["rowid"]))

    # --- The certificate database -------------------------------------------------------

    def _certdb_path_or_none(self) -> str | None:
        path = setting(self, "certdb_path")
        return str(path) if path else None

    def _certdb_path(self, doing: str) -> str:
        path = self._certdb_path_or_none()
        if not path:
            raise HandlerError(
                f"{doing} needs certdb_path: CFSSL's API cannot list what it issued nor find "
                f"a certificate by serial, so the gateway reads the certificate database "
                f"CFSSL writes (its -db-config SQLite file)",
                permanent=True,
            )
        return path

    @contextlib.contextmanager
    def _certdb(self, path: str) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the certdb, closed on exit (also a generator's)."""
        uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
        timeout = int(setting(self, "timeout_seconds"))
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=timeout)
        except sqlite3.Error as exc:
            raise HandlerError(
                f"cannot open CFSSL's certificate database {path}: {exc}", permanent=True
            ) from exc
        connection.row_factory = sqlite3.Row
        try:
            yield connection
        finally:
            connection.close()

    @staticmethod
    def _certdb_query(
        connection: sqlite3.Connection, path: str, query: str, arguments: tuple[Any, ...]
    ) -> list[sqlite3.Row]:
        """All the rows of one query, read at once so that no lock outlives the call."""
        try:
            return connection.execute(query, arguments).fetchall()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise HandlerError(f"CFSSL's certificate database {path} is busy: {exc}") from exc
            raise HandlerError(
                f"cannot read {path} as CFSSL's certificate database: {exc}", permanent=True
            ) from exc
        except sqlite3.DatabaseError as exc:
            raise HandlerError(
                f"{path} is not a readable CFSSL certificate database: {exc}", permanent=True
            ) from exc

    def _certdb_row(
        self, connection: sqlite3.Connection, serial: int, aki: str
    ) -> sqlite3.Row | None:
        """The row of one certificate: by decimal serial, then by its AKI (or CFSSL 1.2's '')."""
        path = self._certdb_path_or_none() or ""
        rows = self._certdb_query(
            connection,
            path,
            _SERIAL_QUERY,
            (str(serial),),
        )
        for row in rows:
            recorded = str(row["authority_key_identifier"] or "").lower()
            if recorded == aki:
                return row
            if recorded == "":
                try:
                    certificate = self._certificate(row["pem"], "certdb")
                except HandlerError:
                    continue
                if _authority_key_id(certificate) == aki:
                    return row
        return None

    # --- Settings -----------------------------------------------------------------------

    def _profiles(self) -> list[str]:
        names = setting(self, "profiles") or ["default"]
        return list(dict.fromkeys(str(name).strip() for name in names if str(name).strip()))

    def _label(self) -> str:
        return str(setting(self, "label") or "").strip()

    def _auth_key(self) -> bytes | None:
        key = str(setting(self, "auth_key") or "").strip()
        if not key:
            return None
        try:
            return bytes.fromhex(key)
        except ValueError as exc:
            # Never quote the key itself.
            raise HandlerError("auth_key is not hexadecimal", permanent=True) from exc
