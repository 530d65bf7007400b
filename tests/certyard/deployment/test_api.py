"""The deployment admin API: 202 batches, filters, and 4xx JSON on bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from certyard.enrollment import services as enrollment
from certyard.enrollment.models import Template
from certyard.inventory.models import CertificateStore
from tests.certs import csr_for
from tests.certyard.conftest import ADMIN, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(web: Template, superuser: Any) -> Any:
    return enrollment.enrollment_submit_pfx(
        template_name="web", common_name="app.example.test", password="password1", actor=superuser
    ).request.certificate


def test_deploy_by_ids_and_by_filter_then_read_the_batch(
    admin_api: APIClient,
    issued: Any,
    manager: RegisteredAgent,
    make_store: Callable[..., CertificateStore],
) -> None:
    one = make_store("PEM", "/etc/ssl/one")
    two = make_store("PEM", "/srv/ssl/two")
    url = f"{ADMIN}certificates/{issued.pk}/deployments/"
    answer = admin_api.post(url, {"stores": [str(one.pk)], "alias": "app"}, format="json")
    assert answer.status_code == 202, answer.json()
    body = answer.json()
    assert body["kind"] == "add" and body["progress"] == {"pending": 1}
    (deployment,) = body["deployments"]
    assert deployment["store"] == str(one.pk) and deployment["key_origin"] == "platform"
    assert "PRIVATE KEY" not in answer.content.decode()

    answer = admin_api.post(url, {"store_filter": {"path_contains": "/srv/"}}, format="json")
    assert answer.status_code == 202, answer.json()
    assert [d["store"] for d in answer.json()["deployments"]] == [str(two.pk)]

    batch = admin_api.get(f"{ADMIN}deployment-batches/{body['id']}/")
    assert batch.status_code == 200 and batch.json()["id"] == body["id"]
    listed = admin_api.get(f"{ADMIN}deployments/", {"store": str(two.pk), "state": "pending"})
    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert admin_api.get(f"{ADMIN}deployments/", {"certificate": issued.pk}).json()["count"] == 2


def test_bad_input_is_a_4xx_json_error(
    admin_api: APIClient,
    issued: Any,
    manager: RegisteredAgent,
    make_store: Callable[..., CertificateStore],
) -> None:
    store = make_store("PEM")
    url = f"{ADMIN}certificates/{issued.pk}/deployments/"
    both = {"stores": [str(store.pk)], "store_filter": {"store_type": "PEM"}}
    for body, status in [
        ({}, 400),
        (both, 400),
        ({"store_filter": {"colour": "red"}}, 400),
        ({"store_filter": {"path_contains": "/nowhere/"}}, 400),
        ({"stores": ["not-a-uuid"]}, 400),
        ({"stores": ["00000000-0000-0000-0000-000000000000"]}, 404),
        ({"stores": [str(store.pk)], "entry_parameters": {"x": 1}}, 400),
        ({"stores": [str(store.pk)], "alias": "a\x01b"}, 400),
    ]:
        answer = admin_api.post(url, body, format="json")
        assert answer.status_code == status, (body, answer.content)
        assert error_of(answer)["message"]
    assert (
        admin_api.post(f"{ADMIN}certificates/999999/deployments/", {}, format="json").status_code
        == 404
    )
    for params in ({"state": "nope"}, {"certificate": "x"}, {"store": "x"}):
        answer = admin_api.get(f"{ADMIN}deployments/", params)
        assert answer.status_code == 400 and error_of(answer)["message"]
    answer = admin_api.post(
        f"{ADMIN}certificates/{issued.pk}/renew-and-replace/", {"template": "web"}, format="json"
    )
    assert answer.status_code == 409 and "no location" in error_of(answer)["message"]
    answer = admin_api.post(
        f"{ADMIN}certificates/{issued.pk}/removals/", {"stores": [], "all": False}, format="json"
    )
    assert answer.status_code == 400


def test_removal_and_store_create(
    admin_api: APIClient,
    issued: Any,
    manager: RegisteredAgent,
    make_store: Callable[..., CertificateStore],
) -> None:
    store = make_store("PEM")
    answer = admin_api.post(
        f"{ADMIN}certificates/{issued.pk}/removals/", {"stores": [str(store.pk)]}, format="json"
    )
    assert answer.status_code == 202, answer.json()
    (removal,) = answer.json()["deployments"]
    assert removal["action"] == "remove" and removal["alias"] == ""
    answer = admin_api.post(f"{ADMIN}stores/{store.pk}/create/")
    assert answer.status_code == 202 and answer.json()["state"] == "pending"


def test_a_person_without_the_permission_is_refused(
    api: APIClient, django_user_model: Any, issued: Any, make_store: Callable[..., Any]
) -> None:
    user = django_user_model.objects.create_user("nobody", password="pw")
    api.force_authenticate(user)
    store = make_store("PEM")
    answer = api.post(
        f"{ADMIN}certificates/{issued.pk}/deployments/", {"stores": [str(store.pk)]}, format="json"
    )
    assert answer.status_code == 403
    assert api.get(f"{ADMIN}deployments/").status_code == 403


def test_enrollment_api_takes_target_stores(
    admin_api: APIClient,
    web: Template,
    manager: RegisteredAgent,
    make_store: Callable[..., CertificateStore],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from certyard.deployment.models import DeploymentBatch

    store = make_store("PEM")
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_api.post(
            f"{ADMIN}enrollments/",
            {
                "template": "web",
                "csr": csr_for("www.example.test"),
                "target_stores": [str(store.pk)],
            },
            format="json",
        )
    assert answer.status_code == 201, answer.json()
    batch = DeploymentBatch.objects.get(kind="enrollment")
    assert batch.deployments.get().store == store
    answer = admin_api.post(
        f"{ADMIN}enrollments/",
        {"template": "web", "csr": csr_for("www.example.test"), "target_stores": ["x"]},
        format="json",
    )
    assert answer.status_code == 400 and error_of(answer)["message"]
