"""Fixtures for the console's tests: users, a registered orchestrator, a real inventory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client

from certyard.fleet.models import Orchestrator
from certyard.fleet.services import orchestrator_register, registration_token_create
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import Certificate, CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create
from tests.certs import Issued, agent_key, csr_pem, issue
from tests.conftest import entry

PASSWORD = "a-long-test-password-7"


def _signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_user_(db: None) -> User:
    return get_user_model().objects.create_superuser("root", "root@example.test", PASSWORD)


@pytest.fixture
def admin_web(admin_user_: User) -> Client:
    """A client logged in as a superuser."""
    return _signed_in(admin_user_)


@pytest.fixture
def plain_user(db: None) -> User:
    """A signed-in person with no permission at all."""
    return get_user_model().objects.create_user("visitor", "visitor@example.test", PASSWORD)


@pytest.fixture
def plain_web(plain_user: User) -> Client:
    return _signed_in(plain_user)


# --- Orchestrators ---------------------------------------------------------------------


@pytest.fixture
def register(db: None) -> Callable[..., Orchestrator]:
    """Register an orchestrator the way an agent does, with a fresh token and key.

    Unlike the shared ``register_agent``, the console's tests choose the capabilities and
    look for the agent version ("0.1.0") on the page.
    """

    def make(
        name: str, *, approve: bool = False, capabilities: tuple[str, ...] = ("PEM.Inventory",)
    ) -> Orchestrator:
        _token, value = registration_token_create(
            description=f"for {name}",
            valid_for=dt.timedelta(hours=1),
            approve_on_register=approve,
        )
        registration = orchestrator_register(
            token=value,
            name=name,
            client_machine=f"{name}.example.test",
            agent_version="0.1.0",
            capabilities=list(capabilities),
            client_parameters={},
            csr_pem=csr_pem(agent_key(), name),
            source_address="127.0.0.1",
        )
        return registration.orchestrator

    return make


@pytest.fixture
def waiting_orchestrator(register: Callable[..., Orchestrator]) -> Orchestrator:
    return register("waiting-agent")


@pytest.fixture
def approved_orchestrator(register: Callable[..., Orchestrator]) -> Orchestrator:
    return register("approved-agent", approve=True)


# --- Certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Leaves signed by the shared test root ``ca``."""

    ca: Issued

    def leaf(
        self, common_name: str, *, days_left: int, sans: tuple[str, ...] = (), rsa_key: bool = False
    ) -> Issued:
        return issue(
            common_name,
            issuer=self.ca,
            days=days_left,
            sans=sans,
            rsa_bits=2048 if rsa_key else None,
        )


@pytest.fixture(scope="session")
def pki(ca: Issued) -> Pki:
    return Pki(ca)


@pytest.fixture
def store(approved_orchestrator: Orchestrator) -> CertificateStore:
    """A PEM store on the approved orchestrator's machine (approved-agent.example.test)."""
    return store_create(
        store_type=CertificateStoreType.objects.get(short_name="PEM"),
        store_path="/etc/ssl/certs",
        orchestrator=approved_orchestrator,
    )


@dataclass(frozen=True)
class Inventory:
    store: CertificateStore
    ca: Issued
    leaves: dict[str, Issued]

    def certificate(self, common_name: str) -> Certificate:
        return Certificate.objects.get(sha256=self.leaves[common_name].sha256)


# Common name -> days until it expires (negative: already expired).
LEAVES = {
    "expired.example.test": -3,
    "soon.example.test": 3,
    "month.example.test": 20,
    "quarter.example.test": 60,
    "later.example.test": 200,
}


@pytest.fixture
def inventory(store: CertificateStore, pki: Pki) -> Inventory:
    """Five leaves (expired, 3, 20, 60, 200 days left) and the CA, reported by a real submit."""
    leaves = {
        cn: pki.leaf(cn, days_left=days, sans=(cn, f"www.{cn}"), rsa_key=cn.startswith("later"))
        for cn, days in LEAVES.items()
    }
    entries = [entry(cn, leaf, pki.ca, private_key=True) for cn, leaf in leaves.items()]
    entries.append(entry("root-ca", pki.ca))
    outcome = inventory_submit(store=store, entries=entries)
    assert not outcome.rejected
    return Inventory(store=store, ca=pki.ca, leaves=leaves)


def nonconformant_pem(issued: Issued, *, unreadable_validity: bool = False) -> str:
    """The certificate with its version set to 6 (X.509 has 1 to 3), and, if asked, its
    notAfter made unreadable: the platform keeps it, with parse warnings."""
    from certyard.x509 import der_to_pem, pem_to_der

    der = pem_to_der(issued.pem)
    at = der.index(bytes.fromhex("a003020102"))
    der = der[:at] + bytes.fromhex("a003020105") + der[at + 5 :]
    if unreadable_validity:
        not_before = der.index(b"\x17\x0d")
        not_after = der.index(b"\x17\x0d", not_before + 1)
        der = der[: not_after + 2] + b"XX" + der[not_after + 4 :]
    return der_to_pem(der)


@pytest.fixture
def viewer_web(plain_user: User) -> Client:
    """A signed-in person who may view everything and change nothing."""
    from django.contrib.auth.models import Permission

    plain_user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return _signed_in(plain_user)
