"""The agent's run loop: keep a session, heartbeat, long-poll for jobs, run them, report."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from orchestrators.agent.client import (
    IdentityRejected,
    NotApproved,
    PlatformClient,
    PlatformError,
    PlatformUnavailable,
)
from orchestrators.protocol import MAX_POLL_WAIT_SECONDS, JobOutcome, JobType
from orchestrators.sdk import (
    InventoryEntry,
    JobConfiguration,
    StoreError,
    StoreTypeExtension,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_OK = 0
EXIT_IDENTITY_REJECTED = 3

HEARTBEAT_INTERVAL_SECONDS = 60.0
NOT_APPROVED_WAIT_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 60.0
MESSAGE_MAX_CHARS = 2000
# How often the main thread looks at the stop event while a long poll is in flight.
STOP_CHECK_SECONDS = 0.2
# Attempts at reporting a job's result while the platform is unavailable.
REPORT_ATTEMPTS = 3


def truncate(message: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """``message`` cut to ``limit`` characters, marked when cut."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def rejected_summary(body: dict[str, Any], submitted: int) -> str:
    """A job message for a 422 inventory answer: each rejected entry's alias and reason."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    rejected = (
        body.get("rejected") or error.get("rejected") or error.get("fields", {}).get("entries")
    )
    if not isinstance(rejected, list) or not rejected:
        return truncate(f"inventory partly rejected: {error.get('message', body)}")
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
    return truncate(f"{len(rejected)} of {submitted} entries rejected: " + "; ".join(parts))


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
    ) -> None:
        self._client = client
        self._store_types = store_types
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
                    logger.error(
                        "the platform refused this orchestrator's identity (%s): it was reset "
                        "or deleted. Re-register with `certyard-orchestrator register --url URL "
                        "--token TOKEN`, then start the agent again.",
                        exc.message,
                    )
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

    # -- loop ----------------------------------------------------------------------------------

    def _step(self) -> None:
        if not self._client.has_session:
            status = self._client.open_session()
            logger.info("session opened; orchestrator status: %s", status)
            if status == "approved":
                self._set_approved(True)
        self._heartbeat_if_due()
        job = self._poll()
        if self._stop.is_set():
            return
        self._set_approved(True)
        if job is not None:
            self._run_job(job)

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
        while worker.is_alive():
            if self._stop.is_set():
                return None
            worker.join(STOP_CHECK_SECONDS)
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("job")

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
        try:
            job = JobConfiguration.from_wire(self._client.job_config(job_id))
        except ValueError as exc:
            self._complete(job_id, JobOutcome.FAILURE, f"cannot run job: {exc}")
            return
        outcome, message = self._execute(job)
        self._complete(job_id, outcome, message)

    def _execute(self, job: JobConfiguration) -> tuple[JobOutcome, str]:
        store = job.store
        store_type = self._store_types.get(store.store_type)
        if store_type is None:
            return JobOutcome.FAILURE, (
                f"store type {store.store_type} is not supported by this orchestrator "
                f"(supported: {', '.join(sorted(self._store_types)) or 'none'})"
            )
        if job.type is not JobType.INVENTORY or job.type not in store_type.operations:
            return JobOutcome.FAILURE, (
                f"job type {job.type} is not supported for store type {store.store_type} "
                "by this orchestrator"
            )
        try:
            entries = store_type().inventory(job)
            if not all(isinstance(entry, InventoryEntry) for entry in entries):
                raise TypeError("inventory() must return InventoryEntry objects")
        except StoreError as exc:
            logger.warning("job %s failed: %s", job.job_id, exc)
            return JobOutcome.FAILURE, truncate(str(exc))
        except Exception as exc:
            logger.exception("job %s: store type %s failed", job.job_id, store.store_type)
            return JobOutcome.FAILURE, truncate(
                f"store type {store.store_type} failed: {type(exc).__name__}: {exc}"
            )
        status, body = self._reporting(lambda: self._client.submit_inventory(job.job_id, entries))
        if status == 422:
            message = rejected_summary(body, len(entries))
            logger.warning("job %s: %s", job.job_id, message)
            # Some entries recorded: a warning. None recorded: the inventory failed.
            recorded = bool(body.get("recorded"))
            return (JobOutcome.WARNING if recorded else JobOutcome.FAILURE), message
        return JobOutcome.SUCCESS, f"{len(entries)} entries"

    def _complete(self, job_id: str, outcome: JobOutcome, message: str) -> None:
        try:
            self._reporting(lambda: self._client.complete(job_id, outcome, message))
        except PlatformError as exc:
            # E.g. the lease lapsed and the job went to another attempt: nothing to redo here.
            logger.warning("job %s: the platform refused its result: %s", job_id, exc.message)
            return
        logger.info("job %s: %s (%s)", job_id, outcome, message)

    def _reporting(self, call: Callable[[], T]) -> T:
        """Run ``call`` (a report, safe to repeat), retrying briefly while the platform is
        unavailable, even after a stop request: a finished job is reported before exiting."""
        for attempt in range(1, REPORT_ATTEMPTS + 1):
            try:
                return call()
            except PlatformUnavailable:
                if attempt == REPORT_ATTEMPTS:
                    raise
                time.sleep(attempt)
        raise AssertionError("unreachable")

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
