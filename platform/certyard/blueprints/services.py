"""Writes of the blueprints app: save an orchestrator's stores as a blueprint, apply one.

A blueprint's machines and paths are templates. Saving turns the source orchestrator's
client machine and name into ``{client_machine}`` and ``{orchestrator}``; applying fills
them in with the target's. Stores are made by inventory's ``store_create``, so a
blueprint never makes a store the console or the API would refuse.
"""

import logging
import ntpath
import posixpath
import re
from dataclasses import dataclass, field

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction

from certyard.blueprints.models import (
    PLACEHOLDER_CLIENT_MACHINE,
    PLACEHOLDER_ORCHESTRATOR,
    Blueprint,
    BlueprintStore,
)
from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore
from certyard.inventory.services import store_client_machine, store_create
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request, job_source_context
from certyard.workflows.models import HandlerRegistration

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = Blueprint._meta.get_field("name").max_length or 200
_PATH_MAX_LENGTH = CertificateStore._meta.get_field("store_path").max_length or 1024

# --- Templates ---------------------------------------------------------------------


def _placeholders_insert(text: str, *, orchestrator: Orchestrator) -> str:
    """``text`` with the orchestrator's machine and name, where each stands as a whole
    word (not inside a longer name: ``web`` in ``webroot`` stays), as placeholders."""
    replacements: dict[str, str] = {}
    # The machine last, so it wins when the name and the machine are the same text.
    for value, placeholder in (
        (orchestrator.name, PLACEHOLDER_ORCHESTRATOR),
        (orchestrator.client_machine, PLACEHOLDER_CLIENT_MACHINE),
    ):
        if value:
            replacements[value] = placeholder
    if not replacements:
        return text
    # One pass, longest first: the machine (agent-1.example.test) before the name (agent-1)
    # it often starts with, and no placeholder is ever rewritten by the other.
    alternatives = "|".join(re.escape(v) for v in sorted(replacements, key=len, reverse=True))
    pattern = re.compile(rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])")
    return pattern.sub(lambda match: replacements[match.group(1)], text)


_PLACEHOLDER = re.compile(r"\{(client_machine|orchestrator)\}")


def placeholders_fill(template: str, *, orchestrator: Orchestrator) -> str:
    """The template with ``{client_machine}`` and ``{orchestrator}`` filled in (and only
    those: other braces are left as they are)."""
    values = {"client_machine": orchestrator.client_machine, "orchestrator": orchestrator.name}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


# Characters a value filled into a path may not hold: separators, and anything that is
# not plainly printable (line breaks, controls, bidi marks).
_PATH_VALUE_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:[\\/]|\\\\")


def store_path_fill(template: str, *, orchestrator: Orchestrator) -> str:
    """The store path of a template for this orchestrator, normalised; ``ServiceError``
    (``path_escape``) when it would leave the blueprint's folder.

    The folder is the template's directory before its first placeholder
    (``/srv/certs/{client_machine}/pki`` stays under ``/srv/certs``). Each value filled in
    must be one plain path component (no separator, no ``.`` or ``..``, no control or
    bidi character), and the filled path, normalised (``a/./b``, ``a//b``), must still be
    inside that folder. A template without a placeholder is used as it is.
    """
    found = [template.find(p) for p in (PLACEHOLDER_CLIENT_MACHINE, PLACEHOLDER_ORCHESTRATOR)]
    first = min((index for index in found if index >= 0), default=-1)
    if first < 0:
        return template
    windows = bool(_WINDOWS_PATH.match(template)) or ("\\" in template and "/" not in template)
    flavour = ntpath if windows else posixpath
    values = {"client_machine": orchestrator.client_machine, "orchestrator": orchestrator.name}
    for key, value in values.items():
        if f"{{{key}}}" in template and (
            value in ("", ".", "..")
            or _PATH_VALUE_FORBIDDEN.search(value)
            or (windows and ":" in value)  # a drive or a stream on Windows
        ):
            raise ServiceError(
                f"the store path would leave the blueprint's folder: the {key.replace('_', ' ')} "
                f"{value!r} is not a plain path component",
                code="path_escape",
            )
    filled = placeholders_fill(template, orchestrator=orchestrator)
    normal = flavour.normpath(filled)
    head = template[:first]
    folder = head[: max(head.rfind("/"), head.rfind("\\")) + 1]
    if folder:
        base = flavour.normpath(folder)
        prefix = base if base.endswith(flavour.sep) else base + flavour.sep
        inside = normal == base or normal.startswith(prefix)
    else:  # a relative template: it must stay relative, below where it starts
        inside = (
            not flavour.isabs(normal)
            and not flavour.splitdrive(normal)[0]
            and normal.split(flavour.sep)[0] != ".."
        )
    if not inside:
        raise ServiceError(
            f"the store path {filled!r} would leave the blueprint's folder "
            f"{folder or '(relative)'!r}",
            code="path_escape",
        )
    return normal


# --- Saving ------------------------------------------------------------------------


def _name_check(name: str) -> str:
    name = name.strip()
    if not name:
        raise ServiceError(
            "a blueprint needs a name", details={"fields": {"name": ["This field is required."]}}
        )
    if len(name) > NAME_MAX_LENGTH:
        raise ServiceError(
            f"a blueprint's name has at most {NAME_MAX_LENGTH} characters",
            details={"fields": {"name": ["too long"]}},
        )
    return name


def _duplicate_name(name: str) -> Conflict:
    conflict = Conflict(f"a blueprint named {name} already exists; choose another name")
    conflict.details = {"fields": {"name": ["already taken"]}}
    return conflict


def blueprint_save(
    *,
    orchestrator: Orchestrator,
    name: str,
    description: str = "",
    actor: AbstractBaseUser | None,
) -> Blueprint:
    """Save the orchestrator's stores (type, machine, path, properties, password and
    inventory schedule) as a new blueprint named ``name``.

    The orchestrator's client machine and name, where they appear in a store's machine
    or path, become the ``{client_machine}`` and ``{orchestrator}`` placeholders. Raises
    ``Conflict`` when the name is taken (whatever its case) and ``ServiceError`` when the
    orchestrator has no store.
    """
    name = _name_check(name)
    stores = list(
        CertificateStore.objects.filter(orchestrator=orchestrator)
        .select_related("store_type")
        .order_by("store_type__short_name", "client_machine", "store_path")
    )
    if not stores:
        raise ServiceError(
            f"orchestrator {orchestrator.name} has no store: there is nothing to save",
            code="no_stores",
        )
    if Blueprint.objects.filter(name__iexact=name).exists():
        raise _duplicate_name(name)
    templates: dict[tuple[int, str, str], BlueprintStore] = {}
    for store in stores:
        machine = (
            PLACEHOLDER_CLIENT_MACHINE
            if store.client_machine.lower() == orchestrator.client_machine.lower()
            else _placeholders_insert(store.client_machine, orchestrator=orchestrator)
        )
        path = _placeholders_insert(store.store_path, orchestrator=orchestrator)
        # Two stores can only become one template if a path already held a placeholder.
        templates.setdefault(
            (store.store_type_id, machine, path),
            BlueprintStore(
                store_type=store.store_type,
                client_machine=machine,
                store_path=path,
                properties=store.properties,
                password=store.password,
                inventory_interval_minutes=store.inventory_interval_minutes,
            ),
        )
    try:
        with transaction.atomic():
            blueprint = Blueprint.objects.create(
                name=name,
                description=description.strip(),
                source_orchestrator=orchestrator.name,
                created_by=actor,
            )
            for template in templates.values():
                template.blueprint = blueprint
            BlueprintStore.objects.bulk_create(templates.values())
    except IntegrityError:  # saved under the same name at the same moment
        raise _duplicate_name(name) from None
    return blueprint


def blueprint_delete(*, blueprint: Blueprint) -> None:
    """Forget a blueprint; the stores it made stay where they are."""
    blueprint.delete()


# --- Applying ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreRefusal:
    """A blueprint store that was not created, and why (the service's code and sentence)."""

    store_type: str
    client_machine: str
    store_path: str
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.store_type} {self.client_machine}:{self.store_path}: {self.reason}"


@dataclass(slots=True)
class BlueprintApplication:
    """What applying a blueprint did: stores created, stores already there, refusals."""

    blueprint: Blueprint
    orchestrator: Orchestrator
    created: list[CertificateStore] = field(default_factory=list)
    skipped: list[CertificateStore] = field(default_factory=list)
    refused: list[StoreRefusal] = field(default_factory=list)
    jobs_queued: int = 0

    @property
    def summary(self) -> str:
        """One sentence for a person: counts, then each refusal with its reason."""
        parts = [f"{_stores(len(self.created))} created"]
        if self.jobs_queued:
            parts[0] += f" ({_count(self.jobs_queued, 'inventory job')} queued)"
        if self.skipped:
            parts.append(f"{_stores(len(self.skipped))} already present")
        if self.refused:
            reasons = "; ".join(str(refusal) for refusal in self.refused)
            parts.append(f"{_stores(len(self.refused))} refused ({reasons})")
        where = f"Blueprint {self.blueprint.name} on {self.orchestrator.name}"
        return f"{where}: {', '.join(parts)}."


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _stores(number: int) -> str:
    return _count(number, "store")


def _orchestrator_require_approved(orchestrator: Orchestrator) -> None:
    if orchestrator.status != Orchestrator.Status.APPROVED:
        raise ServiceError(
            f"orchestrator {orchestrator.name} is not approved; approve it before applying "
            "a blueprint to it",
            code="not_approved",
            http_status=409,
        )


def blueprint_apply(
    *,
    blueprint: Blueprint,
    orchestrator: Orchestrator,
    actor: AbstractBaseUser | None,
    source: str = Job.Source.ADMIN,
) -> BlueprintApplication:
    """Create the blueprint's stores on an approved orchestrator, in one transaction.

    Each store goes through ``store_create`` (capability, machine, properties, password
    rules) with its schedule, and gets an inventory job at once (``source`` and ``actor``
    are recorded on it). A store already there (same type, machine and path) on this
    orchestrator is skipped, so applying twice is harmless; a store ``store_create``
    refuses, or one another orchestrator already holds, is a refusal with its reason,
    and the others are still created. Raises ``ServiceError`` (409) when the
    orchestrator is not approved.
    """
    _orchestrator_require_approved(orchestrator)
    application = BlueprintApplication(blueprint=blueprint, orchestrator=orchestrator)
    templates = blueprint.stores.select_related("store_type").order_by("pk")
    with transaction.atomic():
        for template in templates:
            _store_apply(template, application)
        for store in application.created:
            _job, opened = job_inventory_request(store=store, source=source, requested_by=actor)
            application.jobs_queued += opened
    logger.info("%s", application.summary)
    return application


def _store_apply(template: BlueprintStore, application: BlueprintApplication) -> None:
    """Create one blueprint store on the application's orchestrator, or say why not."""
    orchestrator = application.orchestrator
    store_type = template.store_type
    machine = placeholders_fill(template.client_machine, orchestrator=orchestrator)
    path = placeholders_fill(template.store_path, orchestrator=orchestrator)

    def refuse(code: str, reason: str) -> None:
        refusal = StoreRefusal(store_type.short_name, machine, path, code, reason)
        application.refused.append(refusal)

    try:
        path = store_path_fill(template.store_path, orchestrator=orchestrator)
    except ServiceError as exc:
        return refuse(exc.code, exc.message)

    if not path.strip():
        return refuse("invalid", "the store path is empty")
    if len(path) > _PATH_MAX_LENGTH:
        return refuse("invalid", f"the store path is longer than {_PATH_MAX_LENGTH} characters")
    if not isinstance(template.properties, dict):
        return refuse("invalid", "the blueprint's properties for this store are not an object")
    try:
        machine = store_client_machine(orchestrator=orchestrator, client_machine=machine)
    except ServiceError as exc:
        return refuse(exc.code, exc.message)
    if _already_present(template, machine, path, application):
        return None
    try:
        store = store_create(
            store_type=store_type,
            store_path=path,
            orchestrator=orchestrator,
            client_machine=machine,
            properties=dict(template.properties),
            password=template.password,
            inventory_interval_minutes=template.inventory_interval_minutes,
        )
    except ServiceError as exc:
        # A duplicate here was made at the same moment: by this orchestrator, it is there.
        if exc.code == "duplicate" and _already_present(template, machine, path, application):
            return None
        return refuse(exc.code, exc.message)
    application.created.append(store)
    return None


def _already_present(
    template: BlueprintStore, machine: str, path: str, application: BlueprintApplication
) -> bool:
    """Record a store of this type, machine and path: skipped when the orchestrator holds
    it, refused when another one does. False when there is none."""
    existing = (
        CertificateStore.objects.filter(
            store_type=template.store_type, client_machine__iexact=machine, store_path=path
        )
        .select_related("orchestrator")
        .first()
    )
    if existing is None:
        return False
    if existing.orchestrator_id == application.orchestrator.pk:
        application.skipped.append(existing)
    else:
        application.refused.append(
            StoreRefusal(
                template.store_type.short_name,
                machine,
                path,
                "duplicate",
                f"orchestrator {existing.orchestrator.name} already manages this store",
            )
        )
    return True


# --- Registration hooks --------------------------------------------------------------


def blueprint_name_check(name: str) -> str:
    """The name of the blueprint called ``name`` (whatever the case), as stored; fleet
    calls it when a registration token is restricted to a blueprint."""
    blueprint = Blueprint.objects.filter(name__iexact=name.strip()).first()
    if blueprint is None:
        message = f"there is no blueprint named {name.strip()[:200]!r}"
        raise ServiceError(
            f"blueprint: {message}", code="invalid", details={"fields": {"blueprint": [message]}}
        )
    return blueprint.name


def blueprint_apply_by_name(
    *, orchestrator: Orchestrator, blueprint_name: str, decided_by: str = ""
) -> None:
    """Apply the blueprint a registration handler named (fleet calls this after commit).

    The jobs it opens record the handler registration that decided (``decided_by``).

    Never raises: an unknown name, a refusal or a failure is logged at WARNING and kept
    as the orchestrator's ``last_error``, where the console shows it.
    """
    current = Orchestrator.objects.filter(pk=orchestrator.pk).first()
    if current is None:
        logger.warning("blueprint %r: orchestrator %s is gone", blueprint_name, orchestrator.pk)
        return
    name = str(blueprint_name).strip()
    blueprint = Blueprint.objects.filter(name__iexact=name).first() if name else None
    if blueprint is None:
        _failure_record(current, f"Blueprint {name!r} was not applied: there is no such blueprint.")
        return
    try:
        with job_source_context(
            detail=f"{decided_by or 'a registration handler'}: blueprint {blueprint.name}",
            registration_id=_registration_id(decided_by),
        ):
            application = blueprint_apply(
                blueprint=blueprint, orchestrator=current, actor=None, source=Job.Source.HANDLER
            )
    except ServiceError as exc:
        _failure_record(current, f"Blueprint {blueprint.name} was not applied: {exc.message}.")
        return
    except Exception:  # the registration committed already: it must not fail after the fact
        message = f"Blueprint {blueprint.name} was not applied: it failed (see the log)."
        _failure_record(current, message, exc_info=True)
        return
    if application.refused:
        _failure_record(current, application.summary)


def _registration_id(name: str) -> int | None:
    """The handler registration of that name (names are unique), if it still exists."""
    if not name:
        return None
    return HandlerRegistration.objects.filter(name=name).values_list("pk", flat=True).first()


def _failure_record(orchestrator: Orchestrator, message: str, *, exc_info: bool = False) -> None:
    logger.warning("orchestrator %s: %s", orchestrator.name, message, exc_info=exc_info)
    Orchestrator.objects.filter(pk=orchestrator.pk).update(last_error=message)
    orchestrator.last_error = message
