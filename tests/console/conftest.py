"""Fixtures for the console's tests: users, a registered orchestrator, a real inventory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client

from certyard.fleet.models import Orchestrator
from certyard.fleet.services import orchestrator_register, registration_token_create
from certyard.inventory.models import Certificate, CertificateStore, CertificateStoreType
from certyard.inventory.services import inventory_submit, store_create

PASSWORD = "a-long-test-password-7"


@pytest.fixture
def admin_user_(db: None) -> User:
    return get_user_model().objects.create_superuser("root", "root@example.test", PASSWORD)


@pytest.fixture
def admin_web(admin_user_: User) -> Client:
    """A client logged in as a superuser."""
    client = Client()
    client.force_login(admin_user_)
    return client


@pytest.fixture
def plain_user(db: None) -> User:
    """A signed-in person with no permission at all."""
    return get_user_model().objects.create_user("visitor", "visitor@example.test", PASSWORD)


@pytest.fixture
def plain_web(plain_user: User) -> Client:
    client = Client()
    client.force_login(plain_user)
    return client


# --- Orchestrators ---------------------------------------------------------------------


def _csr(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def register(db: None) -> Callable[..., Orchestrator]:
    """Register an orchestrator the way an agent does, with a fresh token and key."""

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
            csr_pem=_csr(name),
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
class Issued:
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def sha256(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Certyard Tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Pki:
    ca: Issued
    ca_key: ec.EllipticCurvePrivateKey

    def leaf(
        self,
        common_name: str,
        *,
        days_left: float,
        sans: tuple[str, ...] = (),
        rsa_key: bool = False,
    ) -> Issued:
        now = dt.datetime.now(dt.UTC)
        key = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if rsa_key
            else ec.generate_private_key(ec.SECP256R1())
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days_left))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
            )
        return Issued(builder.sign(self.ca_key, hashes.SHA256()))


@pytest.fixture(scope="session")
def pki() -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("Certyard Test Root CA"))
        .issuer_name(_name("Certyard Test Root CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=500))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Pki(Issued(certificate), key)


@pytest.fixture
def pem_store_type(db: None) -> CertificateStoreType:
    return CertificateStoreType.objects.get(short_name="PEM")


@pytest.fixture
def store(
    approved_orchestrator: Orchestrator, pem_store_type: CertificateStoreType
) -> CertificateStore:
    return store_create(
        store_type=pem_store_type,
        client_machine="web01.example.test",
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
    entries = [
        {"alias": cn, "private_key": True, "certificates": [leaf.pem, pki.ca.pem]}
        for cn, leaf in leaves.items()
    ]
    entries.append({"alias": "root-ca", "private_key": False, "certificates": [pki.ca.pem]})
    outcome = inventory_submit(store=store, entries=entries)
    assert not outcome.rejected
    return Inventory(store=store, ca=pki.ca, leaves=leaves)
