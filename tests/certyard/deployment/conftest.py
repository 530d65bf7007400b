"""Fixtures of the deployment tests: a CA and template, an agent that manages stores,
store types with each key and alias policy, and people."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from certyard.enrollment.models import Template
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore, CertificateStoreType
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, KeyAlgorithm
from tests.conftest import RegisteredAgent

TYPES = ("PEM", "KEYREQ", "NOKEY", "JAVA", "DEVICE")
CAPABILITIES = [
    f"{t}.{op}" for t in TYPES for op in ("Inventory", "Add", "Remove", "Create", "Reenrollment")
]


@pytest.fixture
def ca(db: None) -> CertificateAuthority:
    root = pki_services.ca_create(name="Root", key_algorithm=KeyAlgorithm.EC_P384, path_length=1)
    return pki_services.ca_create(name="Issuing", key_algorithm=KeyAlgorithm.EC_P256, parent=root)


@pytest.fixture
def web(ca: CertificateAuthority) -> Template:
    return Template.objects.create(
        name="web", ca=ca, allowed_domains=["example.test"], validity_days=30, archive_keys=True
    )


@pytest.fixture
def manager(register_agent: Callable[..., RegisteredAgent]) -> RegisteredAgent:
    """An approved agent advertising every operation on the test store types."""
    agent = register_agent("manager")
    Orchestrator.objects.filter(pk=agent.orchestrator.pk).update(capabilities=CAPABILITIES)
    agent.orchestrator.refresh_from_db()
    return agent


@pytest.fixture
def store_types(db: None) -> dict[str, CertificateStoreType]:
    common = {"supports_add": True, "supports_remove": True, "supports_create": True}
    CertificateStoreType.objects.filter(short_name="PEM").update(
        **common, supports_reenrollment=False, private_key="optional", custom_alias="optional"
    )
    types = {"PEM": CertificateStoreType.objects.get(short_name="PEM")}
    types["KEYREQ"] = CertificateStoreType.objects.create(
        short_name="KEYREQ", name="Needs a key", private_key="required", **common
    )
    types["NOKEY"] = CertificateStoreType.objects.create(
        short_name="NOKEY", name="Trust only", private_key="forbidden", **common
    )
    types["JAVA"] = CertificateStoreType.objects.create(
        short_name="JAVA",
        name="Java-like",
        custom_alias="required",
        entry_parameters=[
            {
                "name": "entry_password",
                "display_name": "Entry password",
                "type": "secret",
                "required": False,
                "default": None,
                "choices": [],
                "depends_on": None,
                "help": "",
                "required_when": ["has_private_key"],
            },
            {
                "name": "label",
                "display_name": "Label",
                "type": "string",
                "required": False,
                "default": None,
                "choices": [],
                "depends_on": None,
                "help": "",
                "required_when": [],
            },
        ],
        **common,
    )
    types["DEVICE"] = CertificateStoreType.objects.create(
        short_name="DEVICE", name="Re-enrolls", supports_reenrollment=True, **common
    )
    return types


@pytest.fixture
def make_store(
    manager: RegisteredAgent, store_types: dict[str, CertificateStoreType]
) -> Callable[..., CertificateStore]:
    def make(type_name: str = "PEM", path: str = "/etc/ssl/site", owner: Any = None) -> Any:
        return CertificateStore.objects.create(
            store_type=store_types[type_name],
            client_machine=manager.orchestrator.client_machine,
            store_path=path,
            orchestrator=manager.orchestrator,
            created_by=owner,
        )

    return make


def _user(django_user_model: Any, name: str, *perms: str) -> Any:
    user = django_user_model.objects.create_user(name, password="pw")
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    """May enroll and deploy; owns the stores she adds."""
    return _user(
        django_user_model,
        "alice",
        "enrollment.add_enrollmentrequest",
        "enrollment.view_enrollmentrequest",
        "deployment.add_deployment",
        "deployment.view_deployment",
        "deployment.view_deploymentbatch",
    )


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    """Same rights as alice, and any certificate, but not her stores."""
    return _user(
        django_user_model,
        "bob",
        "enrollment.add_enrollmentrequest",
        "deployment.add_deployment",
        "deployment.view_deployment",
        "inventory.manage_any_certificate",
    )
