"""The store-type extension contract: what a third party implements to teach the agent a store.

A *store type* is a kind of certificate store (a folder of PEM files, a Java keystore, an
appliance reached over SSH, ...). The platform knows store types by their short name
(``PEM``, ``JKS``, ...); the agent runs the jobs for a store type with the
:class:`StoreTypeExtension` registered under the same short name.

Extensions are discovered through the Python entry-point group ``certyard.store_types``
(:data:`ENTRY_POINT_GROUP`) by the agent (``orchestrators.agent.store_types``: this module is
the contract alone and knows no implementation). A package ships one by declaring, in its
``pyproject.toml``::

    [project.entry-points."certyard.store_types"]
    ACME_APPLIANCE = "acme_certyard.store:ApplianceStore"

and implementing the class::

    from orchestrators.protocol import StoreOperation
    from orchestrators.sdk import (
        InventoryEntry, JobConfiguration, StoreError, StoreTypeExtension, os_error_transient,
    )

    class ApplianceStore(StoreTypeExtension):
        short_name = "ACME_APPLIANCE"
        operations = frozenset({StoreOperation.INVENTORY})

        def inventory(self, job: JobConfiguration) -> list[InventoryEntry]:
            try:
                slots = read_slots(job.store.client_machine, job.store.password)
            except OSError as exc:
                # Unreachable now may answer later: transient, the platform retries.
                raise StoreError(
                    f"cannot reach {job.store.client_machine}: {exc}",
                    transient=os_error_transient(exc),
                ) from exc
            return [
                InventoryEntry(slot.name, slot.has_key, [slot.cert_pem, *slot.chain_pems])
                if slot.cert_pem
                else InventoryEntry(slot.name, False, [], error="the slot holds no certificate")
                for slot in slots
            ]

A ``StoreError`` is permanent unless raised with ``transient=True``: a permanent one ends
the job at once (wrong password, no such store), a transient one (I/O error, busy, timeout)
is retried by the platform.

An entry the store found but cannot use (an empty slot, a damaged file, a keystore the store
password does not open) is reported with ``error`` set instead of certificates: the platform
records it as a rejected entry with that reason, and the job ends with a warning rather than
a success that hides what was missed.

After installing the package next to the agent, ``certyard-orchestrator register`` advertises
``ACME_APPLIANCE.Inventory`` among the agent's capabilities.

The agent creates a fresh instance (no constructor arguments) for every job, and calls one
method on it. An extension must not log ``job.store.password``.
"""

from __future__ import annotations

import abc
import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from orchestrators.declarations import StoreTypeDeclaration
from orchestrators.protocol import JobType, StoreOperation
from orchestrators.scan import ScanAllowance

ENTRY_POINT_GROUP = "certyard.store_types"


class StoreError(Exception):
    """A store operation failed for a reason an administrator can act on.

    The message is shown to administrators as the job's error, so it should say what went
    wrong and where (``"store path /etc/ssl/certs does not exist"``), and never contain a
    secret. Any other exception also fails the job, but reads as an agent bug.

    A StoreError is **permanent** by default: another attempt would meet it again until
    someone changes something (the path is outside the agent's roots, does not exist, is
    not the file or folder the store type expects, the password is wrong, the store does
    not parse). The agent then tells the platform the failure is final, and the job ends
    at once instead of using up its attempts. Raise it with ``transient=True`` (or raise
    :class:`TransientStoreError`) when another attempt may succeed as things stand: an
    I/O error, a timeout, a busy or locked file, an unreachable device. For an
    ``OSError``, :func:`os_error_transient` tells which it is::

        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}",
                             transient=os_error_transient(exc)) from exc
    """

    transient: bool = False

    def __init__(self, message: str = "", *, transient: bool | None = None) -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient


class TransientStoreError(StoreError):
    """A :class:`StoreError` another attempt may not meet: the platform retries the job."""

    transient = True


# errno values of a failure that may pass by itself: I/O errors, a busy or locked file, a
# timeout, exhausted resources, a device or host that does not answer now.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EIO", "EAGAIN", "EWOULDBLOCK", "EBUSY", "ETXTBSY", "EINTR", "ETIMEDOUT", "ENOLCK",
        "EDEADLK", "ESTALE", "ENOMEM", "ENFILE", "EMFILE", "ENOBUFS", "ENOSPC", "EDQUOT",
        "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "EHOSTUNREACH", "EHOSTDOWN",
        "ENETUNREACH", "ENETDOWN", "ENETRESET", "EREMOTEIO",
    )
    if hasattr(errno, name)
)  # fmt: skip


def os_error_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (an ``OSError``) is a failure another attempt may not meet
    (:data:`TRANSIENT_ERRNOS`, a timeout, a connection failure); False for the rest
    (no such file, permission denied, not a directory ...), which stay until someone acts."""
    if isinstance(exc, TimeoutError | ConnectionError | BlockingIOError | InterruptedError):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


@dataclass(frozen=True, slots=True)
class StoreConfiguration:
    """The certificate store a job targets, as configured on the platform.

    Attributes:
        id: The platform's identifier of the store.
        store_type: The store type's short name (``"PEM"``).
        client_machine: The machine the store lives on (a host name, or the agent's own).
        store_path: Where the store is on that machine (a path, a keystore file, ...).
        properties: The store's custom properties, as defined by its store type.
        password: The store password, if any. Never log it; it is left out of ``repr``.
            When the platform holds only a reference (``ref+agent:...``), the agent has
            resolved it before the store type sees the job (``orchestrators.secret_refs``).
        endpoint: The TLS endpoint served from this store (``{"host", "port", "sni"}``), for
            the agent to check after a write that the new certificate is served; None: none.
    """

    id: str
    store_type: str
    client_machine: str
    store_path: str
    properties: dict[str, Any] = field(default_factory=dict)
    password: str | None = field(default=None, repr=False)
    endpoint: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class JobConfiguration:
    """One job the platform leased to this agent.

    Attributes:
        job_id: The platform's identifier of the job.
        type: What to do (inventory, add, remove, ...).
        attempt: 1 for the first run, more when the platform re-offers the job.
        store: The store the job targets.
        payload: Job-type specific data (for ``add``: the certificate and alias, ...).
        state_dir: A private folder (mode 0700) where the store type may keep state
            between jobs of this store, such as a cache of what it read last time; None
            when the agent gives none. The agent creates it; the extension owns its contents.
        store_roots: The folders of this machine the agent's administrator allows stores
            in (real paths). The agent refuses a job whose store path lies outside them
            before any extension runs; an extension that follows links or reads other
            paths must check each with :func:`path_within_roots`. None: no restriction
            (an agent run without a configuration, as in tests).
        max_file_bytes: The largest file an extension may read whole; None: no limit.
        scan_allowance: What the agent's administrator allows it to connect to for network
            discovery (:class:`orchestrators.scan.ScanAllowance`); an extension that opens
            connections to targets the platform named checks each one against it first.
            None: no restriction (an agent run without a configuration, as in tests).
    """

    job_id: str
    type: JobType
    attempt: int
    store: StoreConfiguration
    payload: dict[str, Any] = field(default_factory=dict)
    state_dir: Path | None = None
    store_roots: tuple[str, ...] | None = None
    max_file_bytes: int | None = None
    scan_allowance: ScanAllowance | None = None

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> JobConfiguration:
        """Build from the body of ``GET jobs/<id>/config``.

        Expected shape (``id`` is accepted for ``job_id``, and ``type`` for ``store_type``)::

            {"job_id": "...", "type": "inventory", "attempt": 1, "payload": {},
             "store": {"id": "...", "store_type": "PEM", "client_machine": "...",
                       "store_path": "...", "properties": {}, "password": null}}

        Raises:
            ValueError: the body does not have that shape, or names an unknown job type.
        """
        try:
            # A discovery job targets no store: it names the machine alone.
            store = data.get("store") or {"id": "", "store_type": "", "store_path": ""}
            job_type = str(data["type"])
            if job_type not in {member.value for member in JobType}:
                raise ValueError(f"unknown job type {job_type!r}")
            return cls(
                job_id=str(data["job_id"] if "job_id" in data else data["id"]),
                type=JobType(job_type),
                attempt=int(data.get("attempt", 1)),
                store=StoreConfiguration(
                    id=str(store["id"]),
                    store_type=str(store["store_type"] if "store_type" in store else store["type"]),
                    client_machine=str(store.get("client_machine", "")),
                    store_path=str(store["store_path"]),
                    properties=dict(store.get("properties") or {}),
                    password=store.get("password"),
                    endpoint=dict(store["endpoint"]) if store.get("endpoint") else None,
                ),
                payload=dict(data.get("payload") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed job configuration: missing or invalid {exc}") from exc


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    """One alias of a store, as reported by an inventory job.

    Attributes:
        alias: The entry's name in the store, unique within the store.
        private_key: Whether the store also holds the private key of the certificate.
        certificates: PEM strings; the first is the certificate installed at ``alias``,
            the rest its chain. Pass them through as found: the platform parses and
            validates them and rejects malformed entries itself.
        error: Set instead of certificates when the store found something at this alias it
            could not use; the platform records it as a rejected entry with this reason, and
            the job ends with a warning. A sentence for a person (``"is empty"``, ``"is a
            PKCS#12 file and the store password does not open it"``), never a secret.
        certificate_sha256: Instead of ``certificates``: their SHA-256 fingerprints (hex),
            for an entry the store knows is unchanged since a report the platform took
            (e.g. from a cache kept in ``job.state_dir``). Nothing is read or sent again.
            Give ``load_full`` with it.
        endpoint: For an entry found by connecting to a network endpoint (a TLS scan): what
            happened, ``{"host", "port", "sni", "status", "reason", "tls_version",
            "cipher"}`` with ``status`` an :class:`orchestrators.scan.EndpointStatus`. With
            status ``ok``, ``certificates`` is the chain the server presented; otherwise it
            is empty and the entry records the endpoint's failure, not a location.
        load_full: Returns this entry with its certificates, for when the platform answers
            that it does not hold one of the fingerprinted certificates (it was deleted
            meanwhile); the agent then sends the entry again in full.
    """

    alias: str
    private_key: bool
    certificates: list[str]
    error: str | None = None
    certificate_sha256: list[str] | None = None
    load_full: Callable[[], InventoryEntry] | None = field(default=None, compare=False, repr=False)
    endpoint: dict[str, Any] | None = None

    @property
    def rejected(self) -> bool:
        """Whether the store could not use this entry (``error`` is set); count these with
        ``sum(entry.rejected for entry in entries)``."""
        return self.error is not None

    def to_wire(self) -> dict[str, Any]:
        """The entry as sent in ``POST jobs/<id>/inventory``.

        ``{"alias", "private_key", "certificates": [PEM, ...]}``; a rejected entry is
        ``{"alias", "private_key", "certificates": [], "error": reason}``.
        """
        if self.error is not None:
            return {
                "alias": self.alias,
                "private_key": self.private_key,
                "certificates": [],
                "error": self.error,
            }
        if self.endpoint is not None:
            return {
                "alias": self.alias,
                "private_key": self.private_key,
                "certificates": list(self.certificates),
                "endpoint": dict(self.endpoint),
            }
        if self.certificate_sha256 and not self.certificates:
            return {
                "alias": self.alias,
                "private_key": self.private_key,
                "sha256": list(self.certificate_sha256),
            }
        return {
            "alias": self.alias,
            "private_key": self.private_key,
            "certificates": list(self.certificates),
        }


@dataclass(frozen=True, slots=True)
class CertificateMaterial:
    """What an ``add`` writes: a certificate, its chain, and maybe its private key.

    Attributes:
        certificate: PEM of the certificate to install.
        chain: PEM of its issuers, nearest first (may be empty).
        private_key: The key, already opened by the agent (it travelled sealed to this
            agent's own key, or was made on this machine); None to install without a key.
            Never log it or write it anywhere but into the store.
        alias: The entry name asked for; None lets the store type choose (e.g. a file name
            from the subject, or the certificate's SHA-256).
        overwrite: Whether an entry already at ``alias`` holding another certificate may be
            replaced. The same certificate at ``alias`` is never an error: ``add`` does
            nothing and returns the alias, so a job offered again applies once.
        entry_parameters: The job's per-entry parameters, by the declaration's names
            (e.g. ``entry_password``). Secrets among them are never logged.
        certificate_sha256: Lowercase hex SHA-256 of the certificate's DER.
    """

    certificate: str
    chain: tuple[str, ...] = ()
    private_key: Any = field(default=None, repr=False)
    alias: str | None = None
    overwrite: bool = False
    entry_parameters: dict[str, Any] = field(default_factory=dict, repr=False)
    certificate_sha256: str = ""


class StoreTypeExtension(abc.ABC):
    """Base class of a store type: subclass it, set the class attributes, implement operations.

    Class attributes:
        short_name: The platform's short name for the store type (``"PEM"``): the name of
            its ``certyard.store_types`` entry point. Leave it out and it takes that name;
            one that differs (here or in ``declaration``) gets the store type refused by
            the agent (``certyard-orchestrator extensions`` says why).
        operations: The operations implemented; each one is advertised as a capability
            (``PEM.Inventory``) and the platform only sends jobs for those.
        declaration: Optional :class:`~orchestrators.declarations.StoreTypeDeclaration`:
            typed properties, entry parameters, key, alias and password policy. The agent
            sends it to the platform, which creates or updates the store type from it.

    Every method receives the whole job; it signals a failure an administrator can act on
    by raising :class:`StoreError`.
    """

    short_name: ClassVar[str]
    operations: ClassVar[frozenset[StoreOperation]]
    declaration: ClassVar[StoreTypeDeclaration | None] = None

    @abc.abstractmethod
    def inventory(self, job: JobConfiguration) -> Iterable[InventoryEntry]:
        """Return every entry of ``job.store`` (nothing for an empty store).

        A list will do for a small store. For a large one, yield the entries (write a
        generator): the agent sends them to the platform in chunks as they come, so the
        memory a job costs stays bounded whatever the size of the store. A ``StoreError``
        raised at any point fails the job, and nothing of it is recorded.
        """

    def add(self, job: JobConfiguration, material: CertificateMaterial) -> str:
        """Install ``material`` into ``job.store`` and return the alias it is installed at.

        The same certificate already at the alias: do nothing, return the alias. Another
        certificate there and ``material.overwrite`` false: raise :class:`StoreError`
        naming the alias. A store that does not exist yet is created only when
        ``job.payload["create_store"]`` is true. Write atomically (see
        ``orchestrators.stores.atomic``): a crash leaves the old store or the new one.
        After ``add`` returns, the agent calls :meth:`inventory` and reports what it reads.
        """
        raise NotImplementedError(f"store type {self.short_name} does not implement add")

    def remove(
        self, job: JobConfiguration, *, alias: str | None, certificate_sha256: str | None
    ) -> bool:
        """Remove the entry at ``alias``, or every entry holding the certificate whose
        SHA-256 is ``certificate_sha256``; return whether anything was removed (nothing
        there is not an error: the job may be offered again after it ran)."""
        raise NotImplementedError(f"store type {self.short_name} does not implement remove")

    def create(self, job: JobConfiguration) -> bool:
        """Create ``job.store`` empty; return False when it already existed (not an error)."""
        raise NotImplementedError(f"store type {self.short_name} does not implement create")


def path_within_roots(path: str | Path, roots: tuple[str, ...] | None) -> bool:
    """Whether ``path``, links and ``..`` resolved, lies inside one of ``roots``
    (``None``: no restriction). An extension reading a path the platform named, or a link
    it found, checks it with this before reading."""
    if roots is None:
        return True
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)
