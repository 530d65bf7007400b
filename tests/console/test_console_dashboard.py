"""The dashboard: certificate and orchestrator counts, the approval queue, recent jobs."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator
from certyard.inventory.services import store_inventory_status_record
from certyard.jobs.models import Job
from certyard.jobs.services import job_complete, job_inventory_request, job_lease_next
from orchestrators.protocol import JobOutcome


def _tile(page: str, testid: str) -> int:
    match = re.search(rf'data-testid="{testid}">\s*<span class="tile-number">(\d+)</span>', page)
    assert match, testid
    return int(match.group(1))


@pytest.mark.django_db
def test_dashboard_counts_certificates_by_expiry(admin_web: Client, inventory) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()

    assert _tile(page, "count-total") == 6  # five leaves and the CA
    # Disjoint windows of the five leaves (one expired; 3, 20, 60 and 200 days left).
    assert _tile(page, "count-expired") == 1
    assert _tile(page, "count-7") == 1
    assert _tile(page, "count-30") == 1
    assert _tile(page, "count-90") == 1
    assert _tile(page, "count-ca") == 1
    assert _tile(page, "count-revoked") == 0
    assert "Expiry of the 5 end-entity certificates in use" in page


@pytest.mark.django_db
def test_dashboard_counts_orchestrators_and_lists_those_waiting(
    admin_web: Client, waiting_orchestrator: Orchestrator, approved_orchestrator: Orchestrator
) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()

    assert _tile(page, "orchestrators-new") == 1
    assert _tile(page, "orchestrators-approved") == 1
    assert _tile(page, "orchestrators-disapproved") == 0
    rows = re.findall(r'data-testid="orchestrator-row" data-name="([^"]+)"', page)
    assert rows == ["waiting-agent"]
    assert ">Approve</button>" in page
    assert ">Disapprove</button>" in page


@pytest.mark.django_db
def test_dashboard_shows_recent_jobs(admin_web: Client, store, admin_user_) -> None:
    job_inventory_request(store=store, source=Job.Source.ADMIN, requested_by=admin_user_)

    page = admin_web.get(reverse("console:dashboard")).content.decode()

    assert page.count('data-testid="job-row"') == 1
    assert "/etc/ssl/certs" in page
    assert 'hx-trigger="every 3s"' not in page  # the dashboard's copy does not poll


@pytest.mark.django_db
def test_dashboard_of_an_empty_platform(admin_web: Client) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()
    assert _tile(page, "count-total") == 0
    assert "No orchestrator is waiting for approval." in page
    assert "No job has run yet." in page
    assert "No failing stores" in page
    assert "No failed jobs." in page


@pytest.mark.django_db
def test_dashboard_lists_failing_stores_with_their_message_and_a_link(
    admin_web: Client, store
) -> None:
    store_inventory_status_record(
        store_id=store.pk, status="failing", message="store path /etc/ssl/certs does not exist"
    )

    page = admin_web.get(reverse("console:dashboard")).content.decode()

    section = re.search(r'data-testid="failing-stores">(.*?)</section>', page, re.S).group(1)
    rows = re.findall(r'data-testid="failing-store".*?</tr>', section, re.S)
    assert len(rows) == 1
    assert "store path /etc/ssl/certs does not exist" in rows[0]
    assert f'href="/stores/?status=failing#store-{store.pk}"' in rows[0]
    assert "approved-agent" in rows[0]
    assert "No failing stores" not in page


@pytest.mark.django_db
def test_dashboard_leaves_out_stores_that_work(admin_web: Client, store) -> None:
    store_inventory_status_record(store_id=store.pk, status="warning", message="1 entry rejected")
    page = admin_web.get(reverse("console:dashboard")).content.decode()
    assert "No failing stores" in page
    assert 'data-testid="failing-store"' not in page


@pytest.mark.django_db
def test_dashboard_lists_failed_jobs(admin_web: Client, store, settings) -> None:
    settings.CERTYARD_JOB_MAX_ATTEMPTS = 1
    job, _ = job_inventory_request(store=store, source=Job.Source.SCHEDULE)
    job_lease_next(orchestrator=store.orchestrator)
    job_complete(
        orchestrator=store.orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.FAILURE,
        message="store path /etc/ssl/certs does not exist",
    )

    page = admin_web.get(reverse("console:dashboard")).content.decode()

    section = re.search(r'data-testid="failed-jobs">(.*?)</section>', page, re.S).group(1)
    assert section.count('data-testid="job-row"') == 1
    assert "does not exist" in section
    assert 'data-action="retry"' in section
    assert "No failed jobs." not in page


@pytest.mark.django_db
def test_dashboard_hides_stores_and_jobs_from_those_who_may_not_see_them(
    plain_web: Client, store
) -> None:
    store_inventory_status_record(store_id=store.pk, status="failing", message="secret path")
    page = plain_web.get(reverse("console:dashboard")).content.decode()
    assert 'data-testid="failing-stores"' not in page
    assert 'data-testid="failed-jobs"' not in page
    assert "secret path" not in page
