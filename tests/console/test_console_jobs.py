"""Jobs: the live list, its polled partial, the state filter and the detail page."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from certyard.inventory.models import CertificateStore
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_complete,
    job_inventory_report,
    job_inventory_request,
    job_lease_next,
)
from orchestrators.protocol import JobOutcome


@pytest.fixture
def job(store: CertificateStore, admin_user_: User) -> Job:
    job, _created = job_inventory_request(
        store=store, source=Job.Source.ADMIN, requested_by=admin_user_
    )
    return job


@pytest.fixture
def finished_job(job: Job, pki) -> Job:
    """The job leased, reported (one good entry, one bad) and completed by its agent."""
    orchestrator = job.orchestrator
    leased = job_lease_next(orchestrator=orchestrator)
    assert leased.pk == job.pk
    good = pki.leaf("reported.example.test", days_left=100)
    job_inventory_report(
        orchestrator=orchestrator,
        job_id=job.pk,
        entries=[
            {"alias": "good", "private_key": False, "certificates": [good.pem]},
            {"alias": "broken", "private_key": False, "certificates": ["not a pem"]},
        ],
    )
    job, _duplicate = job_complete(
        orchestrator=orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.WARNING,
        message="1 entry rejected",
    )
    return job


@pytest.mark.django_db
def test_job_list_shows_jobs_and_polls_its_body(admin_web: Client, job: Job) -> None:
    page = admin_web.get(reverse("console:job-list")).content.decode()

    assert re.search(
        r'<tbody id="job-rows" data-testid="job-rows" hx-get="/jobs/rows/" '
        r'hx-trigger="every 3s" hx-swap="outerHTML">',
        page,
    )
    row = re.search(r'data-testid="job-row".*?</tr>', page, re.S).group(0)
    assert 'data-state="pending"' in row
    assert ">Pending</span>" in row
    assert "/etc/ssl/certs" in row and "approved-agent" in row
    assert "0/3" in row


@pytest.mark.django_db
def test_jobs_partial_renders_just_the_table_body(admin_web: Client, job: Job) -> None:
    response = admin_web.get(reverse("console:job-rows"), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    body = response.content.decode().strip()
    assert body.startswith('<tbody id="job-rows"') and body.endswith("</tbody>")
    assert "<html" not in body
    assert body.count('data-testid="job-row"') == 1


@pytest.mark.django_db
def test_jobs_partial_of_no_jobs_keeps_polling(admin_web: Client) -> None:
    body = admin_web.get(reverse("console:job-rows")).content.decode()
    assert 'hx-trigger="every 3s"' in body
    assert "No job yet." in body


@pytest.mark.django_db
def test_state_filter(admin_web: Client, job: Job) -> None:
    pending = admin_web.get(reverse("console:job-list"), {"state": "pending"}).content.decode()
    assert pending.count('data-testid="job-row"') == 1
    # The polled body keeps the filter.
    assert 'hx-get="/jobs/rows/?state=pending"' in pending

    succeeded = admin_web.get(reverse("console:job-rows"), {"state": "succeeded"}).content.decode()
    assert 'data-testid="job-row"' not in succeeded
    assert "No succeeded job." in succeeded


@pytest.mark.django_db
def test_bad_state_is_a_form_error(admin_web: Client, job: Job) -> None:
    response = admin_web.get(reverse("console:job-list"), {"state": "exploded"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Select a valid choice" in page
    assert 'data-testid="job-row"' not in page


@pytest.mark.django_db
def test_job_detail_shows_history_and_result(admin_web: Client, finished_job: Job) -> None:
    response = admin_web.get(reverse("console:job-detail", args=[finished_job.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert ">Succeeded</span>" in page
    assert ">Warning</span>" in page
    assert 'data-testid="inventory-summary"' in page
    tiles = {
        label: int(number)
        for number, label in re.findall(
            r'<span class="tile-number">(\d+)</span><span class="tile-label">([^<]+)</span>', page
        )
    }
    assert tiles["Added"] == 1
    assert tiles["Rejected"] == 1
    assert tiles["Removed"] == 0
    rejected = re.search(r'data-testid="rejected-table">(.*?)</table>', page, re.S).group(1)
    assert "broken" in rejected and "no PEM CERTIFICATE block found" in rejected
    history = re.findall(r'data-testid="history-row">(.*?)</tr>', page, re.S)
    assert len(history) == 1
    assert "approved-agent" in history[0] and "1 entry rejected" in history[0]


@pytest.mark.django_db
def test_job_detail_of_a_job_not_yet_run(admin_web: Client, job: Job) -> None:
    page = admin_web.get(reverse("console:job-detail", args=[job.pk])).content.decode()
    assert "No result reported yet." in page
    assert "No attempt yet" in page
    assert "Admin by root" in page


@pytest.mark.django_db
def test_unknown_job_is_404(admin_web: Client) -> None:
    url = reverse("console:job-detail", args=["00000000-0000-0000-0000-000000000000"])
    assert admin_web.get(url).status_code == 404
