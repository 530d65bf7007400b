"""Discovery: ask an agent to look for certificate stores, record what it found, and
turn the candidates an administrator approves into stores.

Everything a discovery report says is attacker-written (the agent's machine may be
compromised): it is checked strictly, recorded as data and never acted on by itself; a
store is made only when a person approves a candidate.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from certyard.accounts.authorization import permission_require
from certyard.deployment.models import DiscoveryCandidate
from certyard.deployment.services.agent_jobs import job_require_leased, reported_job
from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStoreType
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request, job_request
from orchestrators.protocol import JobType

ADD_STORE_PERMISSION = "inventory.add_certificatestore"

# Limits of a request (what a person asks the agent to search).
MAX_DIRECTORIES = 64
MAX_PATTERNS = 64
MAX_IGNORED = 256
MAX_PATH = 4096
MAX_PATTERN = 255
MAX_DEPTH = 64
DEFAULT_MAX_DEPTH = 8

# Limits of a report (what the agent found).
MAX_CANDIDATES = 20_000
MAX_ERROR = 1000
MAX_CERTIFICATE_COUNT = 1_000_000

CANDIDATE_KINDS = ("pem", "der", "pkcs7", "pkcs12", "jks", "jceks", "key_only", "unknown")
CANDIDATE_STORE_TYPES = ("PEM", "PKCS12", "JKS", "JCEKS")
_CANDIDATE_KEYS = frozenset(
    {
        "path",
        "kind",
        "store_type",
        "certificate_count",
        "private_key",
        "password_needed",
        "error",
    }
)

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides: a
# path with one would be misleading on a page (a hidden "/" or a reversed name).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


# --- Requesting a discovery ----------------------------------------------------------------


def _is_absolute(path: str) -> bool:
    return path.startswith("/") or bool(_WINDOWS_ABSOLUTE.match(path))


def _segments(path: str) -> list[str]:
    return [s for s in re.split(r"[\\/]", path) if s]


def _path_problem(path: Any, *, what: str) -> str | None:
    """Why ``path`` is no usable absolute path (None: it is one)."""
    if not isinstance(path, str):
        return f"{what} must be text"
    if not path:
        return f"{what} is empty"
    if len(path) > MAX_PATH:
        return f"{what} is longer than {MAX_PATH} characters"
    if _UNSAFE.search(path):
        return f"{what} contains a control character"
    if not _is_absolute(path):
        return f"{what} {path!r} is not an absolute path"
    if ".." in _segments(path):
        return f"{what} {path!r} contains '..'"
    return None


def _strings(value: Any, *, name: str, limit: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ServiceError(f"{name} must be a list", field=name)
    if len(value) > limit:
        raise ServiceError(f"give at most {limit} {name.replace('_', ' ')}", field=name)
    return list(value)


def _directories_check(directories: Any) -> list[str]:
    values = _strings(directories, name="directories", limit=MAX_DIRECTORIES)
    if not values:
        raise ServiceError("name at least one directory to search", field="directories")
    checked: list[str] = []
    for value in values:
        problem = _path_problem(value, what="a directory")
        if problem:
            raise ServiceError(problem, field="directories")
        if value not in checked:
            checked.append(value)
    return checked


def _patterns_check(patterns: Any) -> list[str]:
    checked: list[str] = []
    for value in _strings(patterns, name="file_patterns", limit=MAX_PATTERNS):
        if not isinstance(value, str) or not value.strip():
            raise ServiceError("a file pattern must be non-empty text", field="file_patterns")
        if len(value) > MAX_PATTERN or _UNSAFE.search(value):
            raise ServiceError(
                f"a file pattern is at most {MAX_PATTERN} characters, without control characters",
                field="file_patterns",
            )
        if "/" in value or "\\" in value:
            raise ServiceError(
                f"the file pattern {value!r} names a folder: patterns match file names "
                "(like *.pem)",
                field="file_patterns",
            )
        if value not in checked:
            checked.append(value)
    return checked


def _ignored_check(ignored: Any) -> list[str]:
    checked: list[str] = []
    for value in _strings(ignored, name="ignored_directories", limit=MAX_IGNORED):
        if isinstance(value, str) and value and not _is_absolute(value):
            # A folder name, ignored wherever it is met (like "node_modules").
            if len(value) > MAX_PATTERN or _UNSAFE.search(value) or value in (".", ".."):
                raise ServiceError(
                    f"the ignored folder name {value!r} is not usable",
                    field="ignored_directories",
                )
            if "/" in value or "\\" in value:
                raise ServiceError(
                    f"{value!r}: give a folder name or an absolute path",
                    field="ignored_directories",
                )
        else:
            problem = _path_problem(value, what="an ignored directory")
            if problem:
                raise ServiceError(problem, field="ignored_directories")
        if value not in checked:
            checked.append(value)
    return checked


def discovery_request(
    *,
    orchestrator: Orchestrator,
    directories: Any,
    file_patterns: Any = None,
    ignored_directories: Any = None,
    follow_links: Any = False,
    max_depth: Any = DEFAULT_MAX_DEPTH,
    actor: Any,
    source: str = Job.Source.API,
) -> Job:
    """Queue a ``discovery`` job: the agent searches ``directories`` for stores.

    ``file_patterns`` are file-name patterns (empty: every file); ``ignored_directories``
    are folder names (ignored anywhere) or absolute paths. The agent searches only within
    its own roots, whatever is asked here. Finding stores is the first step of adding
    them: ``actor`` needs the permission to add stores.
    """
    permission_require(actor, ADD_STORE_PERMISSION, message="you may not add stores")
    if not isinstance(follow_links, bool):
        raise ServiceError("follow_links is true or false", field="follow_links")
    if not isinstance(max_depth, int) or isinstance(max_depth, bool):
        raise ServiceError("max_depth is a whole number", field="max_depth")
    if not 0 <= max_depth <= MAX_DEPTH:
        raise ServiceError(f"max_depth is 0 to {MAX_DEPTH}", field="max_depth")
    payload = {
        "directories": _directories_check(directories),
        "file_patterns": _patterns_check(file_patterns),
        "ignored_directories": _ignored_check(ignored_directories),
        "follow_links": follow_links,
        "max_depth": max_depth,
    }
    return job_request(
        orchestrator=orchestrator,
        store=None,
        type=JobType.DISCOVERY,
        payload=payload,
        actor=actor,
        source=source,
    )


# --- Recording a report --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reported:
    path: str
    kind: str
    store_type: str
    certificate_count: int
    private_key: bool
    password_needed: bool
    error: str


def _render_safe(text: str, limit: int) -> str:
    """Agent-written free text as it may be shown: no control characters, bounded."""
    return _UNSAFE.sub(" ", text)[:limit]


def _candidate_check(index: int, raw: Any) -> _Reported:
    where = f"candidates[{index}]"

    def refuse(message: str) -> ServiceError:
        return ServiceError(f"{where}: {message}", code="invalid_report", field="candidates")

    if not isinstance(raw, dict):
        raise refuse("each candidate is a JSON object")
    unknown = set(raw) - _CANDIDATE_KEYS
    if unknown:
        raise refuse(f"unknown fields {', '.join(sorted(map(str, unknown)))[:200]}")
    missing = {"path", "kind"} - set(raw)
    if missing:
        raise refuse(f"missing {', '.join(sorted(missing))}")
    path = raw["path"]
    problem = _path_problem(path, what="the path")
    if problem:
        raise refuse(problem)
    kind = raw["kind"]
    if kind not in CANDIDATE_KINDS:
        raise refuse(f"kind is one of {', '.join(CANDIDATE_KINDS)}")
    store_type = raw.get("store_type")
    if store_type is not None and store_type not in CANDIDATE_STORE_TYPES:
        raise refuse(f"store_type is one of {', '.join(CANDIDATE_STORE_TYPES)}, or null")
    count = raw.get("certificate_count", 0)
    if not isinstance(count, int) or isinstance(count, bool):
        raise refuse("certificate_count is a whole number")
    if not 0 <= count <= MAX_CERTIFICATE_COUNT:
        raise refuse(f"certificate_count is 0 to {MAX_CERTIFICATE_COUNT}")
    flags = {}
    for name in ("private_key", "password_needed"):
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise refuse(f"{name} is true or false")
        flags[name] = value
    error = raw.get("error")
    if error is not None and not isinstance(error, str):
        raise refuse("error is text or null")
    return _Reported(
        path=path,
        kind=kind,
        store_type=store_type or "",
        certificate_count=count,
        private_key=flags["private_key"],
        password_needed=flags["password_needed"],
        error=_render_safe(error or "", MAX_ERROR),
    )


def _under(path: str, directory: str) -> bool:
    base = directory.rstrip("/\\")
    if not base:  # "/" itself
        return True
    return path == base or path.startswith(base + "/") or path.startswith(base + "\\")


@dataclass(frozen=True, slots=True)
class _Searched:
    """What the job asked the agent to search: what may be reported, and what a candidate
    not reported this time means (gone, or merely not looked at)."""

    directories: tuple[str, ...]
    file_patterns: tuple[str, ...]
    ignored: tuple[str, ...]

    @classmethod
    def of(cls, payload: dict[str, Any]) -> _Searched:
        return cls(
            directories=tuple(payload.get("directories") or ()),
            file_patterns=tuple(payload.get("file_patterns") or ()),
            ignored=tuple(payload.get("ignored_directories") or ()),
        )

    def contains(self, path: str) -> bool:
        return any(_under(path, d) for d in self.directories)

    def looked_at(self, path: str) -> bool:
        """Whether this search would have reported ``path`` had it still been there."""
        if not self.contains(path):
            return False
        segments = _segments(path)
        for ignored in self.ignored:
            if _is_absolute(ignored):
                if _under(path, ignored):
                    return False
            elif ignored in segments[:-1]:
                return False
        if self.file_patterns and segments:
            return any(fnmatch.fnmatchcase(segments[-1], p) for p in self.file_patterns)
        return True


@dataclass(frozen=True, slots=True)
class DiscoveryCounts:
    new: int
    gone: int
    known: int
    duplicate: bool = False  # a repeat of the attempt's report: not applied again

    def as_dict(self) -> dict[str, int]:
        return {"new": self.new, "gone": self.gone, "known": self.known}


def discovery_report_record(
    *, orchestrator: Orchestrator, job_id: Any, attempt: int | None, candidates: Any
) -> DiscoveryCounts:
    """Record what a discovery job found: the orchestrator's candidates become the report.

    The job must be this orchestrator's ``discovery`` job, leased, at ``attempt``. New
    paths are ``new``; known ones are updated (a ``gone`` one is ``new`` again; approved
    and ignored ones keep their state, an approved one its store); a ``new`` candidate the
    search would have reported (under its directories, not ignored, matching its
    patterns) but did not is ``gone``. A candidate outside the searched directories
    refuses the whole report. The same attempt's report sent again is answered with the
    first answer, unapplied.
    """
    job = reported_job(
        orchestrator=orchestrator, job_id=job_id, attempt=attempt, job_type=JobType.DISCOVERY
    )
    recorded = (job.result or {}).get("discovery")
    if isinstance(recorded, dict) and recorded.get("attempt") == job.attempts:
        return DiscoveryCounts(
            new=recorded.get("new", 0),
            gone=recorded.get("gone", 0),
            known=recorded.get("known", 0),
            duplicate=True,
        )
    job_require_leased(job)
    if not isinstance(candidates, list):
        raise ServiceError("candidates is a list", code="invalid_report", field="candidates")
    if len(candidates) > MAX_CANDIDATES:
        raise ServiceError(
            f"the report has {len(candidates)} candidates; the limit is {MAX_CANDIDATES}",
            code="too_large",
            http_status=413,
            field="candidates",
        )
    searched = _Searched.of(job.payload or {})
    reported: dict[str, _Reported] = {}
    for index, raw in enumerate(candidates):
        one = _candidate_check(index, raw)
        if not searched.contains(one.path):
            raise ServiceError(
                f"candidates[{index}]: {one.path!r} is outside the directories this job searched",
                code="invalid_report",
                field="candidates",
            )
        if one.path in reported:
            raise ServiceError(
                f"candidates[{index}]: {one.path!r} is reported twice",
                code="invalid_report",
                field="candidates",
            )
        reported[one.path] = one
    counts = _candidates_apply(orchestrator, job, searched, reported)
    return counts


_UPDATED_FIELDS = [
    "kind",
    "store_type",
    "certificate_count",
    "private_key",
    "password_needed",
    "error",
    "state",
    "last_seen",
    "job",
]


def _candidates_apply(
    orchestrator: Orchestrator,
    job: Job,
    searched: _Searched,
    reported: dict[str, _Reported],
) -> DiscoveryCounts:
    now = timezone.now()
    with transaction.atomic():
        # The job row, locked: one report per attempt is applied, however many arrive.
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.state != Job.State.LEASED or locked.attempts != job.attempts:
            job_require_leased(locked)
            raise Conflict("the job moved on to another attempt", code="stale_attempt")
        recorded = (locked.result or {}).get("discovery")
        if isinstance(recorded, dict) and recorded.get("attempt") == locked.attempts:
            return DiscoveryCounts(
                new=recorded["new"], gone=recorded["gone"], known=recorded["known"], duplicate=True
            )
        existing = {
            c.path: c
            for c in DiscoveryCandidate.objects.select_for_update().filter(
                orchestrator=orchestrator
            )
        }
        created: list[DiscoveryCandidate] = []
        updated: list[DiscoveryCandidate] = []
        new = known = gone = 0
        for path, one in reported.items():
            candidate = existing.get(path)
            if candidate is None:
                created.append(
                    DiscoveryCandidate(
                        orchestrator=orchestrator,
                        path=path,
                        state=DiscoveryCandidate.State.NEW,
                        first_seen=now,
                        **_evidence(one),
                        last_seen=now,
                        job=job,
                    )
                )
                new += 1
                continue
            for name, value in _evidence(one).items():
                setattr(candidate, name, value)
            candidate.last_seen = now
            candidate.job = job
            if candidate.state == DiscoveryCandidate.State.GONE:
                candidate.state = DiscoveryCandidate.State.NEW  # back again
                new += 1
            else:
                known += 1
            updated.append(candidate)
        for path, candidate in existing.items():
            if (
                path not in reported
                and candidate.state == DiscoveryCandidate.State.NEW
                and searched.looked_at(path)
            ):
                candidate.state = DiscoveryCandidate.State.GONE
                candidate.job = job
                updated.append(candidate)
                gone += 1
        DiscoveryCandidate.objects.bulk_create(created, batch_size=1000)
        DiscoveryCandidate.objects.bulk_update(updated, _UPDATED_FIELDS, batch_size=1000)
        counts = DiscoveryCounts(new=new, gone=gone, known=known)
        locked.result = {
            **(locked.result or {}),
            "discovery": {"attempt": locked.attempts, **counts.as_dict()},
        }
        locked.save(update_fields=["result", "updated_at"])
    return counts


def _evidence(one: _Reported) -> dict[str, Any]:
    return {
        "kind": one.kind,
        "store_type": one.store_type,
        "certificate_count": one.certificate_count,
        "private_key": one.private_key,
        "password_needed": one.password_needed,
        "error": one.error,
    }


# --- Approving candidates ------------------------------------------------------------------


def _store_type_resolve(candidate: DiscoveryCandidate, store_type: Any) -> CertificateStoreType:
    if isinstance(store_type, CertificateStoreType):
        return store_type
    name = store_type or candidate.store_type
    if not name:
        raise ServiceError(
            f"{candidate.path} was not recognised as a store of a known type "
            f"({candidate.kind}): choose its store type",
            code="store_type_required",
            field="store_type",
        )
    found = CertificateStoreType.objects.filter(short_name=str(name)).first()
    if found is None:
        raise ServiceError(f"there is no store type {str(name)[:100]!r}", field="store_type")
    return found


def discovery_candidate_approve(
    *,
    candidate: DiscoveryCandidate,
    actor: Any,
    store_type: Any = None,
    password: str = "",
    source: str = Job.Source.API,
) -> DiscoveryCandidate:
    """Make a store of a ``new`` candidate and schedule its inventory.

    The store type is the candidate's unless ``store_type`` (a short name or an instance)
    is given. A password is required when the candidate needed one or the store type
    requires one. ``actor`` needs the permission to add stores and becomes the store's
    creator. Refused (``ServiceError``) with nothing written.
    """
    permission_require(actor, ADD_STORE_PERMISSION, message="you may not add stores")
    if candidate.state != DiscoveryCandidate.State.NEW:
        raise Conflict(
            f"{candidate.path} is {candidate.get_state_display().lower()}: only a new "
            "candidate can be approved",
            code="not_new",
        )
    if not isinstance(password, str):
        raise ServiceError("the password is text", field="password")
    resolved = _store_type_resolve(candidate, store_type)
    if not password and (candidate.password_needed or resolved.password_required):
        why = (
            "the agent could not open it without one"
            if candidate.password_needed
            else f"store type {resolved.short_name} requires one"
        )
        raise ServiceError(
            f"{candidate.path} needs its store password ({why})",
            code="password_required",
            field="password",
        )
    with transaction.atomic():
        locked = DiscoveryCandidate.objects.select_for_update().get(pk=candidate.pk)
        if locked.state != DiscoveryCandidate.State.NEW:
            raise Conflict(f"{locked.path} was approved or changed meanwhile", code="not_new")
        store = store_create(
            store_type=resolved,
            store_path=locked.path,
            orchestrator=locked.orchestrator,
            password=password,
            created_by=actor,
        )
        job_inventory_request(
            store=store, source=source, requested_by=actor if getattr(actor, "pk", None) else None
        )
        locked.state = DiscoveryCandidate.State.APPROVED
        locked.store = store
        locked.store_type = resolved.short_name
        locked.save(update_fields=["state", "store", "store_type"])
    return locked


@dataclass
class KindApproval:
    """What approving every new candidate of a kind did: the approved candidates, and
    each one that could not be approved with its reason."""

    approved: list[DiscoveryCandidate] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "approved": len(self.approved),
            "failed": len(self.failed),
            "stores": [str(c.store_id) for c in self.approved],
            "failures": self.failed,
        }


def discovery_candidates_approve_kind(
    *,
    orchestrator: Orchestrator,
    kind: str,
    actor: Any,
    password: str = "",
    source: str = Job.Source.API,
) -> KindApproval:
    """Approve every ``new`` candidate of ``kind`` on the orchestrator (one password for all).

    One transaction, each candidate in a savepoint of its own: a candidate that cannot
    be approved (no store type, a password needed and none given, a store already at that
    path) is reported with its reason and the others are approved. The choice: the admin
    asked for "all of a kind", and one odd file must not hold back the rest, nor leave
    the batch half-applied by a crash (the outer transaction commits all or nothing).
    """
    permission_require(actor, ADD_STORE_PERMISSION, message="you may not add stores")
    if kind not in CANDIDATE_KINDS:
        raise ServiceError(f"kind is one of {', '.join(CANDIDATE_KINDS)}", field="kind")
    outcome = KindApproval()
    with transaction.atomic():
        for candidate in _new_of_kind(orchestrator, kind):
            try:
                with transaction.atomic():
                    outcome.approved.append(
                        discovery_candidate_approve(
                            candidate=candidate, actor=actor, password=password, source=source
                        )
                    )
            except ServiceError as exc:
                outcome.failed.append(
                    {"candidate": candidate.pk, "path": candidate.path, "error": exc.message}
                )
    return outcome


def _new_of_kind(orchestrator: Orchestrator, kind: str) -> Iterable[DiscoveryCandidate]:
    return list(
        DiscoveryCandidate.objects.filter(
            orchestrator=orchestrator, kind=kind, state=DiscoveryCandidate.State.NEW
        )
        .select_related("orchestrator")
        .order_by("path")
    )
