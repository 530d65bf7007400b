"""The wire protocol between the platform and its orchestrator agents.

This module is shared by both sides: the agent imports it to build requests,
the platform imports it to check them. It must stay free of Django and of any
platform code (see docs/architecture.md, "Dependency direction").

Protocol, version 1 (all bodies are JSON, all paths under ``API_PREFIX``):

``POST register``
    Unauthenticated; carries a registration token an admin created.
    Body: ``token, name, client_machine, agent_version, capabilities,
    client_parameters, csr`` (PEM PKCS#10 for the agent's own P-256 key).
    Answer 201: ``orchestrator_id, status, certificate`` (PEM client
    certificate issued by the platform's orchestrator CA) and ``ca_chain``.

``POST session``
    Proof of possession of the agent's key. Body: ``orchestrator_id,
    issued_at`` (Unix seconds), ``nonce`` and ``signature``: base64 of the
    ECDSA-SHA256 (DER) signature of ``session_signing_input(...)``. The
    platform checks the signature against the public key it certified, that
    ``issued_at`` is within ``SESSION_ASSERTION_MAX_SKEW_SECONDS`` of its
    clock, and that ``issued_at`` is later than the last assertion it
    accepted from that orchestrator (so an assertion can be used once).
    Answer 200: ``token, expires_in, status, certificate_not_after, renew_after``.
    Every other call sends ``Authorization: Bearer <token>``. A revoked client
    certificate answers 401 ``identity_rejected`` with ``reason:
    certificate_revoked``: the agent must register again.

``POST heartbeat``
    Answer 200: ``status, server_time, certificate_not_after, renew_after``.

``POST limits``
    What the agent's administrator allows it on its machine: ``{"store_roots":
    [absolute path, ...], "max_file_bytes": n}`` (at most
    ``MAX_REPORTED_STORE_ROOTS`` roots, each an absolute real path of at most 4096
    bytes; ``max_file_bytes`` at least 1; an empty list: no store can be read).
    Sent after every session the agent opens, and whenever its roots or limit
    change while it runs (``certyard-orchestrator roots`` edits ``agent.json``;
    the running agent notices within about a second). Answer 200 ``{"store_roots",
    "max_file_bytes", "reported_at"}``; 400 when malformed. The platform checks
    store paths against the roots with ``orchestrators.roots.store_path_problem``
    before it saves a store or schedules a job; an older agent never sends this,
    and only the lexical rules apply to its stores. The agent enforces the roots
    on every job whatever the platform knows.

``POST certificate``
    The agent renews its own client certificate, without a new approval, once
    ``renew_after`` has passed. Body: ``csr`` (PEM, for a new P-256 key, or the
    same key). Answer 200: ``certificate, ca_chain, not_after, renew_after``.
    The session that asked ends with it: the agent opens a new one, signed by
    the key the new certificate certifies.

``GET jobs/next?wait=<seconds>``
    Long poll (``wait`` up to ``MAX_POLL_WAIT_SECONDS``). Answer 200 with a job
    summary (``JOB_SUMMARY_FIELDS``), leased to this orchestrator until
    ``lease_expires_at``, or 204 when nothing came within ``wait`` seconds.
    403 while the orchestrator is not approved. One poll per orchestrator: a
    newer poll ends an older one with 204. The lease in the summary is short
    (the pickup lease): an agent that has gone never fetches the job, and the
    job is offered again within seconds.

``GET jobs/<id>/config``
    The job's full configuration, including the store password (the only
    place a secret leaves the platform, to the agent that holds the lease).
    Fetching it is the pickup: the lease becomes a whole lease, and the
    answer's ``lease_expires_at`` says until when.

``POST jobs/<id>/inventory/chunks``
    One chunk of an inventory report: ``attempt`` (the job attempt it
    belongs to), ``sequence`` (0, 1, 2, ...), ``first_index`` (the report
    index of its first entry) and ``entries``. An entry is ``{"alias",
    "private_key", "certificates": [PEM, ...]}`` (the first certificate is the
    one installed at that alias, the rest its chain), or ``{"alias", "error":
    reason, "certificates": []}`` for something the agent found at that alias
    and could not use (recorded as a rejected entry; the location there is
    kept). An entry found by connecting to a network endpoint (a TLS scan
    store) also carries ``"endpoint": {"host", "port", "sni", "status",
    "reason", "tls_version", "cipher"}`` (``orchestrators.scan``), and its alias
    is ``scan.endpoint_alias(host, port, sni)``: with status ``ok`` its
    certificates are the chain served; with any other status it has none and
    records only the endpoint's failure (no location is made or kept there).
    Each chunk is checked and parsed as it arrives; sending the same
    chunk again replaces it. Answer 200: ``accepted``, ``new_certificates``
    and the chunk's ``rejected`` entries (``index``, ``alias``, ``error``).

``POST jobs/<id>/inventory/commit``
    Body: ``attempt``, ``chunks`` (how many were sent), ``new_certificates``
    (the sum of the chunks' answers) and ``submission_errors`` (the agent's
    failed tries at sending, ``[{"at", "error"}]``, kept on the attempt's
    history). The staged report becomes the store's contents in one
    transaction: a report is the whole store. Answer 200 when every entry was
    recorded; 422 when some were rejected, listing the first of them
    (``rejected``, and ``rejected_count``), while the good entries are
    recorded (``recorded: true``). When every entry is rejected nothing is
    recorded (``recorded: false``: the store's last inventory stands) and the
    job stays open for a corrected report. A missing chunk is answered 409
    ``chunks_missing``. A report for an attempt that is no longer the job's
    current one is answered 409 ``stale_attempt``. Once an attempt's report
    is committed, a repeat is acknowledged (``duplicate: true``) and not
    applied again; the next attempt reports afresh.

``POST jobs/<id>/inventory``
    A whole report in one request (``attempt``, ``entries``): one chunk and
    its commit, with the commit's answer. For small stores and older agents.

``POST jobs/<id>/complete``
    Body: ``status`` (one of ``JobOutcome``), ``message``, ``attempt`` (the
    attempt the result is for) and, for a management or discovery job, an
    optional ``result`` (a JSON object of at most 64 KiB serialised, kept on the
    job): ``add``/``reenrollment`` ``{"alias", "certificate_sha256", "written",
    "key_origin": "device"|"platform"|"none", "reload": {"ran", "exit_code",
    "output"}|null, "verification": {"endpoint", "sni", "served_sha256",
    "expected_sha256", "served", "error"}|null}``; a reenrollment waiting for
    approval ``{"awaiting_approval": true, "enrollment_id"}``; ``remove``
    ``{"removed", "reload"}``; ``create`` ``{"created"}``; ``discovery``
    ``{"candidates": n, "notes": [...]}``. ``final: true`` with a failure says
    another attempt would meet it again (the store, or the job's own content,
    refused it): the job ends failed at once instead of being retried (a person
    may still retry it). The agent sends it for every job type, inventory
    included, when the store path is refused (not absolute, ``..``, outside its
    roots) and when the store type raised a permanent ``StoreError`` (no such
    path, not the file or folder it expects, wrong password, unparseable
    store); a transient one (I/O error, busy or locked, timeout), a failed
    report delivery or an agent bug is retried while attempts remain. A
    repeated report is acknowledged (``duplicate: true``) and not applied
    again; an earlier attempt's result is refused (409 ``stale_attempt``), so an
    agent whose lease lapsed cannot end the attempt that replaced it.

``POST store-types``
    Once approved, the agent declares the store types it carries:
    ``{"store_types": [declaration, ...]}`` (``orchestrators.declarations``,
    ``StoreTypeDeclaration.to_wire``). Answer 200 ``{"store_types":
    [{"short_name", "created", "updated", "migrated_stores", "flagged_stores",
    "ignored": reason|null}]}``; 400 for a malformed declaration. The built-in
    short names are the platform's own (``ignored: "built in"``); another type
    changes only when its ``schema_version`` grows. A refusal is logged by the
    agent, never fatal.

Management jobs (``add``, ``remove``, ``create``, ``reenrollment``) carry their
data in the configuration's ``payload`` (``add``: ``alias, certificate, chain,
certificate_sha256, overwrite, create_store, entry_parameters, private_key``
(an ``orchestrators.transit`` envelope sealed to the agent's identity key for
``transit_context(job_id, attempt)``, or null) and ``device_key`` (the
reference of a key the agent made in a reenrollment that waited for
approval); ``remove``: ``alias`` and/or ``certificate_sha256``; ``reenrollment``:
``alias, overwrite, key_type, key_size, subject, sans, entry_parameters``), and
the store dict gains ``endpoint`` (``{"host", "port", "sni"}`` or null). After
the operation the agent re-reads the store and sends it with the inventory
endpoints above (the report is the store's contents), then completes.

``POST jobs/<id>/csr``
    Reenrollment only: ``{"attempt", "csr": PEM}`` for a key the agent made on
    its machine. Answer 200 ``{"state": "issued", "certificate", "chain",
    "enrollment_id"}`` (the agent installs it with its key), 202 ``{"state":
    "pending", "enrollment_id"}`` (approval needed: the agent keeps the key in
    ``state/device-keys/<enrollment_id>.pem`` and completes with
    ``awaiting_approval``; the platform later sends an ``add`` with
    ``device_key``), or a 4xx error whose message ends the job failed.

``POST jobs/<id>/discovery``
    A discovery job (no store; payload ``directories, file_patterns,
    ignored_directories, follow_links, max_depth``): ``{"attempt",
    "candidates": [{"path", "kind", "store_type", "certificate_count",
    "private_key", "password_needed", "error"}]}`` (at most 20,000; only paths
    inside the agent's roots). Answer 200 ``{"new", "gone", "known"}``.

Errors are always JSON: ``{"error": {"code": ..., "message": ..., "fields": {...}}}``,
a server error (5xx) included. An agent that gets a 5xx or no answer while sending a
report keeps the report and sends it again, backing off, while it holds the lease.
"""

from __future__ import annotations

import enum

PROTOCOL_VERSION = 1
API_PREFIX = "/api/orchestrator/v1/"

SESSION_ASSERTION_PURPOSE = "certyard-session-v1"
SESSION_ASSERTION_MAX_SKEW_SECONDS = 300

# The longest long poll the platform grants; agents asking for more get this.
MAX_POLL_WAIT_SECONDS = 30

# The most store roots an agent reports in ``POST limits`` (and may configure).
MAX_REPORTED_STORE_ROOTS = 64

JOB_SUMMARY_FIELDS = ("id", "type", "attempt", "lease_expires_at", "store")


class JobType(enum.StrEnum):
    INVENTORY = "inventory"
    ADD = "add"
    REMOVE = "remove"
    CREATE = "create"
    DISCOVERY = "discovery"
    REENROLLMENT = "reenrollment"


class JobOutcome(enum.StrEnum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


class StoreOperation(enum.StrEnum):
    """Operations a store type supports; an agent advertises them as capabilities."""

    INVENTORY = "inventory"
    ADD = "add"
    REMOVE = "remove"
    CREATE = "create"
    DISCOVERY = "discovery"
    REENROLLMENT = "reenrollment"


def capability_name(store_type: str, operation: StoreOperation | str) -> str:
    """The capability string for an operation on a store type, e.g. ``PEM.Inventory``."""
    return f"{store_type}.{str(operation).capitalize()}"


def session_signing_input(*, orchestrator_id: str, issued_at: int, nonce: str) -> bytes:
    """The exact bytes an agent signs to open a session."""
    return f"{SESSION_ASSERTION_PURPOSE}\n{orchestrator_id}\n{issued_at}\n{nonce}".encode()
