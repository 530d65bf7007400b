"""Blueprints: an orchestrator's stores saved under a name and applied to another one.

The services (save, apply, delete, the registration hook), the API under
/api/v1/blueprints/ and the console's pages and forms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from certyard.blueprints.models import Blueprint, BlueprintStore
from certyard.blueprints.services import (
    blueprint_apply,
    blueprint_apply_by_name,
    blueprint_delete,
    blueprint_save,
    placeholders_fill,
)
from certyard.errors import Conflict, ServiceError
from certyard.fleet.models import Orchestrator
from certyard.fleet.services.hooks import blueprint_apply_on_commit
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.workflows.models import HandlerRegistration
from orchestrators.protocol import JobType
from tests.certyard.conftest import ADMIN, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db

SECRET = "blueprint-store-secret-0815"
BLUEPRINTS = f"{ADMIN}blueprints/"


def _pem() -> CertificateStoreType:
    return CertificateStoreType.objects.get(short_name="PEM")


@pytest.fixture
def source(register_agent: Callable[..., RegisteredAgent]) -> Orchestrator:
    """An approved orchestrator named web-1 on web-1.example.test."""
    return register_agent("web-1").orchestrator


@pytest.fixture
def target(register_agent: Callable[..., RegisteredAgent]) -> Orchestrator:
    """An approved orchestrator named db-1 on db-1.example.test."""
    return register_agent("db-1").orchestrator


@pytest.fixture
def source_stores(source: Orchestrator) -> list[CertificateStore]:
    """Two PEM stores: one under a path naming the orchestrator, with a password, properties
    and a schedule; one at a path every machine has."""
    return [
        store_create(
            store_type=_pem(),
            store_path="/srv/web-1/certs",
            orchestrator=source,
            properties={"recursive": True},
            password=SECRET,
            inventory_interval_minutes=60,
        ),
        store_create(store_type=_pem(), store_path="/etc/ssl/certs", orchestrator=source),
    ]


@pytest.fixture
def blueprint(
    source: Orchestrator, source_stores: list[CertificateStore], superuser: Any
) -> Blueprint:
    return blueprint_save(
        orchestrator=source, name="web servers", description="The web tier", actor=superuser
    )


def _jks(*orchestrators: Orchestrator) -> CertificateStoreType:
    """A second store type (built in), offered by the given orchestrators only."""
    jks = CertificateStoreType.objects.get(short_name="JKS")
    for orchestrator in orchestrators:
        orchestrator.capabilities = [*orchestrator.capabilities, "JKS.Inventory"]
        orchestrator.save(update_fields=["capabilities"])
    return jks


# --- Saving ------------------------------------------------------------------------------


def test_saving_turns_the_orchestrators_machine_and_name_into_placeholders(
    blueprint: Blueprint, superuser: Any
) -> None:
    templates = {t.store_path: t for t in blueprint.stores.all()}

    assert set(templates) == {"/srv/{orchestrator}/certs", "/etc/ssl/certs"}
    named = templates["/srv/{orchestrator}/certs"]
    assert named.client_machine == "{client_machine}"
    assert named.properties["recursive"] is True
    assert named.password == SECRET
    assert named.inventory_interval_minutes == 60
    assert templates["/etc/ssl/certs"].inventory_interval_minutes is None
    assert templates["/etc/ssl/certs"].password == ""
    assert blueprint.source_orchestrator == "web-1"
    assert blueprint.created_by == superuser
    assert blueprint.description == "The web tier"


def test_the_machine_wins_over_the_name_it_starts_with_and_longer_words_stay(
    source: Orchestrator,
) -> None:
    for path in ("/data/web-1.example.test/tls", "/srv/web-10/certs", "/srv/web-1"):
        store_create(store_type=_pem(), store_path=path, orchestrator=source)

    saved = blueprint_save(orchestrator=source, name="paths", actor=None)

    assert set(saved.stores.values_list("store_path", flat=True)) == {
        "/data/{client_machine}/tls",
        "/srv/web-10/certs",  # web-10 is another name, not web-1
        "/srv/{orchestrator}",
    }


def test_a_taken_name_whatever_its_case_is_a_conflict(
    blueprint: Blueprint, source: Orchestrator
) -> None:
    with pytest.raises(Conflict, match="already exists"):
        blueprint_save(orchestrator=source, name="  WEB Servers ", actor=None)
    assert Blueprint.objects.count() == 1


def test_an_orchestrator_without_stores_cannot_be_saved(target: Orchestrator) -> None:
    with pytest.raises(ServiceError) as refused:
        blueprint_save(orchestrator=target, name="empty", actor=None)
    assert refused.value.code == "no_stores"
    assert not Blueprint.objects.exists()


def test_filling_in_touches_only_the_two_placeholders(target: Orchestrator) -> None:
    filled = placeholders_fill("/srv/{orchestrator}/{other}/{client_machine}", orchestrator=target)
    assert filled == "/srv/db-1/{other}/db-1.example.test"


# --- Applying ----------------------------------------------------------------------------


def test_applying_creates_the_stores_with_their_schedules_and_an_inventory_job_each(
    blueprint: Blueprint, target: Orchestrator, superuser: Any
) -> None:
    application = blueprint_apply(blueprint=blueprint, orchestrator=target, actor=superuser)

    stores = {s.store_path: s for s in CertificateStore.objects.filter(orchestrator=target)}
    assert set(stores) == {"/srv/db-1/certs", "/etc/ssl/certs"}
    named = stores["/srv/db-1/certs"]
    assert named.client_machine == "db-1.example.test"
    assert named.password == SECRET
    assert named.properties["recursive"] is True
    assert "file_patterns" in named.properties  # the type's default, filled in by inventory
    assert named.inventory_interval_minutes == 60
    assert named.inventory_next_run is not None
    assert stores["/etc/ssl/certs"].inventory_interval_minutes is None
    jobs = Job.objects.filter(orchestrator=target, type=JobType.INVENTORY)
    assert {job.store_id for job in jobs} == {s.pk for s in stores.values()}
    assert {(job.source, job.requested_by_id) for job in jobs} == {("admin", superuser.pk)}
    assert {s.pk for s in application.created} == {s.pk for s in stores.values()}
    assert application.skipped == [] and application.refused == []
    assert application.jobs_queued == 2
    assert application.summary == (
        "Blueprint web servers on db-1: 2 stores created (2 inventory jobs queued)."
    )


def test_applying_twice_skips_the_stores_already_there(
    blueprint: Blueprint, target: Orchestrator
) -> None:
    blueprint_apply(blueprint=blueprint, orchestrator=target, actor=None)

    again = blueprint_apply(blueprint=blueprint, orchestrator=target, actor=None)

    assert again.created == [] and again.refused == []
    assert len(again.skipped) == 2
    assert CertificateStore.objects.filter(orchestrator=target).count() == 2
    assert Job.objects.filter(orchestrator=target).count() == 2
    assert "0 stores created, 2 stores already present" in again.summary


def test_applying_to_the_source_itself_changes_nothing(
    blueprint: Blueprint, source: Orchestrator
) -> None:
    application = blueprint_apply(blueprint=blueprint, orchestrator=source, actor=None)
    assert len(application.skipped) == 2 and not application.created


def test_a_store_type_the_orchestrator_does_not_offer_is_refused_and_the_rest_created(
    source: Orchestrator, source_stores: list[CertificateStore], target: Orchestrator
) -> None:
    jks = _jks(source)
    store_create(
        store_type=jks, store_path="/opt/app/keystore.jks", orchestrator=source, password="changeit"
    )
    saved = blueprint_save(orchestrator=source, name="with jks", actor=None)

    application = blueprint_apply(blueprint=saved, orchestrator=target, actor=None)

    assert len(application.created) == 2
    (refusal,) = application.refused
    assert refusal.code == "capability_missing"
    assert refusal.store_type == "JKS"
    assert refusal.store_path == "/opt/app/keystore.jks"
    assert "does not offer JKS.Inventory" in refusal.reason
    assert "1 store refused (JKS db-1.example.test:/opt/app/keystore.jks: " in (application.summary)
    assert not CertificateStore.objects.filter(orchestrator=target, store_type=jks).exists()


def test_a_store_another_orchestrator_holds_is_refused(
    blueprint: Blueprint, source: Orchestrator, target: Orchestrator
) -> None:
    # Another agent on the same machine as the source: the same paths are the source's.
    Orchestrator.objects.filter(pk=target.pk).update(client_machine=source.client_machine)
    target.refresh_from_db()

    application = blueprint_apply(blueprint=blueprint, orchestrator=target, actor=None)

    assert [s.store_path for s in application.created] == ["/srv/db-1/certs"]
    (refusal,) = application.refused
    assert refusal.code == "duplicate"
    assert refusal.reason == "orchestrator web-1 already manages this store"


def test_applying_to_an_orchestrator_not_approved_creates_nothing(
    blueprint: Blueprint, register_agent: Callable[..., RegisteredAgent]
) -> None:
    waiting = register_agent("waiting-1", approved=False).orchestrator

    with pytest.raises(ServiceError) as refused:
        blueprint_apply(blueprint=blueprint, orchestrator=waiting, actor=None)

    assert refused.value.code == "not_approved"
    assert refused.value.http_status == 409
    assert not CertificateStore.objects.filter(orchestrator=waiting).exists()


def test_deleting_a_blueprint_keeps_the_stores_it_made(
    blueprint: Blueprint, target: Orchestrator
) -> None:
    blueprint_apply(blueprint=blueprint, orchestrator=target, actor=None)

    blueprint_delete(blueprint=blueprint)

    assert not Blueprint.objects.exists()
    assert not BlueprintStore.objects.exists()
    assert CertificateStore.objects.filter(orchestrator=target).count() == 2


# --- The registration hook ---------------------------------------------------------------


def test_the_blueprints_app_registers_its_applier_with_fleet(
    blueprint: Blueprint, target: Orchestrator, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        blueprint_apply_on_commit(target, "Web Servers")

    stores = CertificateStore.objects.filter(orchestrator=target)
    assert stores.count() == 2
    assert set(Job.objects.filter(store__in=stores).values_list("source", flat=True)) == {
        Job.Source.HANDLER
    }
    target.refresh_from_db()
    assert target.last_error == ""


def test_an_unknown_blueprint_name_is_logged_and_kept_as_the_last_error(
    target: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="certyard.blueprints"):
        blueprint_apply_by_name(orchestrator=target, blueprint_name="no such thing")

    target.refresh_from_db()
    assert "no such thing" in target.last_error
    assert "no such blueprint" in target.last_error
    assert any(r.levelno == logging.WARNING for r in caplog.records)


def test_the_jobs_of_a_blueprint_a_handler_named_record_that_handler(
    blueprint: Blueprint, target: Orchestrator
) -> None:
    registration = HandlerRegistration.objects.create(
        name="approve web", handler="certyard.registration_rules", parameters={}
    )

    blueprint_apply_by_name(
        orchestrator=target, blueprint_name="web servers", decided_by="approve web"
    )

    jobs = Job.objects.filter(store__orchestrator=target)
    assert jobs.count() == 2
    for job in jobs:
        assert job.source == Job.Source.HANDLER
        assert job.source_detail == "approve web: blueprint web servers"
        assert job.source_registration_id == registration.pk


def test_a_refused_application_by_name_is_kept_as_the_last_error(
    blueprint: Blueprint, register_agent: Callable[..., RegisteredAgent]
) -> None:
    waiting = register_agent("waiting-2", approved=False).orchestrator

    blueprint_apply_by_name(orchestrator=waiting, blueprint_name="web servers")

    waiting.refresh_from_db()
    assert waiting.last_error.startswith("Blueprint web servers was not applied:")
    assert "not approved" in waiting.last_error


def test_an_unexpected_failure_by_name_is_recorded_not_raised(
    blueprint: Blueprint, target: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("certyard.blueprints.services.blueprint_apply", broken)

    blueprint_apply_by_name(orchestrator=target, blueprint_name="web servers")

    target.refresh_from_db()
    assert "failed" in target.last_error


# --- API ---------------------------------------------------------------------------------


def test_api_lists_blueprints_paginated_with_their_store_counts(
    blueprint: Blueprint, viewer_api: APIClient
) -> None:
    response = viewer_api.get(BLUEPRINTS)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert item["name"] == "web servers"
    assert item["store_count"] == 2
    assert item["source_orchestrator"] == "web-1"
    assert item["created_by"] == "root"


def test_api_needs_credentials_and_the_view_permission(
    blueprint: Blueprint, api: APIClient, nobody_api: APIClient
) -> None:
    assert api.get(BLUEPRINTS).status_code == 401
    assert nobody_api.get(BLUEPRINTS).status_code == 403
    assert nobody_api.get(f"{BLUEPRINTS}{blueprint.pk}/").status_code == 403


def test_api_saves_from_an_orchestrator_and_never_returns_a_password(
    admin_api: APIClient, source: Orchestrator, source_stores: list[CertificateStore]
) -> None:
    response = admin_api.post(
        BLUEPRINTS,
        {"orchestrator": str(source.pk), "name": "from api", "description": "d"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert SECRET not in response.content.decode()
    body = response.json()
    assert body["name"] == "from api"
    assert body["store_count"] == 2
    stores = {s["store_path"]: s for s in body["stores"]}
    assert stores["/srv/{orchestrator}/certs"]["has_password"] is True
    assert "password" not in stores["/srv/{orchestrator}/certs"]
    detail = admin_api.get(f"{BLUEPRINTS}{body['id']}/")
    assert detail.status_code == 200
    assert SECRET not in detail.content.decode()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x"}, 400, "invalid"),
        ({"orchestrator": "not-a-uuid", "name": "x"}, 400, "invalid"),
        ({"orchestrator": "00000000-0000-0000-0000-000000000000", "name": "x"}, 400, "invalid"),
        ({"orchestrator": "SOURCE", "name": "   "}, 400, "invalid"),
        ({"orchestrator": "SOURCE", "name": "x" * 201}, 400, "invalid"),
        ({"orchestrator": "SOURCE", "name": ["x"]}, 400, "invalid"),
        ({"orchestrator": "SOURCE", "name": "WEB SERVERS"}, 409, "conflict"),
    ],
)
def test_api_refuses_bad_or_conflicting_input_with_a_clear_error(
    admin_api: APIClient,
    blueprint: Blueprint,
    source: Orchestrator,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    sent = {key: str(source.pk) if value == "SOURCE" else value for key, value in body.items()}

    response = admin_api.post(BLUEPRINTS, sent, format="json")

    assert response.status_code == status, response.content
    assert error_of(response)["code"] == code
    assert Blueprint.objects.count() == 1


def test_api_refuses_to_save_an_orchestrator_without_stores(
    admin_api: APIClient, target: Orchestrator
) -> None:
    response = admin_api.post(
        BLUEPRINTS, {"orchestrator": str(target.pk), "name": "empty"}, format="json"
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "no_stores"


def test_api_applies_and_answers_what_was_created_skipped_and_refused(
    admin_api: APIClient, blueprint: Blueprint, target: Orchestrator
) -> None:
    url = f"{BLUEPRINTS}{blueprint.pk}/apply/"

    first = admin_api.post(url, {"orchestrator": str(target.pk)}, format="json")
    second = admin_api.post(url, {"orchestrator": str(target.pk)}, format="json")

    assert first.status_code == 200, first.content
    body = first.json()
    assert body["blueprint"] == blueprint.pk
    assert body["orchestrator"] == str(target.pk)
    assert {s["store_path"] for s in body["created"]} == {"/srv/db-1/certs", "/etc/ssl/certs"}
    assert body["skipped"] == [] and body["refused"] == []
    assert body["jobs_queued"] == 2
    assert body["message"].startswith("Blueprint web servers on db-1: 2 stores created")
    assert SECRET not in first.content.decode()
    assert second.status_code == 200
    assert len(second.json()["skipped"]) == 2
    assert Job.objects.filter(orchestrator=target, source=Job.Source.API).count() == 2


def test_api_apply_to_an_orchestrator_not_approved_is_a_conflict(
    admin_api: APIClient, blueprint: Blueprint, register_agent: Callable[..., RegisteredAgent]
) -> None:
    waiting = register_agent("waiting-3", approved=False).orchestrator

    response = admin_api.post(
        f"{BLUEPRINTS}{blueprint.pk}/apply/", {"orchestrator": str(waiting.pk)}, format="json"
    )

    assert response.status_code == 409
    assert error_of(response)["code"] == "not_approved"


def test_api_changes_need_their_permissions(
    viewer_api: APIClient, blueprint: Blueprint, source: Orchestrator, target: Orchestrator
) -> None:
    saved = viewer_api.post(BLUEPRINTS, {"orchestrator": str(source.pk), "name": "v"})
    applied = viewer_api.post(
        f"{BLUEPRINTS}{blueprint.pk}/apply/", {"orchestrator": str(target.pk)}, format="json"
    )
    deleted = viewer_api.delete(f"{BLUEPRINTS}{blueprint.pk}/")

    assert (saved.status_code, applied.status_code, deleted.status_code) == (403, 403, 403)
    assert Blueprint.objects.count() == 1
    assert not CertificateStore.objects.filter(orchestrator=target).exists()


def test_api_deletes_a_blueprint_and_answers_404_after(
    admin_api: APIClient, blueprint: Blueprint
) -> None:
    url = f"{BLUEPRINTS}{blueprint.pk}/"
    assert admin_api.delete(url).status_code == 204
    missing = admin_api.get(url)
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"
    assert admin_api.post(f"{url}apply/", {}, format="json").status_code == 404


# --- Console -----------------------------------------------------------------------------


@pytest.fixture
def web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def viewer_web(viewer: Any) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_console_list_has_an_empty_state_then_a_row_per_blueprint(
    web: Client, source: Orchestrator, source_stores: list[CertificateStore]
) -> None:
    empty = web.get(reverse("console:blueprint-list")).content.decode()
    assert 'data-testid="no-blueprints"' in empty
    assert 'aria-current="page">Blueprints</a>' in empty

    blueprint_save(orchestrator=source, name="tier one", actor=None)
    page = web.get(reverse("console:blueprint-list")).content.decode()

    assert 'data-testid="blueprint-row" data-name="tier one"' in page
    assert reverse("console:blueprint-detail", args=[Blueprint.objects.get().pk]) in page


def test_console_detail_shows_the_templates_and_never_the_password(
    web: Client, blueprint: Blueprint
) -> None:
    response = web.get(reverse("console:blueprint-detail", args=[blueprint.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "/srv/{orchestrator}/certs" in page
    assert "every 60 min" in page
    assert "never shown" in page
    assert SECRET not in page


def test_console_pages_need_a_login_and_the_view_permission(
    client: Client, django_user_model: Any, blueprint: Blueprint
) -> None:
    urls = [
        reverse("console:blueprint-list"),
        reverse("console:blueprint-detail", args=[blueprint.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 302
    client.force_login(django_user_model.objects.create_user("plain"))
    for url in urls:
        assert client.get(url).status_code == 403


def test_console_a_bad_page_number_is_a_message_not_an_error(web: Client) -> None:
    response = web.get(reverse("console:blueprint-list"), {"page": "zero"})
    assert response.status_code == 200
    assert 'data-testid="page-errors"' in response.content.decode()


def test_console_delete_asks_then_deletes(web: Client, blueprint: Blueprint) -> None:
    url = reverse("console:blueprint-delete", args=[blueprint.pk])

    confirm = web.get(url)
    done = web.post(url, follow=True)

    assert 'data-action="confirm-delete"' in confirm.content.decode()
    assert done.redirect_chain == [(reverse("console:blueprint-list"), 302)]
    assert "Blueprint web servers deleted" in done.content.decode()
    assert not Blueprint.objects.exists()


def test_console_viewer_sees_no_action_and_may_not_delete(
    viewer_web: Client, blueprint: Blueprint, source: Orchestrator
) -> None:
    listing = viewer_web.get(reverse("console:blueprint-list")).content.decode()
    orchestrator_page = viewer_web.get(
        reverse("console:orchestrator-detail", args=[source.pk])
    ).content.decode()

    assert 'data-action="delete"' not in listing
    assert 'data-testid="orchestrator-blueprints"' not in orchestrator_page
    assert (
        viewer_web.post(reverse("console:blueprint-delete", args=[blueprint.pk])).status_code == 403
    )
    assert Blueprint.objects.exists()


def test_console_orchestrator_page_offers_saving_and_applying(
    web: Client, blueprint: Blueprint, target: Orchestrator
) -> None:
    page = web.get(reverse("console:orchestrator-detail", args=[target.pk])).content.decode()

    assert 'data-testid="save-blueprint-form"' not in page  # db-1 has no store yet
    assert 'data-testid="apply-blueprint-form"' in page
    assert f'<option value="{blueprint.pk}">web servers</option>' in page
    assert 'name="csrfmiddlewaretoken"' in page


def test_console_saves_an_orchestrator_as_a_blueprint(
    web: Client, source: Orchestrator, source_stores: list[CertificateStore]
) -> None:
    page = web.get(reverse("console:orchestrator-detail", args=[source.pk])).content.decode()
    assert 'data-testid="save-blueprint-form"' in page

    response = web.post(
        reverse("console:orchestrator-blueprint-save", args=[source.pk]),
        {"name": "saved here", "description": "from the console"},
        follow=True,
    )

    saved = Blueprint.objects.get()
    assert response.redirect_chain == [(reverse("console:blueprint-detail", args=[saved.pk]), 302)]
    assert "Blueprint saved here saved from web-1, with 2 stores." in _messages(response)
    assert saved.description == "from the console"


def test_console_save_refusals_are_form_errors(
    web: Client, blueprint: Blueprint, source: Orchestrator, target: Orchestrator
) -> None:
    taken = web.post(
        reverse("console:orchestrator-blueprint-save", args=[source.pk]), {"name": "Web Servers"}
    )
    empty = web.post(
        reverse("console:orchestrator-blueprint-save", args=[target.pk]), {"name": "nothing"}
    )
    blank = web.post(reverse("console:orchestrator-blueprint-save", args=[source.pk]), {"name": ""})

    assert taken.status_code == 200
    assert "already exists" in taken.content.decode()
    assert "has no store" in empty.content.decode()
    assert "This field is required." in blank.content.decode()
    assert Blueprint.objects.count() == 1


def test_console_applies_a_blueprint_and_says_what_it_did(
    web: Client, blueprint: Blueprint, target: Orchestrator
) -> None:
    url = reverse("console:orchestrator-blueprint-apply", args=[target.pk])

    first = web.post(url, {"blueprint": blueprint.pk}, follow=True)
    second = web.post(url, {"blueprint": blueprint.pk}, follow=True)

    detail = reverse("console:orchestrator-detail", args=[target.pk])
    assert first.redirect_chain == [(detail, 302)]
    assert _messages(first) == [
        "Blueprint web servers on db-1: 2 stores created (2 inventory jobs queued)."
    ]
    assert "2 stores already present" in _messages(second)[0]
    assert CertificateStore.objects.filter(orchestrator=target).count() == 2


def test_console_apply_refusals_are_messages(
    web: Client, blueprint: Blueprint, register_agent: Callable[..., RegisteredAgent]
) -> None:
    waiting = register_agent("waiting-4", approved=False).orchestrator
    url = reverse("console:orchestrator-blueprint-apply", args=[waiting.pk])

    not_approved = web.post(url, {"blueprint": blueprint.pk}, follow=True)
    unknown = web.post(url, {"blueprint": "999999"}, follow=True)
    by_get = web.get(url)

    assert "not approved" in _messages(not_approved)[0]
    assert "does not exist" in _messages(unknown)[0]
    assert by_get.status_code == 405
    page = web.get(reverse("console:orchestrator-detail", args=[waiting.pk])).content.decode()
    assert "Approve waiting-4 before applying a blueprint" in page


def test_console_actions_need_csrf(
    superuser: Any, blueprint: Blueprint, target: Orchestrator
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)

    applied = client.post(
        reverse("console:orchestrator-blueprint-apply", args=[target.pk]),
        {"blueprint": blueprint.pk},
    )
    deleted = client.post(reverse("console:blueprint-delete", args=[blueprint.pk]))

    assert (applied.status_code, deleted.status_code) == (403, 403)
    assert Blueprint.objects.exists()
    assert not CertificateStore.objects.filter(orchestrator=target).exists()


# --- Django admin ------------------------------------------------------------------------


def test_admin_shows_a_blueprint_with_its_stores_and_never_the_password(
    web: Client, blueprint: Blueprint
) -> None:
    listing = web.get(reverse("admin:blueprints_blueprint_changelist"))
    change = web.get(reverse("admin:blueprints_blueprint_change", args=[blueprint.pk]))

    assert listing.status_code == 200 and change.status_code == 200
    page = change.content.decode()
    assert "/srv/{orchestrator}/certs" in page
    assert SECRET not in page and SECRET not in listing.content.decode()
    assert 'name="stores-0-password"' not in page
