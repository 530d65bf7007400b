"""The dashboard: certificate and orchestrator counts, the approval queue, recent jobs."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request


def _tile(page: str, testid: str) -> int:
    match = re.search(rf'data-testid="{testid}">\s*<span class="tile-number">(\d+)</span>', page)
    assert match, testid
    return int(match.group(1))


@pytest.mark.django_db
def test_dashboard_counts_certificates_by_expiry(admin_web: Client, inventory) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()

    assert _tile(page, "count-total") == 6  # five leaves and the CA
    assert _tile(page, "count-expired") == 1
    assert _tile(page, "count-7") == 1
    assert _tile(page, "count-30") == 2
    assert _tile(page, "count-90") == 3


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
