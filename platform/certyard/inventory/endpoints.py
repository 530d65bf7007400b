"""What a TLS scan reported about each endpoint, checked and recorded (``TlsEndpoint``).

An inventory entry may carry an ``endpoint`` observation (``orchestrators.scan``): the
store type connected to a network endpoint and says what happened. With status ``ok`` the
entry is also an ordinary entry (its certificates are the chain presented, its alias the
endpoint's location); with any other status it is only the observation: nothing was served
there, so no location is made or kept. Everything an agent reports is checked here as it
would be from an attacker: sizes, types, known status and version names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from certyard.inventory.models import CertificateStore, TlsEndpoint
from certyard.x509 import text_is_storable
from orchestrators.scan import EndpointStatus, endpoint_alias, host_name_valid

_TLS_VERSIONS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"})
_STATUSES = frozenset(str(status) for status in EndpointStatus) - {
    str(EndpointStatus.INVALID_CERTIFICATE)  # the platform's verdict, never an agent's
}
_REASON_LENGTH = 300
_CIPHER_LENGTH = 100


@dataclass(slots=True)
class EndpointObservation:
    """One endpoint as reported, checked. ``chain`` is filled in once the entry's
    certificates are known (SHA-256, leaf first)."""

    host: str
    port: int
    sni: str
    status: str
    reason: str
    tls_version: str
    cipher: str
    alias: str
    chain: list[str] = field(default_factory=list)
    certificate_id: int | None = None


def _host_valid(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host_name_valid(host)
    return True


def endpoint_observation(raw: Any, alias: str) -> tuple[EndpointObservation | None, str | None]:
    """The observation of an entry's ``endpoint`` object, or why it cannot be recorded."""
    if not isinstance(raw, Mapping):
        return None, "endpoint must be an object with host, port, sni, status and reason"
    host, port, sni = raw.get("host"), raw.get("port"), raw.get("sni") or ""
    if not isinstance(host, str) or not _host_valid(host):
        return None, "endpoint.host must be a host name or an IP address"
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return None, "endpoint.port must be a port number (1-65535)"
    if not isinstance(sni, str) or (sni and not host_name_valid(sni)):
        return None, "endpoint.sni must be empty or a host name"
    status = raw.get("status")
    if status not in _STATUSES:
        return None, f"endpoint.status must be one of {', '.join(sorted(_STATUSES))}"
    reason = raw.get("reason") or ""
    version = raw.get("tls_version") or ""
    cipher = raw.get("cipher") or ""
    if not isinstance(reason, str) or not text_is_storable(reason):
        return None, "endpoint.reason must be text"
    if version and version not in _TLS_VERSIONS:
        return None, f"endpoint.tls_version must be one of {', '.join(sorted(_TLS_VERSIONS))}"
    if not isinstance(cipher, str) or len(cipher) > _CIPHER_LENGTH or not cipher.isprintable():
        return None, "endpoint.cipher must be a cipher suite name"
    if alias != endpoint_alias(host, port, sni or None):
        return None, (
            f"the alias of an endpoint must be {endpoint_alias(host, port, sni or None)!r}"
        )
    return (
        EndpointObservation(
            host=host.lower(),
            port=port,
            sni=sni.lower(),
            status=status,
            reason=reason[:_REASON_LENGTH],
            tls_version=version,
            cipher=cipher,
            alias=alias,
        ),
        None,
    )


_ON_SUCCESS = ("status", "reason", "tls_version", "cipher", "certificate", "chain", "scanned_at",
               "last_ok_at", "upload")  # fmt: skip
_ON_FAILURE = ("status", "reason", "scanned_at", "upload")


def endpoints_record(
    *,
    store: CertificateStore,
    upload: str,
    observations: Sequence[EndpointObservation],
    now: dt.datetime,
) -> None:
    """Upsert the observations of one chunk (inside its staging transaction). A failure
    keeps the certificate and chain served last; a success replaces them."""
    if not observations:
        return
    # One row per endpoint: two entries may name it in different cases (the aliases differ,
    # the keys do not), and an upsert may not touch a row twice. The first one counts.
    unique: dict[tuple[str, int, str], EndpointObservation] = {}
    for observation in observations:
        unique.setdefault((observation.host, observation.port, observation.sni), observation)
    observations = list(unique.values())
    served = [o for o in observations if o.status == EndpointStatus.OK]
    failed = [o for o in observations if o.status != EndpointStatus.OK]
    for group, update_fields in ((served, _ON_SUCCESS), (failed, _ON_FAILURE)):
        if not group:
            continue
        TlsEndpoint.objects.bulk_create(
            [
                TlsEndpoint(
                    store=store,
                    host=o.host,
                    port=o.port,
                    sni=o.sni,
                    status=o.status,
                    reason=o.reason,
                    tls_version=o.tls_version,
                    cipher=o.cipher,
                    certificate_id=o.certificate_id,
                    chain=o.chain,
                    first_seen=now,
                    scanned_at=now,
                    last_ok_at=now if o.status == EndpointStatus.OK else None,
                    upload=upload,
                )
                for o in group
            ],
            batch_size=500,
            update_conflicts=True,
            unique_fields=["store", "host", "port", "sni"],
            update_fields=list(update_fields),
        )


def endpoints_prune(*, store: CertificateStore, upload: str) -> int:
    """At commit: forget the endpoints this report did not try (the store's targets or
    ports changed). Only for a scan store, whose every report tries every endpoint."""
    deleted, _ = TlsEndpoint.objects.filter(store=store).exclude(upload=upload).delete()
    return deleted
