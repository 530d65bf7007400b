"""Who may act on what (issue 14): every object-level operation of the API and the console,
walked with three people.

- the holder: the object's owner (who enrolled the certificate or request, who added the
  store), or for a decision on a request a member of the template's groups;
- a peer: exactly the same model permissions, but not a holder;
- a stranger: signed in, with no permission at all.

The holder is allowed; the peer and the stranger are refused (API: 403 with a JSON error;
console: a 403 page or a refused form) and the database is unchanged. The last tests check
that every object-level route of /api/v1/ and every console URL that takes a POST is in
the table below (or named as not object-level, with why), so a new endpoint cannot be
added without deciding who may use it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from certyard.enrollment import services as enrollment_services
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.inventory.models import (
    Certificate,
    CertificateMetadata,
    CertificateStore,
    CertificateStoreType,
    MetadataField,
)
from certyard.inventory.services import store_create
from certyard.jobs import services as job_services
from certyard.jobs.models import Job
from certyard.pki import services as pki_services
from certyard.pki.models import IssuedCertificate, KeyAlgorithm
from certyard.workflows.models import Event
from tests.certs import csr_for

pytestmark = pytest.mark.django_db

PASSWORD = "matrix-pass-1"
GRANT_ALL = ("manage_any_", "recover_archived_key")


@dataclass
class World:
    owner: Any
    approver: Any
    peer: Any
    stranger: Any
    certificate: Certificate  # the owner's, enrolled as PFX with an archived key
    pending: EnrollmentRequest  # the owner's, waiting for approval
    collectable: EnrollmentRequest  # the owner's PFX, approved, not yet collected
    store: CertificateStore  # added by the owner
    job: Job | None = None


def _model_permissions() -> list[Permission]:
    """Everything a busy operator holds on certificates, stores, requests and jobs, but no
    grant-all: what the peer and the holders share."""
    exclude = Q()
    for prefix in GRANT_ALL:
        exclude |= Q(codename__startswith=prefix)
    return list(
        Permission.objects.filter(
            content_type__app_label__in=["inventory", "enrollment", "jobs", "deployment"]
        ).exclude(exclude)
    )


@pytest.fixture
def world(register_agent: Callable[..., Any]) -> World:
    users = get_user_model().objects
    perms = _model_permissions()
    owner, approver, peer = (users.create_user(n) for n in ("owner", "approver", "peer"))
    for user in (owner, approver, peer):
        user.user_permissions.set(perms)
    stranger = users.create_user("stranger")
    approvers = Group.objects.create(name="approvers")
    approver.groups.add(approvers)

    ca = pki_services.ca_create(name="Root", key_algorithm=KeyAlgorithm.EC_P256, path_length=0)
    Template.objects.create(name="web", ca=ca, allowed_domains=["example.test"], archive_keys=True)
    guarded = Template.objects.create(
        name="guarded",
        ca=ca,
        allowed_domains=["example.test"],
        archive_keys=True,
        require_approval=True,
    )
    guarded.groups.add(approvers)
    MetadataField.objects.create(name="team", label="Team")

    issued = enrollment_services.enrollment_submit_pfx(
        template_name="web", common_name="app.example.test", password=PASSWORD, actor=owner
    ).request
    pending = enrollment_services.enrollment_submit_csr(
        template_name="guarded",
        csr_pem=csr_for("pending.example.test"),
        actor=owner,
    )
    collectable = enrollment_services.enrollment_submit_pfx(
        template_name="guarded", common_name="db.example.test", password=PASSWORD, actor=owner
    ).request
    enrollment_services.enrollment_approve(request=collectable, actor=None, handler="setup")
    orchestrator = register_agent("matrix-agent").orchestrator
    store = store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        store_path="/etc/ssl/certs",
        orchestrator=orchestrator,
        created_by=owner,
    )
    return World(
        owner=owner,
        approver=approver,
        peer=peer,
        stranger=stranger,
        certificate=Certificate.objects.get(pk=issued.certificate_id),
        pending=pending,
        collectable=EnrollmentRequest.objects.get(pk=collectable.pk),
        store=store,
    )


def _open_job(world: World) -> None:
    world.job, _ = job_services.job_inventory_request(store=world.store, source=Job.Source.API)


def _finished_job(world: World) -> None:
    _open_job(world)
    assert world.job is not None
    world.job = job_services.job_cancel(job=world.job, actor=None)


def snapshot() -> tuple[Any, ...]:
    """What any of the operations could change."""
    return (
        sorted(
            (str(pk), state, str(collected), str(decided))
            for pk, state, collected, decided in EnrollmentRequest.objects.values_list(
                "pk", "state", "pfx_collected_at", "decided_by_id"
            )
        ),
        sorted(IssuedCertificate.objects.values_list("pk", "revoked_at")),
        sorted(
            (str(pk), *rest)
            for pk, *rest in CertificateStore.objects.values_list(
                "pk", "store_path", "inventory_interval_minutes", "inventory_next_run"
            )
        ),
        sorted((str(pk), state) for pk, state in Job.objects.values_list("pk", "state")),
        sorted(CertificateMetadata.objects.values_list("certificate_id", "field_id", "value")),
        Event.objects.count(),
    )


@dataclass(frozen=True)
class Op:
    """One object-level operation: where, how, and what the holder gets."""

    id: str
    url_name: str  # the route's name (console ones with "console:")
    method: str
    path: Callable[[World], str]
    body: Callable[[World], dict[str, Any]] = lambda w: {}
    holder: str = "owner"  # or "approver": a decision is never the requester's
    allowed: tuple[int, ...] = (200,)
    changes: bool = True  # the holder's call changes the database
    prepare: Callable[[World], None] | None = None

    @property
    def console(self) -> bool:
        return self.url_name.startswith("console:")


def _cert(suffix: str, api: bool = True) -> Callable[[World], str]:
    if api:
        return lambda w: f"/api/v1/certificates/{w.certificate.pk}/{suffix}"
    return lambda w: f"/certificates/{w.certificate.pk}/{suffix}"


def _enr(suffix: str, attr: str = "pending", api: bool = True) -> Callable[[World], str]:
    if api:
        return lambda w: f"/api/v1/enrollments/{getattr(w, attr).pk}/{suffix}"
    return lambda w: f"/enrollment/requests/{getattr(w, attr).pk}/{suffix}"


def _store(suffix: str, api: bool = True) -> Callable[[World], str]:
    if api:
        return lambda w: f"/api/v1/stores/{w.store.pk}/{suffix}"
    return lambda w: f"/stores/{w.store.pk}/{suffix}"


def _job(suffix: str, api: bool = True) -> Callable[[World], str]:
    assert suffix
    if api:
        return lambda w: f"/api/v1/jobs/{w.job.pk}/{suffix}"  # type: ignore[union-attr]
    return lambda w: f"/jobs/{w.job.pk}/{suffix}"  # type: ignore[union-attr]


def _manageable(world: World) -> None:
    """The store's type takes added, removed and created certificates, its agent says it
    can, and the certificate sits in it (for renew-and-replace)."""
    from django.utils import timezone

    from certyard.inventory.models import CertificateLocation

    world.store.store_type.__class__.objects.filter(pk=world.store.store_type_id).update(
        supports_add=True, supports_remove=True, supports_create=True
    )
    orchestrator = world.store.orchestrator
    orchestrator.capabilities = ["PEM.Inventory", "PEM.Add", "PEM.Remove", "PEM.Create"]
    orchestrator.save(update_fields=["capabilities"])
    now = timezone.now()
    CertificateLocation.objects.get_or_create(
        store=world.store,
        certificate=world.certificate,
        alias="app",
        defaults={"first_seen": now, "last_seen": now},
    )
    world.store.refresh_from_db()


def _pkcs12_kept(world: World) -> None:
    """A PKCS#12 kept for the owner on the hand-over page of their collectable request."""
    import datetime as dt

    from django.utils import timezone

    from certyard.enrollment.models import PfxHandOver

    PfxHandOver.objects.create(
        request=world.collectable,
        owner=world.owner,
        pkcs12_b64="MAA=",
        expires_at=timezone.now() + dt.timedelta(minutes=5),
    )


_RENEW_FORM = {"renew-password": PASSWORD, "renew-password_confirm": PASSWORD}
_COLLECT_FORM = {"collect-password": PASSWORD, "collect-password_confirm": PASSWORD}

OPERATIONS = [
    # --- Certificates ----------------------------------------------------------------------
    Op("api-renew", "certificate-renew", "post", _cert("renew/"),
       lambda w: {"password": PASSWORD}, allowed=(201,)),
    Op("api-renew-reuse-key", "certificate-renew", "post", _cert("renew/"),
       lambda w: {"password": PASSWORD, "reuse_key": True}, allowed=(201,)),
    Op("api-revoke", "certificate-revoke", "post", _cert("revoke/"),
       lambda w: {"reason": 1}, allowed=(204,)),
    Op("api-metadata-change", "certificate-metadata", "patch", _cert("metadata/"),
       lambda w: {"team": "blue"}),
    # A PKCS#12 goes to its hand-over page (issue 17): a redirect, never the file itself.
    Op("console-renew", "console:certificate-renew", "post", _cert("renew/", api=False),
       lambda w: _RENEW_FORM, allowed=(302,)),
    Op("console-renew-reuse-key", "console:certificate-renew", "post",
       _cert("renew/", api=False), lambda w: {**_RENEW_FORM, "renew-reuse_key": "on"},
       allowed=(302,)),
    Op("console-revoke", "console:certificate-revoke", "post", _cert("revoke/", api=False),
       lambda w: {"revoke-reason": "1", "revoke-confirm": "on"}, allowed=(302,)),
    Op("console-metadata-change", "console:certificate-metadata-edit", "post",
       _cert("metadata/", api=False), lambda w: {"metadata-team": "blue"}, allowed=(302,)),
    # --- Deployment (issue 16) -------------------------------------------------------------
    Op("api-deploy", "certificate-deployments", "post", _cert("deployments/"),
       lambda w: {"stores": [str(w.store.pk)]}, allowed=(202,), prepare=_manageable),
    Op("api-undeploy", "certificate-removals", "post", _cert("removals/"),
       lambda w: {"all": True}, allowed=(202,), prepare=_manageable),
    Op("api-renew-and-replace", "certificate-renew-and-replace", "post",
       _cert("renew-and-replace/"), lambda w: {"template": "web"}, allowed=(202,),
       prepare=_manageable),
    Op("api-store-create-job", "store-create", "post", _store("create/"), allowed=(202,),
       prepare=_manageable),
    Op("console-deploy", "console:certificate-deploy", "post",
       _cert("add-to-stores/", api=False), lambda w: {"deploy-stores": [str(w.store.pk)]},
       allowed=(302,), prepare=_manageable),
    Op("console-undeploy", "console:certificate-undeploy", "post",
       _cert("remove-from-stores/", api=False), lambda w: {"undeploy-everywhere": "on"},
       allowed=(302,), prepare=_manageable),
    Op("console-renew-and-replace", "console:certificate-renew-replace", "post",
       _cert("renew-and-replace/", api=False), lambda w: {"renew_replace-template": "web"},
       allowed=(302,), prepare=_manageable),
    Op("console-store-create-job", "console:store-create-job", "post",
       _store("create-store/", api=False), allowed=(302,), prepare=_manageable),
    # --- Enrollment requests ---------------------------------------------------------------
    Op("api-approve", "enrollment-approve", "post", _enr("approve/"),
       lambda w: {"comment": "ok"}, holder="approver"),
    Op("api-deny", "enrollment-deny", "post", _enr("deny/"),
       lambda w: {"comment": "no"}, holder="approver"),
    # Only a request waiting for a CA can be refreshed: the holder passes the check of who
    # may act and is told so (409); the others never get that far.
    Op("api-refresh", "enrollment-refresh", "post", _enr("refresh/"),
       allowed=(409,), changes=False),
    Op("api-collect", "enrollment-collect", "post", _enr("collect/", "collectable"),
       lambda w: {"password": PASSWORD}),
    Op("console-approve", "console:enrollment-request-approve", "post",
       _enr("approve/", api=False), lambda w: {"approve-comment": "ok"},
       holder="approver", allowed=(302,)),
    Op("console-deny", "console:enrollment-request-deny", "post", _enr("deny/", api=False),
       lambda w: {"deny-comment": "no"}, holder="approver", allowed=(302,)),
    Op("console-collect", "console:enrollment-request-collect", "post",
       _enr("collect/", "collectable", api=False), lambda w: _COLLECT_FORM, allowed=(302,)),
    # The hand-over page's download: the requester's alone (it deletes the kept file).
    Op("console-pkcs12-download", "console:enrollment-request-pkcs12-download", "post",
       _enr("pkcs12/download/", "collectable", api=False), changes=False,
       prepare=_pkcs12_kept),
    # --- Stores ------------------------------------------------------------------------------
    Op("api-store-change", "store-detail", "patch", _store(""),
       lambda w: {"store_path": "/srv/other"}),
    Op("api-store-delete", "store-detail", "delete", _store(""), allowed=(204,)),
    Op("api-store-schedule", "store-schedule-inventory", "post", _store("schedule-inventory/"),
       lambda w: {"interval_minutes": 60}),
    Op("api-store-inventory-now", "store-inventory-now", "post", _store("inventory-now/"),
       allowed=(201,)),
    Op("console-store-edit", "console:store-edit", "post", _store("edit/", api=False),
       lambda w: {"store_path": "/srv/other", "properties": ""}, allowed=(302,)),
    Op("console-store-delete", "console:store-delete", "post", _store("delete/", api=False),
       allowed=(302,)),
    Op("console-store-schedule", "console:store-schedule", "post",
       _store("schedule/", api=False), lambda w: {"interval_minutes": "60"}, allowed=(302,)),
    Op("console-store-inventory-now", "console:store-inventory-now", "post",
       _store("inventory-now/", api=False), allowed=(302,)),
    # --- A store's jobs ---------------------------------------------------------------------
    Op("api-job-cancel", "job-cancel", "post", _job("cancel/"), prepare=_open_job),
    Op("api-job-retry", "job-retry", "post", _job("retry/"), allowed=(201,),
       prepare=_finished_job),
    Op("console-job-cancel", "console:job-cancel", "post", _job("cancel/", api=False),
       allowed=(302,), prepare=_open_job),
    Op("console-job-retry", "console:job-retry", "post", _job("retry/", api=False),
       allowed=(302,), prepare=_finished_job),
]  # fmt: skip

# Routes with an object in them that are not object-level actions, and why.
_READ = "a read: the model's view permission governs it"
_CONFIG = "configuration an administrator manages: the model permissions govern it"
NOT_OBJECT_LEVEL = {
    # /api/v1/
    "certificate-detail": _READ,
    "store-endpoints": _READ,
    "scheduled-task-run": "platform upkeep named by its task, not an object anyone owns: "
    "the run_scheduled_task permission (or a superuser) governs it",
    "certificate-download": _READ,
    "enrollment-detail": _READ,
    "job-detail": _READ,
    "ca-detail": _READ,
    "template-detail": _READ,
    "gateway-detail": _READ,
    "gateway-products": _READ,
    "gateway-sync-detail": _READ,
    "deployment-batch-detail": _READ,
    "deployment-detail": _READ,
    "handler-run-detail": _READ,
    "metadata-backfill-detail": _READ,
    "gateway-ping": _CONFIG,
    "gateway-sync": _CONFIG,
    "metadata-backfill-cancel": _CONFIG,
    "metadata-field-detail": _CONFIG,
    "store-type-detail": _CONFIG,
    "handler-registration-detail": _CONFIG,
    "orchestrator-detail": _CONFIG,
    "orchestrator-approve": _CONFIG,
    "orchestrator-disapprove": _CONFIG,
    "orchestrator-reset": _CONFIG,
    "orchestrator-revoke-certificate": _CONFIG,
    "registration-token-detail": _CONFIG,
    "registration-token-revoke": _CONFIG,
    "blueprint-detail": _CONFIG,
    "blueprint-apply": _CONFIG,
    # Discovery: orchestrators have no holders; finding and approving stores is adding
    # stores (inventory.add_certificatestore), and the approver owns the new store.
    "discovery-candidate-detail": _READ,
    "discovery-candidate-approve": "a new store: its approver becomes its owner",
    "orchestrator-discovery": "a search for new stores: the add-store permission governs it",
    # the console
    "console:orchestrator-approve": _CONFIG,
    "console:orchestrator-disapprove": _CONFIG,
    "console:orchestrator-reset": _CONFIG,
    "console:orchestrator-revoke-certificate": _CONFIG,
    "console:orchestrator-metadata": _CONFIG,
    "console:scheduled-task-run": "platform upkeep, not an object anyone owns: the "
    "run_scheduled_task permission (or a superuser) governs it",
    "console:registration-token-create": _CONFIG,
    "console:registration-token-revoke": _CONFIG,
    "console:api-token-create": "a person's own API token: made for themselves",
    "console:api-token-revoke": "a person's own API tokens only (anyone else's is a 404)",
    "console:store-create": "a new store: its creator becomes its owner",
    "console:metadata-backfill-start": _CONFIG,
    "console:metadata-field-add": _CONFIG,
    "console:metadata-generator-fields-create": _CONFIG,
    "console:metadata-field-edit": _CONFIG,
    "console:enrollment-template-create": _CONFIG,
    "console:enrollment-template-edit": _CONFIG,
    "console:metadata-backfill-cancel": _CONFIG,
    "console:blueprint-delete": _CONFIG,
    "console:orchestrator-blueprint-save": _CONFIG,
    "console:orchestrator-blueprint-apply": _CONFIG,
    "console:ca-create": _CONFIG,
    "console:ca-import": _CONFIG,
    "console:gateway-test": _CONFIG,
    "console:gateway-sync": _CONFIG,
    "console:enroll": "a new request: its requester becomes its owner",
    "console:orchestrator-discover": "a search for new stores: the add-store permission governs it",
    "console:discovery-approve-kind": "new stores: their approver becomes their owner",
    "console:discovery-candidate-approve": "a new store: its approver becomes its owner",
    "console:certificate-bulk": "many certificates: the services check each one (refusals listed)",
}

ROLES = ("holder", "peer", "stranger")


def _call(op: Op, world: World, user: Any) -> Any:
    client: Any = Client() if op.console else APIClient()
    client.force_login(user) if op.console else client.force_authenticate(user)
    data = op.body(world)
    if op.console:
        return getattr(client, op.method)(op.path(world), data)
    return getattr(client, op.method)(op.path(world), data, format="json")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
def test_only_a_holder_may_act(op: Op, role: str, world: World) -> None:
    if op.prepare:
        op.prepare(world)
    user = getattr(world, op.holder) if role == "holder" else getattr(world, role)
    before = snapshot()
    response = _call(op, world, user)
    after = snapshot()
    if role == "holder":
        assert response.status_code in op.allowed, response.content[:500]
        assert (after != before) == op.changes
        return
    assert after == before, f"{role} changed the database"
    if not op.console:
        assert response.status_code == 403, response.content[:500]
        body = response.json()
        assert body["error"]["code"] in ("not_yours", "permission_denied", "not_requester")
        assert "pkcs12" not in body
        return
    # The console: a 403 page, or the form again with the refusal on it.
    assert response.status_code in (403, 200), response.status_code
    if response.status_code == 200:
        assert response["Content-Type"].startswith("text/html")
        assert "may not act on" in response.content.decode() or (
            "may reuse it" in response.content.decode()
        )


# --- Every object-level route is in the table ---------------------------------------------


def _routes(
    patterns: list[Any], prefix: str = "", namespace: str = ""
) -> list[tuple[str, str, Any]]:
    """(full pattern, name with namespace, view) of every route."""
    found: list[tuple[str, str, Any]] = []
    for pattern in patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            found += _routes(pattern.url_patterns, text, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            found.append((text, namespace + pattern.name, pattern.callback))
    return found


def _has_object(pattern: str) -> bool:
    groups = set(re.findall(r"\(\?P<(\w+)>", pattern))
    groups |= set(re.findall(r"<(?:\w+:)?(\w+)>", pattern))
    return bool(groups - {"format"})


def _takes_post(view: Any) -> bool:
    # DRF views name their methods; plain views say so in their decorators.
    if hasattr(view, "cls"):
        return True
    source = inspect.getsource(inspect.unwrap(view))
    return "require_POST" in source or '"POST"' in source


TABLE = {op.url_name for op in OPERATIONS} | set(NOT_OBJECT_LEVEL)


def test_every_object_route_of_the_api_is_in_the_table() -> None:
    routes = _routes(get_resolver().url_patterns)
    api = {name for pattern, name, _ in routes if "api/v1/" in pattern and _has_object(pattern)}
    api = {name for name in api if ":" not in name}
    assert "certificate-renew" in api and "store-detail" in api  # the walk finds them
    missing = sorted(api - TABLE)
    assert not missing, f"object-level API routes with no entry in the matrix: {missing}"


def test_every_console_post_is_in_the_table() -> None:
    routes = _routes(get_resolver().url_patterns)
    console = {
        name
        for _, name, view in routes
        if name.startswith("console:") and not hasattr(view, "cls") and _takes_post(view)
    }
    assert "console:certificate-renew" in console and "console:store-edit" in console
    missing = sorted(console - TABLE)
    assert not missing, f"console POST URLs with no entry in the matrix: {missing}"


def test_the_table_names_only_real_routes() -> None:
    names = {name for _, name, _ in _routes(get_resolver().url_patterns)}
    unknown = sorted(TABLE - names)
    assert not unknown, f"the matrix names routes that do not exist: {unknown}"
