"""The agent's run loop: keep a session, heartbeat, long-poll for jobs, run them, report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators.agent.client import (
    IdentityRejected,
    NotApproved,
    PlatformClient,
    PlatformError,
    PlatformUnavailable,
)
from orchestrators.agent.config import Guards, ensure_config_dir
from orchestrators.agent.management import (
    DEVICE_KEYS_FOLDER,
    JobResult,
    ManagementContext,
    management_run,
)
from orchestrators.agent.renewal import CertificateRenewer
from orchestrators.agent.secret_providers import job_secrets_resolve
from orchestrators.agent.store_types import declarations_wire
from orchestrators.protocol import MAX_POLL_WAIT_SECONDS, JobOutcome, JobType
from orchestrators.roots import store_path_problem
from orchestrators.scan import ScanAllowance
from orchestrators.sdk import (
    InventoryEntry,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
)
from orchestrators.secret_refs import (
    SecretContext,
    SecretProvider,
    SecretUnavailable,
    load_secret_providers,
)
from orchestrators.stores.discovery import DiscoveryRequest, discover

logger = logging.getLogger(__name__)

T = TypeVar("T")
ReloadCommands = Mapping[str, Sequence[str]] | Callable[[], Mapping[str, Sequence[str]]]

EXIT_OK = 0
EXIT_IDENTITY_REJECTED = 3

HEARTBEAT_INTERVAL_SECONDS = 60.0
NOT_APPROVED_WAIT_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 60.0
MESSAGE_MAX_CHARS = 2000
# How often the main thread looks at the stop event while a long poll is in flight.
STOP_CHECK_SECONDS = 0.2
# How often it looks at agent.json meanwhile (a stat): changed roots reach the platform
# within about this long, not at the end of the poll.
GUARDS_CHECK_SECONDS = 1.0
# Backoff between tries at delivering a report while the platform is unavailable; the
# tries go on while the job's lease holds.
REPORT_BACKOFF_FIRST_SECONDS = 1.0
REPORT_BACKOFF_MAX_SECONDS = 20.0
# Without a lease expiry from the platform, keep trying for this long.
DEFAULT_LEASE_SECONDS = 300.0
# A chunk of an inventory report: at most this many entries, or about this many bytes.
CHUNK_MAX_ENTRIES = 1000
CHUNK_MAX_BYTES = 4 * 1024 * 1024
# The least the agent waits for a commit's answer (it waits longer while the lease holds).
COMMIT_TIMEOUT_MIN_SECONDS = 60.0
# Chunks sent at once: the platform may parse them in parallel.
CHUNKS_IN_FLIGHT = 3
# Rejected entries named in a job's message (the platform keeps the rest).
REJECTED_NAMED = 20


def truncate(message: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """``message`` cut to ``limit`` characters, marked when cut."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def rejected_summary(body: dict[str, Any], submitted: int, count: int | None = None) -> str:
    """A job message for an inventory answer with rejected entries: each one's alias and
    reason (the first few), and how many there were."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    rejected = (
        body.get("rejected") or error.get("rejected") or error.get("fields", {}).get("entries")
    )
    if not isinstance(rejected, list) or not rejected:
        return truncate(f"inventory partly rejected: {error.get('message', body)}")
    count = count or len(rejected)
    rejected = rejected[:REJECTED_NAMED]
    parts = []
    for item in rejected:
        if isinstance(item, dict):
            alias = item.get("alias", f"#{item.get('index', '?')}")
            parts.append(
                f"{alias}: "
                f"{item.get('error') or item.get('reason') or item.get('message') or 'rejected'}"
            )
        else:
            parts.append(str(item))
    return truncate(f"{count} of {submitted} entries rejected: " + "; ".join(parts))


class Runner:
    """Runs jobs from the platform until stopped.

    ``run()`` returns :data:`EXIT_OK` after a stop request (SIGTERM/SIGINT or
    :meth:`stop`), or :data:`EXIT_IDENTITY_REJECTED` when the platform no longer knows this
    orchestrator.
    """

    def __init__(
        self,
        client: PlatformClient,
        store_types: dict[str, type[StoreTypeExtension]],
        *,
        poll_wait: int = 20,
        state_root: Path | None = None,
        store_roots: tuple[str, ...] | None = None,
        max_file_bytes: int | None = None,
        renewer: CertificateRenewer | None = None,
        identity_keys: Callable[[], Sequence[ec.EllipticCurvePrivateKey]] = tuple,
        reload_commands: ReloadCommands | None = None,
        guards: Callable[[], Guards] | None = None,
        secret_providers: Mapping[str, type[SecretProvider]] | None = None,
        secret_context: Callable[[], SecretContext] | None = None,
    ) -> None:
        """``identity_keys``: the agent's identity keys (current first, then a renewal's
        pending one) to open private keys sealed to it; ``reload_commands``: the local
        ``{real store path: argv}`` run after a write (never from the platform), or a
        function reading them at each job (an administrator may set one while it runs).

        ``guards``: the store roots and file size limit as configured now (e.g.
        ``GuardsWatch.current``, which follows ``agent.json``): asked before each poll and
        each job, they replace ``store_roots`` and ``max_file_bytes``, and the runner
        reports them to the platform (``POST limits``) after each session it opens and
        whenever they change. Without it the fixed ``store_roots``/``max_file_bytes``
        apply and nothing is reported.

        ``secret_providers`` resolve the references a job's secrets hold (default: the
        built-ins and the installed ones), with ``secret_context`` (the machine's secret
        commands as configured now) asked at each job."""
        self._client = client
        self._identity_keys = identity_keys
        self._reload_commands = reload_commands or {}
        # Whether this run has sent its store types' declarations.
        self._declared = False
        # Renews the agent's client certificate when the platform says (None: never).
        self._renewer = renewer
        self._store_types = store_types
        # Each store gets a private folder below this for its store type's state (a cache
        # of what it read); None gives store types no state.
        self._state_root = state_root
        # The agent's own guards: whatever the platform asks, it reads stores only inside
        # these folders, and no file larger than this (None: unguarded, as in tests).
        self._store_roots = store_roots
        self._max_file_bytes = max_file_bytes
        self._guards = guards
        self._secret_providers = (
            load_secret_providers() if secret_providers is None else secret_providers
        )
        self._secret_context = secret_context or SecretContext
        # (session count, guards) of the last limits report the platform answered, and
        # the guards it last refused (so a refusal is logged once, not at every step).
        self._limits_reported: tuple[int, Guards] | None = None
        self._limits_refused: Guards | None = None
        self._poll_wait = max(1, min(poll_wait, MAX_POLL_WAIT_SECONDS))
        self._stop = threading.Event()
        self._failures = 0
        self._approved: bool | None = None
        self._last_heartbeat: float | None = None
        self._stop_reason = "stop requested"

    def stop(self) -> None:
        """Ask the loop to stop: at once when idle, after reporting the current job otherwise."""
        self._stop.set()

    def run(self) -> int:
        with self._signals_stop():
            logger.info(
                "agent started; store types: %s", ", ".join(sorted(self._store_types)) or "none"
            )
            while not self._stop.is_set():
                try:
                    self._step()
                    self._failures = 0
                except IdentityRejected as exc:
                    if self._identity_recovered(exc):
                        continue
                    return EXIT_IDENTITY_REJECTED
                except NotApproved:
                    self._failures = 0
                    self._set_approved(False)
                    self._stop.wait(NOT_APPROVED_WAIT_SECONDS)
                except PlatformUnavailable as exc:
                    self._back_off(f"platform unavailable ({exc})")
                except PlatformError as exc:
                    self._back_off(f"platform refused a request ({exc})")
            logger.info("agent stopped (%s)", self._stop_reason)
            return EXIT_OK

    def _identity_recovered(self, rejected: IdentityRejected) -> bool:
        """Whether the agent may go on after the platform refused its identity: only when
        the key of an unfinished certificate renewal is the one the platform knows.
        Otherwise says why the agent stops."""
        if not rejected.revoked and self._renewer is not None:
            try:
                if self._renewer.recover_pending_key():
                    self._failures = 0
                    return True
            except IdentityRejected as exc:
                rejected = exc
            except PlatformUnavailable as exc:
                self._back_off(f"platform unavailable ({exc})")
                return not self._stop.is_set()
        if rejected.revoked:
            logger.error(
                "this orchestrator's certificate was revoked; register again with "
                "`certyard-orchestrator register --url URL --token TOKEN`, then start the "
                "agent again (%s)",
                rejected.message,
            )
        else:
            logger.error(
                "the platform refused this orchestrator's identity (%s): it was reset "
                "or deleted. Re-register with `certyard-orchestrator register --url URL "
                "--token TOKEN`, then start the agent again.",
                rejected.message,
            )
        return False

    # -- loop ----------------------------------------------------------------------------------

    def _step(self) -> None:
        if not self._client.has_session:
            status = self._client.open_session()
            logger.info("session opened; orchestrator status: %s", status)
            if status == "approved":
                self._set_approved(True)
        # Declared once approved: at the session's opening, or when the first poll is
        # answered after an administrator approved this orchestrator.
        if not self._declared and (self._client.status == "approved" or self._approved):
            self._declare_store_types()
        self._limits_report_if_due()
        self._heartbeat_if_due()
        if self._renewer is not None and self._renewer.renew_if_due():
            # The renewal ended the session: open one with the new key at once.
            status = self._client.open_session()
            logger.info("session opened with the new key; orchestrator status: %s", status)
        job = self._poll()
        if self._stop.is_set():
            return
        self._set_approved(True)
        if job is not None:
            self._run_job(job)

    def _declare_store_types(self) -> None:
        """Send every store type's declaration once per run; a refusal is logged, not fatal
        (an older platform has no such endpoint). Unavailable: tried again next step."""
        try:
            answer = self._client.declare_store_types(declarations_wire(self._store_types))
        except NotApproved:
            return
        except PlatformUnavailable as exc:
            logger.warning("store types not declared yet (%s); trying again", exc)
            return
        except PlatformError as exc:
            logger.warning("the platform refused the store type declarations: %s", exc.message)
        else:
            for item in answer.get("store_types") or []:
                if isinstance(item, dict) and (item.get("created") or item.get("updated")):
                    logger.info("store type %s declared", item.get("short_name"))
        self._declared = True

    def _guards_now(self) -> tuple[tuple[str, ...] | None, int | None, ScanAllowance | None]:
        """The store roots, file size limit and scan allowance to apply now (see
        ``guards``; without them, none restrict)."""
        if self._guards is None:
            return self._store_roots, self._max_file_bytes, None
        guards = self._guards()
        return guards.store_roots, guards.max_file_bytes, guards.scan_allowance

    def _limits_report_if_due(self) -> None:
        """``POST limits`` when a session was opened since the last report or the guards
        changed. Never fatal: a platform without the endpoint (older) or a refusal is
        logged once; unavailable or not approved yet: tried again at the next step. The
        agent enforces its guards on every job whatever the platform knows."""
        if self._guards is None:
            return
        guards = self._guards()
        if self._limits_reported == (self._client.sessions_opened, guards):
            return
        try:
            answer = self._client.report_limits(
                store_roots=guards.store_roots, max_file_bytes=guards.max_file_bytes
            )
        except (NotApproved, IdentityRejected):
            raise
        except PlatformUnavailable as exc:
            logger.warning("store roots not reported yet (%s); trying again", exc)
            return
        except PlatformError as exc:
            if self._limits_refused != guards:
                logger.warning("the platform refused the store roots report: %s", exc.message)
            self._limits_refused = guards
        else:
            logger.info(
                "store roots reported to the platform: %s; file size limit %s bytes",
                ", ".join(answer.get("store_roots") or guards.store_roots) or "none",
                answer.get("max_file_bytes", guards.max_file_bytes),
            )
            self._limits_refused = None
        # After the call: a session it had to open itself carried this report already.
        self._limits_reported = (self._client.sessions_opened, guards)

    def _heartbeat_if_due(self) -> None:
        now = time.monotonic()
        if self._last_heartbeat is None or now - self._last_heartbeat >= HEARTBEAT_INTERVAL_SECONDS:
            try:
                answer = self._client.heartbeat()
            except NotApproved:
                self._last_heartbeat = now  # it reached the platform all the same
                raise
            self._last_heartbeat = now
            logger.debug("heartbeat: status %s", answer.get("status"))

    def _poll(self) -> dict[str, Any] | None:
        """Long-poll in a daemon thread so a stop request ends an idle agent within a moment.

        A job leased in the instant the agent stops is abandoned; the platform re-offers it
        when its lease lapses.
        """
        outcome: dict[str, Any] = {}

        def poll() -> None:
            try:
                outcome["job"] = self._client.next_job(self._poll_wait)
            except BaseException as exc:  # handed to the main thread
                outcome["error"] = exc

        worker = threading.Thread(target=poll, name="long-poll", daemon=True)
        worker.start()
        next_guards_check = time.monotonic() + GUARDS_CHECK_SECONDS
        while worker.is_alive():
            if self._stop.is_set():
                return None
            worker.join(STOP_CHECK_SECONDS)
            if worker.is_alive() and time.monotonic() >= next_guards_check:
                next_guards_check = time.monotonic() + GUARDS_CHECK_SECONDS
                self._limits_report_while_polling()
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("job")

    def _limits_report_while_polling(self) -> None:
        """Report changed guards while a long poll waits (``roots --add`` reaches the
        platform within a second); a refusal of the agent's identity or approval is left
        to the poll, which meets it too and raises it where the loop handles it."""
        try:
            self._limits_report_if_due()
        except (NotApproved, IdentityRejected) as exc:
            logger.debug("store roots not reported while polling: %s", exc)

    def _set_approved(self, approved: bool) -> None:
        if approved == self._approved:
            return
        self._approved = approved
        if approved:
            logger.info("orchestrator approved; waiting for jobs")
        else:
            logger.warning(
                "orchestrator not approved: an administrator must approve it; retrying every %d s",
                NOT_APPROVED_WAIT_SECONDS,
            )

    def _back_off(self, reason: str) -> None:
        self._failures += 1
        ceiling = min(BACKOFF_MAX_SECONDS, 2.0 ** (self._failures - 1))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not crypto)
        logger.warning("%s; retrying in %.1f s", reason, delay)
        self._stop.wait(delay)

    # -- jobs ----------------------------------------------------------------------------------

    def _run_job(self, summary: dict[str, Any]) -> None:
        job_id = str(summary.get("id"))
        logger.info("job %s: %s (attempt %s)", job_id, summary.get("type"), summary.get("attempt"))
        deadline = _lease_deadline(summary.get("lease_expires_at"))
        try:
            wire = self._client.job_config(job_id)
            # Fetching the job turns the platform's short pickup lease into a whole one.
            if wire.get("lease_expires_at"):
                deadline = _lease_deadline(wire["lease_expires_at"])
            job = JobConfiguration.from_wire(wire)
            # As configured now: `roots --add` while the agent runs applies to this job.
            store_roots, max_file_bytes, scan_allowance = self._guards_now()
            job = dataclasses.replace(
                job,
                store_roots=store_roots,
                max_file_bytes=max_file_bytes,
                scan_allowance=scan_allowance,
            )
            if self._state_root is not None and job.type is not JobType.DISCOVERY:
                state_dir = ensure_config_dir(self._state_root / _safe_folder_name(job.store.id))
                job = dataclasses.replace(job, state_dir=state_dir)
        except ValueError as exc:
            attempt = _attempt_of(summary)
            self._complete(job_id, JobOutcome.FAILURE, f"cannot run job: {exc}", deadline, attempt)
            return
        lease = _Lease(deadline)
        ended = self._execute(job, lease)
        self._complete(
            job_id,
            ended.outcome,
            ended.message,
            lease.deadline,
            job.attempt,
            ended.result,
            final=ended.final,
        )

    def _execute(self, job: JobConfiguration, lease: _Lease) -> JobResult:
        if job.type is JobType.DISCOVERY:
            return self._discover(job, lease)
        store = job.store
        store_type = self._store_types.get(store.store_type)
        if store_type is None:
            return _failed(
                f"store type {store.store_type} is not supported by this orchestrator "
                f"(supported: {', '.join(sorted(self._store_types)) or 'none'})"
            )
        if job.type not in store_type.operations:
            return _failed(
                f"job type {job.type} is not supported for store type {store.store_type} "
                "by this orchestrator"
            )
        # The platform's own check (same function, lexical) may not have caught it: a
        # link, roots it did not know yet, an older platform. A store of network targets
        # is no path: its store type checks them against the scan allowance instead.
        declaration = store_type.declaration
        targets = declaration is not None and declaration.store_path_kind == "targets"
        problem = (
            None if targets else store_path_problem(store.store_path, job.store_roots, resolve=True)
        )
        if problem is not None:
            logger.warning("job %s refused: %s", job.job_id, problem)
            # Refused until the agent's administrator changes its roots (or someone the
            # store's path): final for every job type, so no attempt is spent on it.
            return dataclasses.replace(_failed(problem), final=True)
        try:
            # The store type sees secrets, never references; the platform never sees either.
            job = job_secrets_resolve(job, self._secret_providers, self._secret_context())
        except SecretUnavailable as exc:
            logger.warning("job %s: %s", job.job_id, exc)
            # Until someone provides the secret: final, like a wrong password.
            return dataclasses.replace(_failed(str(exc)), final=True)
        if job.type is JobType.INVENTORY:
            outcome, message, final = self._inventory(job, store_type, lease)
            return JobResult(outcome, message, None, final=final)
        try:
            ended = management_run(job, store_type, self._management_context(lease))
        except Exception as exc:
            logger.exception("job %s: store type %s failed", job.job_id, store.store_type)
            return _failed(f"store type {store.store_type} failed: {type(exc).__name__}: {exc}")
        if not ended.reached_store:
            return dataclasses.replace(ended, message=truncate(ended.message))
        # The platform learns what the store holds now from what the agent re-reads.
        outcome, message, _ = self._inventory(job, store_type, lease)
        if outcome is JobOutcome.SUCCESS:
            return dataclasses.replace(ended, message=truncate(ended.message))
        return dataclasses.replace(
            ended,
            outcome=JobOutcome.WARNING,
            message=truncate(f"{ended.message}; re-reading the store: {message}"),
        )

    def _management_context(self, lease: _Lease) -> ManagementContext:
        return ManagementContext(
            client=self._client,
            identity_keys=self._identity_keys,
            device_keys_dir=(
                self._state_root / DEVICE_KEYS_FOLDER if self._state_root is not None else None
            ),
            reload_commands=(
                self._reload_commands()
                if callable(self._reload_commands)
                else self._reload_commands
            ),
            reporting=lambda call: self._reporting(call, lease.deadline),
        )

    def _discover(self, job: JobConfiguration, lease: _Lease) -> JobResult:
        """Walk the folders a discovery job names (inside the roots) and report candidates."""
        try:
            request = DiscoveryRequest.from_payload(job.payload)
        except ValueError as exc:
            return _failed(f"cannot run the discovery: {exc}")
        found = discover(request, roots=job.store_roots, max_file_bytes=job.max_file_bytes)
        candidates = [candidate.to_wire() for candidate in found.candidates]
        try:
            answer = self._reporting(
                lambda: self._client.submit_discovery(
                    job.job_id, attempt=job.attempt, candidates=candidates
                ),
                lease.deadline,
            )
        except PlatformError as exc:
            return _failed(f"the platform refused the discovery report: {exc.message}")
        except PlatformUnavailable as exc:
            return _failed(f"the discovery report could not be delivered: {exc}")
        message = (
            f"{len(candidates)} candidates in {found.files_examined} files"
            f" ({answer.get('new', 0)} new, {answer.get('gone', 0)} gone)"
        )
        if found.notes:
            message += "; " + "; ".join(found.notes[:10])
        outcome = JobOutcome.WARNING if found.notes else JobOutcome.SUCCESS
        result = {"candidates": len(candidates), "notes": found.notes[:50]}
        return JobResult(outcome, truncate(message), result, reached_store=False)

    def _inventory(
        self, job: JobConfiguration, store_type: type[StoreTypeExtension], lease: _Lease
    ) -> tuple[JobOutcome, str, bool]:
        """Read the store and send what it holds in chunks: the outcome of the report, its
        message, and whether a failure is final (the store type's ``StoreError`` was
        permanent: wrong password, no such path ...; another attempt would meet it again).
        A transient one, a report the platform did not take, or an agent bug is retried."""
        store = job.store
        report = _ChunkedReport(self._client, job, lease, self._reporting)
        try:
            try:
                for entry in store_type().inventory(job):
                    if not isinstance(entry, InventoryEntry):
                        raise TypeError("inventory() must return InventoryEntry objects")
                    report.add(entry)
            except BaseException:
                report.abandon()
                raise
            status, body = report.commit()
        except StoreError as exc:
            kind = "may pass, retried" if exc.transient else "final"
            logger.warning("job %s failed (%s): %s", job.job_id, kind, exc)
            return JobOutcome.FAILURE, truncate(str(exc)), not exc.transient
        except PlatformError as exc:
            # Refused, not failed: e.g. the lease lapsed and the job moved to another attempt.
            logger.warning("job %s: the platform refused the report: %s", job.job_id, exc)
            return (
                JobOutcome.FAILURE,
                truncate(f"the platform refused the inventory report: {exc.message}"),
                False,
            )
        except PlatformUnavailable as exc:
            logger.warning("job %s: the report could not be delivered: %s", job.job_id, exc)
            return (
                JobOutcome.FAILURE,
                truncate(
                    "the platform could not take the inventory report before the lease ran "
                    f"out ({report.failures_text()})"
                ),
                False,
            )
        except Exception as exc:
            logger.exception("job %s: store type %s failed", job.job_id, store.store_type)
            return (
                JobOutcome.FAILURE,
                truncate(f"store type {store.store_type} failed: {type(exc).__name__}: {exc}"),
                False,
            )
        rejected = int(body.get("rejected_count") or 0)
        if status == 422 or rejected:
            message = rejected_summary(body, report.entries, rejected)
            logger.warning("job %s: %s", job.job_id, message)
            # Some entries recorded: a warning. None recorded: the inventory failed.
            recorded = bool(body.get("recorded"))
            return (JobOutcome.WARNING if recorded else JobOutcome.FAILURE), message, False
        count = report.entries
        return JobOutcome.SUCCESS, f"{count} {'entry' if count == 1 else 'entries'}", False

    def _complete(
        self,
        job_id: str,
        outcome: JobOutcome,
        message: str,
        deadline: float,
        attempt: int | None,
        result: dict[str, Any] | None = None,
        *,
        final: bool = False,
    ) -> None:
        try:
            self._reporting(
                lambda: self._client.complete(
                    job_id, outcome, message, attempt, result=result, final=final
                ),
                deadline,
            )
        except PlatformError as exc:
            # E.g. the lease lapsed and the job went to another attempt: nothing to redo here.
            logger.warning("job %s: the platform refused its result: %s", job_id, exc.message)
            return
        except PlatformUnavailable as exc:
            logger.warning("job %s: its result could not be delivered: %s", job_id, exc)
            return
        logger.info("job %s: %s (%s)", job_id, outcome, message)

    def _reporting(
        self,
        call: Callable[[], T],
        deadline: float,
        failures: list[dict[str, str]] | None = None,
    ) -> T:
        """Run ``call`` (safe to repeat) until it is answered, backing off while the platform
        is unavailable (network error, 5xx) and the lease still holds — even after a stop
        request: a finished job's result is worth delivering. Each failure is appended to
        ``failures`` so the platform can keep it on the job's history."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except PlatformUnavailable as exc:
                if failures is not None:
                    failures.append({"at": _utc_now_iso(), "error": truncate(str(exc), 500)})
                delay = min(
                    REPORT_BACKOFF_MAX_SECONDS, REPORT_BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1)
                )
                if time.time() + delay >= deadline:
                    raise
                logger.warning(
                    "report not delivered (%s); trying again in %.1f s while the lease holds",
                    exc,
                    delay,
                )
                time.sleep(delay)

    # -- signals -------------------------------------------------------------------------------

    @contextmanager
    def _signals_stop(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            # No logging here: the handler may interrupt a log call holding the handler's lock.
            self._stop_reason = f"{signal.Signals(signum).name} received"
            self._stop.set()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _failed(message: str) -> JobResult:
    return JobResult(JobOutcome.FAILURE, truncate(message), None, reached_store=False)


def _safe_folder_name(store_id: str) -> str:
    """A folder name from a store id the platform sent: never a path of its own."""
    return hashlib.sha256(store_id.encode()).hexdigest()[:32]


def _utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _attempt_of(summary: dict[str, Any]) -> int | None:
    try:
        return int(summary["attempt"])
    except (KeyError, TypeError, ValueError):
        return None


def _lease_deadline(lease_expires_at: Any) -> float:
    """The Unix time until which the job is ours, a little early to be safe."""
    try:
        expires = dt.datetime.fromisoformat(str(lease_expires_at).replace("Z", "+00:00"))
        return expires.timestamp() - 5.0
    except ValueError:
        return time.time() + DEFAULT_LEASE_SECONDS


class _Lease:
    """Until when the job is the agent's (Unix time, a little early): each chunk renews it."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def renewed(self, deadline: float) -> None:
        self.deadline = max(self.deadline, deadline)


class _ChunkedReport:
    """Sends an inventory report in chunks as the store yields entries, then commits it.

    Chunks travel in background threads while the store reads the next one, so reading
    and the platform's work overlap, and a platform with several web workers parses
    chunks side by side. At most ``CHUNKS_IN_FLIGHT`` are in flight and one is being
    filled, so memory stays bounded whatever the size of the store. The commit comes
    after every chunk was answered.
    """

    def __init__(
        self,
        client: PlatformClient,
        job: JobConfiguration,
        lease: _Lease,
        reporting: Callable[..., Any],
    ) -> None:
        self._client = client
        self._job = job
        self._lease = lease
        self._reporting = reporting
        self._pending: list[InventoryEntry] = []
        self._pending_bytes = 0
        self._sequence = 0
        self._first_index = 0
        self._new_certificates = 0
        self._sender = ThreadPoolExecutor(max_workers=CHUNKS_IN_FLIGHT, thread_name_prefix="report")
        self._in_flight: list[Future[dict[str, Any]]] = []
        self.entries = 0
        self.failures: list[dict[str, str]] = []

    def add(self, entry: InventoryEntry) -> None:
        self._pending.append(entry)
        self._pending_bytes += len(entry.alias) + sum(len(c) for c in entry.certificates)
        self.entries += 1
        if len(self._pending) >= CHUNK_MAX_ENTRIES or self._pending_bytes >= CHUNK_MAX_BYTES:
            self._send()

    def _send(self) -> None:
        chunk, sequence, first_index = self._pending, self._sequence, self._first_index
        while len(self._in_flight) >= CHUNKS_IN_FLIGHT:
            self._wait_for_oldest()
        self._in_flight.append(self._sender.submit(self._deliver, sequence, first_index, chunk))
        self._sequence += 1
        self._first_index += len(chunk)
        self._pending, self._pending_bytes = [], 0

    def _deliver(
        self, sequence: int, first_index: int, chunk: list[InventoryEntry]
    ) -> dict[str, Any]:
        """Send one chunk; when the platform lacks certificates the chunk named by their
        fingerprint, send it again with those entries in full."""

        def send(entries: list[InventoryEntry]) -> dict[str, Any]:
            return self._reporting(
                lambda: self._client.submit_inventory_chunk(
                    self._job.job_id,
                    attempt=self._job.attempt,
                    sequence=sequence,
                    first_index=first_index,
                    entries=entries,
                ),
                self._lease.deadline,
                self.failures,
            )

        answer = send(chunk)
        # Each chunk renews the lease: keep trying (and waiting) as long as it now runs.
        if answer.get("lease_expires_at"):
            self._lease.renewed(_lease_deadline(answer["lease_expires_at"]))
        unknown = {int(i) - first_index for i in answer.get("unknown") or []}
        if unknown:
            logger.info("the platform asked for %d entries in full", len(unknown))
            full = [
                entry.load_full() if i in unknown and entry.load_full is not None else entry
                for i, entry in enumerate(chunk)
            ]
            answer = send(full)
        return answer

    def _wait_for_oldest(self) -> None:
        """Wait for the oldest chunk in flight; its failure (after its retries) is the
        report's."""
        answer = self._in_flight.pop(0).result()
        self._new_certificates += int(answer.get("new_certificates") or 0)

    def commit(self) -> tuple[int, dict[str, Any]]:
        try:
            if self._pending or self._sequence == 0:
                self._send()
            while self._in_flight:
                self._wait_for_oldest()
        finally:
            self._sender.shutdown(wait=True)
        return self._reporting(
            lambda: self._client.commit_inventory(
                self._job.job_id,
                attempt=self._job.attempt,
                chunks=self._sequence,
                new_certificates=self._new_certificates,
                submission_errors=self.failures[-20:],
                # Applying a large store takes a while: wait for it while the lease holds.
                timeout=max(COMMIT_TIMEOUT_MIN_SECONDS, self._lease.deadline - time.time()),
            ),
            self._lease.deadline,
            self.failures,
        )

    def abandon(self) -> None:
        """Stop sending (the store failed); a chunk in flight finishes and is forgotten."""
        self._sender.shutdown(wait=True, cancel_futures=True)

    def failures_text(self) -> str:
        if not self.failures:
            return "no answer"
        return f"{len(self.failures)} failed tries; last: {self.failures[-1]['error']}"
