"""Store paths the agent would refuse are refused by the platform first, with the agent's
own message (``orchestrators.roots.store_path_problem``), as a ``store_path`` field error."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from certyard.errors import ServiceError
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create, store_path_refusal, store_update
from certyard.jobs.models import Job
from orchestrators.roots import store_path_problem
from tests.certyard.conftest import ADMIN, error_of
from tests.conftest import RegisteredAgent

pytestmark = pytest.mark.django_db


def _roots(orchestrator: Orchestrator, roots: list[str] | None) -> Orchestrator:
    Orchestrator.objects.filter(pk=orchestrator.pk).update(store_roots=roots)
    orchestrator.refresh_from_db()
    return orchestrator


def _pem() -> CertificateStoreType:
    return CertificateStoreType.objects.get(short_name="PEM")


def _create(admin_api: APIClient, orchestrator: Orchestrator, path: str, **extra: object):
    body = {"store_type": "PEM", "store_path": path, "orchestrator": str(orchestrator.pk)}
    body.update(extra)
    return admin_api.post(f"{ADMIN}stores/", body, format="json")


@pytest.mark.parametrize(
    "path", ["relative/path", "../../../../etc/ssl/certs", "/etc/ssl/../../root", "certs"]
)
def test_the_api_refuses_a_path_no_agent_reads_even_with_unknown_roots(
    admin_api: APIClient, agent: RegisteredAgent, path: str
) -> None:
    assert agent.orchestrator.store_roots is None  # an agent that never reported them

    response = _create(admin_api, agent.orchestrator, path, inventory_interval_minutes=5)

    assert response.status_code == 400, response.content
    error = error_of(response)
    expected = store_path_problem(path, None)
    assert expected and error["message"] == expected
    assert error["fields"]["store_path"] == [expected]
    assert not CertificateStore.objects.exists() and not Job.objects.exists()


def test_the_api_refuses_a_path_outside_the_reported_roots_with_the_agents_message(
    admin_api: APIClient, agent: RegisteredAgent
) -> None:
    orchestrator = _roots(agent.orchestrator, ["/etc/ssl", "/srv/tls"])

    response = _create(admin_api, orchestrator, "/etc/pki/tls", inventory_interval_minutes=5)

    assert response.status_code == 400
    error = error_of(response)
    # What the agent itself says (it resolves links too; the words are the same).
    assert error["fields"]["store_path"] == [
        store_path_problem("/etc/pki/tls", ["/etc/ssl", "/srv/tls"], resolve=False)
    ]
    assert (
        "outside the folders this orchestrator may read (/etc/ssl, /srv/tls)" in (error["message"])
    )
    assert "certyard-orchestrator roots --add" in error["message"]
    assert not CertificateStore.objects.exists() and not Job.objects.exists()


def test_a_path_inside_the_roots_is_accepted(admin_api: APIClient, agent: RegisteredAgent) -> None:
    orchestrator = _roots(agent.orchestrator, ["/etc/ssl"])

    response = _create(admin_api, orchestrator, "/etc/ssl/certs")

    assert response.status_code == 201, response.content
    assert CertificateStore.objects.get().store_path == "/etc/ssl/certs"


def test_a_prefix_of_a_root_name_is_not_inside_it(agent: RegisteredAgent) -> None:
    orchestrator = _roots(agent.orchestrator, ["/etc/ssl"])
    problem = store_path_refusal(
        store_type=_pem(), orchestrator=orchestrator, store_path="/etc/ssl-other/x"
    )
    assert problem and "outside the folders" in problem


def test_no_roots_configured_refuses_every_path(agent: RegisteredAgent) -> None:
    orchestrator = _roots(agent.orchestrator, [])
    with pytest.raises(ServiceError) as refused:
        store_create(store_type=_pem(), store_path="/etc/ssl", orchestrator=orchestrator)
    assert refused.value.fields == {"store_path": [refused.value.message]}
    assert "none configured" in refused.value.message


@pytest.mark.parametrize("short_name", ["PKCS12", "JKS", "JCEKS"])
def test_a_single_file_store_type_is_not_given_a_folder(
    agent: RegisteredAgent, short_name: str
) -> None:
    store_type = CertificateStoreType.objects.get(short_name=short_name)
    problem = store_path_refusal(
        store_type=store_type, orchestrator=agent.orchestrator, store_path="/etc/app/"
    )
    assert problem and f"a {short_name} store is one file" in problem
    assert (
        store_path_refusal(
            store_type=store_type, orchestrator=agent.orchestrator, store_path="/etc/app/ks.p12"
        )
        is None
    )


def test_a_pem_folder_with_a_trailing_slash_is_fine(agent: RegisteredAgent) -> None:
    assert (
        store_path_refusal(store_type=_pem(), orchestrator=agent.orchestrator, store_path="/a/")
        is None
    )


def test_patch_to_a_path_outside_the_roots_is_refused_and_changes_nothing(
    admin_api: APIClient, agent: RegisteredAgent
) -> None:
    store = store_create(
        store_type=_pem(), store_path="/etc/ssl/certs", orchestrator=agent.orchestrator
    )
    _roots(agent.orchestrator, ["/etc/ssl"])

    response = admin_api.patch(
        f"{ADMIN}stores/{store.pk}/", {"store_path": "/root/keys"}, format="json"
    )

    assert response.status_code == 400
    assert "store_path" in error_of(response)["fields"]
    store.refresh_from_db()
    assert store.store_path == "/etc/ssl/certs"


def test_a_store_whose_roots_changed_stays_editable_while_its_path_is_unchanged(
    agent: RegisteredAgent,
) -> None:
    store = store_create(
        store_type=_pem(), store_path="/etc/ssl/certs", orchestrator=agent.orchestrator
    )
    _roots(agent.orchestrator, ["/srv"])
    store.orchestrator.refresh_from_db()

    store_update(store=store, store_path="/etc/ssl/certs", inventory_interval_minutes=30)

    store.refresh_from_db()
    assert store.inventory_interval_minutes == 30
    with pytest.raises(ServiceError) as refused:
        store_update(store=store, store_path="")
    assert refused.value.fields["store_path"] == ["a store path is required"]
