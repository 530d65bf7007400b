"""The console pages' database round trips, pinned: a page reads what it shows in a fixed
number of queries, however many rows there are.

Each page is loaded twice: with one of everything (an orchestrator with a store and its
inventory, jobs, a CA, a template, enrollments), then with several more of each. The
count must not change between the two (no query per row), and it must equal the figure
pinned below: a change that adds a query to a page shows up here, to be justified and
pinned again, or fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from certyard.enrollment.models import Template
from certyard.enrollment.services import enrollment_submit_csr
from certyard.fleet.models import Orchestrator
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import Certificate, CertificateStore, CertificateStoreType
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority
from tests.certs import agent_key, csr_pem
from tests.conftest import entry
from tests.console.conftest import Pki

# Page (URL name) -> queries to render it for a superuser: the session, the user and the
# pending-approvals badge of the menu (3) are in each. The certificate's page reads its
# CA record, enrollments, locations, deployments, metadata and handler runs.
PINNED = {
    "dashboard": 9,
    "orchestrator-list": 4,
    "store-list": 4,
    "certificate-list": 6,
    "job-list": 4,
    "ca-list": 4,
    "gateway-list": 4,
    "enrollment-template-list": 4,
    "enrollment-request-list": 4,
    "metadata": 8,
    "handler-registration-list": 4,
    "run-list": 5,
    "scheduled-task-list": 5,
    "blueprint-list": 4,
    "api-token-list": 4,
    "orchestrator-detail": 10,
    "store-detail": 7,
    "certificate-detail": 24,
    "job-detail": 6,
    "ca-detail": 8,
}


class Estate:
    """Orchestrators, each with a PEM store and an inventory, jobs, CAs and enrollments."""

    def __init__(self, register: Callable[..., Orchestrator], pki: Pki) -> None:
        self.register = register
        self.pki = pki
        self.added = 0
        self.stores: list[CertificateStore] = []

    def grow(self, by: int) -> None:
        for _ in range(by):
            self.added += 1
            n = self.added
            orchestrator = self.register(f"agent-{n}", approve=True)
            store = store_create(
                store_type=CertificateStoreType.objects.get(short_name="PEM"),
                store_path=f"/etc/ssl/certs-{n}",
                orchestrator=orchestrator,
            )
            self.stores.append(store)
            leaves = {
                f"host{n}-{i}.example.test": self.pki.leaf(
                    f"host{n}-{i}.example.test", days_left=10 * i + 5
                )
                for i in range(3)
            }
            entries = [entry(cn, leaf, self.pki.ca) for cn, leaf in leaves.items()]
            assert not inventory_submit(store=store, entries=entries).rejected
            job_inventory_request(store=store, source=Job.Source.API)
            ca = pki_services.ca_create(name=f"Query CA {n}", key_algorithm="EC-P256")
            Template.objects.create(name=f"query-{n}", ca=ca, allowed_domains=["example.test"])
            for i in range(2):
                enrollment_submit_csr(
                    template_name=f"query-{n}",
                    csr_pem=csr_pem(agent_key(), f"enrolled{n}-{i}.example.test"),
                )

    def url(self, name: str) -> str:
        first = self.stores[0]
        by_object: dict[str, Any] = {
            "orchestrator-detail": first.orchestrator_id,
            "store-detail": first.pk,
            "certificate-detail": Certificate.objects.order_by("pk").first().pk,  # type: ignore[union-attr]
            "job-detail": Job.objects.order_by("created_at").first().pk,  # type: ignore[union-attr]
            "ca-detail": CertificateAuthority.objects.order_by("pk").first().pk,  # type: ignore[union-attr]
        }
        if name in by_object:
            return reverse(f"console:{name}", args=[by_object[name]])
        return reverse(f"console:{name}")


def _queries(web: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        answer = web.get(url)
    assert answer.status_code == 200, (url, answer.status_code)
    return len(queries.captured_queries)


@pytest.fixture
def estate(register: Callable[..., Orchestrator], pki: Pki) -> Estate:
    return Estate(register, pki)


def test_each_console_page_reads_in_a_pinned_number_of_queries_whatever_the_rows(
    admin_web: Client, estate: Estate
) -> None:
    estate.grow(1)
    few = {name: _queries(admin_web, estate.url(name)) for name in PINNED}
    estate.grow(3)
    many = {name: _queries(admin_web, estate.url(name)) for name in PINNED}
    assert many == few, "a page reads more as rows are added (a query per row)"
    assert many == PINNED
