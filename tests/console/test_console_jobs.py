"""Jobs: the live list, its polled partial, the state filter, the detail page, and
cancel and retry."""

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from certyard.inventory.models import CertificateStore
from certyard.inventory.services import store_create
from certyard.jobs.models import Job
from certyard.jobs.services import (
    job_complete,
    job_inventory_report,
    job_inventory_request,
    job_lease_next,
    job_report_errors_record,
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
    assert "broken" in rejected and "no pem certificate block found" in rejected.lower()
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


# --- Cancel and retry ----------------------------------------------------------------------


@pytest.mark.django_db
def test_job_detail_shows_what_the_agent_reported_escaped(admin_web: Client, job: Job) -> None:
    job.result = {
        "alias": "web\u202e.pem",
        "written": True,
        "key_origin": "device",
        "reload": {"ran": True, "exit_code": 1, "output": "<script>x</script>"},
        "verification": {
            "endpoint": "127.0.0.1:8443",
            "served": False,
            "served_sha256": "ab" * 32,
            "error": None,
        },
    }
    job.save(update_fields=["result"])
    page = admin_web.get(reverse("console:job-detail", args=[job.pk])).content.decode()
    shown = re.search(r'data-testid="agent-result">(.*?)</dl>', page, re.S).group(1)
    assert "web\\u202E.pem" in shown and "\u202e" not in shown
    assert "&lt;script&gt;" in shown and "<script>" not in shown
    assert "exit 1" in shown and "serves <code>" + "ab" * 32 in shown
    assert "No result reported yet." not in page


@pytest.fixture
def failed_job(store: CertificateStore, settings) -> Job:
    """An inventory job that failed on its only attempt, after a failed report submission
    (of its own store, so that ``job`` can be open at the same time)."""
    settings.CERTYARD_JOB_MAX_ATTEMPTS = 1
    store = store_create(
        store_type=store.store_type, store_path="/srv/failing", orchestrator=store.orchestrator
    )
    job, _created = job_inventory_request(store=store, source=Job.Source.SCHEDULE)
    # First in line, before any other open job of the orchestrator.
    Job.objects.filter(pk=job.pk).update(available_at=job.available_at - dt.timedelta(hours=1))
    assert job_lease_next(orchestrator=store.orchestrator).pk == job.pk
    job.refresh_from_db()
    job_report_errors_record(
        job=job, errors=[{"at": "2025-01-01T00:00:00Z", "error": "HTTP 502 from the platform"}]
    )
    job, _duplicate = job_complete(
        orchestrator=store.orchestrator,
        job_id=job.pk,
        outcome=JobOutcome.FAILURE,
        message="store path /srv/failing does not exist",
    )
    assert job.state == Job.State.FAILED
    return job


def _action(client: Client, name: str, job: Job, **extra):
    return client.post(reverse(f"console:{name}", args=[job.pk]), HTTP_HX_REQUEST="true", **extra)


@pytest.mark.django_db
def test_list_offers_cancel_for_open_jobs_and_retry_for_finished_ones(
    admin_web: Client, job: Job, failed_job: Job
) -> None:
    page = admin_web.get(reverse("console:job-list")).content.decode()
    rows = dict(
        re.findall(r'<tr id="job-([^"]+)" data-testid="job-row".*?(<td.*?)</tr>', page, re.S)
    )
    assert 'data-action="cancel"' in rows[str(job.pk)]
    assert 'data-action="retry"' not in rows[str(job.pk)]
    assert 'data-action="retry"' in rows[str(failed_job.pk)]
    assert 'data-action="cancel"' not in rows[str(failed_job.pk)]


@pytest.mark.django_db
def test_cancel_via_htmx_answers_the_row(admin_web: Client, job: Job) -> None:
    response = _action(admin_web, "job-cancel", job)

    assert response.status_code == 200
    row = response.content.decode().strip()
    assert row.startswith(f'<tr id="job-{job.pk}"') and row.endswith("</tr>")
    assert 'data-state="cancelled"' in row
    assert "Job cancelled." in row
    assert 'data-action="retry"' in row  # a cancelled job may be retried
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED


@pytest.mark.django_db
def test_cancel_of_a_finished_job_is_refused_in_the_row(admin_web: Client, failed_job: Job) -> None:
    row = _action(admin_web, "job-cancel", failed_job).content.decode()

    assert 'class="row-note row-error"' in row
    assert "Not cancelled: the job is already failed." in row
    failed_job.refresh_from_db()
    assert failed_job.state == Job.State.FAILED


@pytest.mark.django_db
def test_retry_via_htmx_opens_a_new_job_and_links_it(
    admin_web: Client, admin_user_: User, failed_job: Job
) -> None:
    row = _action(admin_web, "job-retry", failed_job).content.decode()

    retried = Job.objects.exclude(pk=failed_job.pk).get()
    assert retried.state == Job.State.PENDING
    assert retried.requested_by == admin_user_ and retried.source == Job.Source.ADMIN
    assert "Retried as a new job." in row
    assert f'href="{reverse("console:job-detail", args=[retried.pk])}"' in row
    assert f'<tr id="job-{failed_job.pk}"' in row  # the row of the job clicked

    again = _action(admin_web, "job-retry", failed_job).content.decode()
    assert "already open (pending)" in again
    assert Job.objects.count() == 2


@pytest.mark.django_db
def test_retry_of_an_open_job_is_refused_with_a_clear_message(admin_web: Client, job: Job) -> None:
    row = _action(admin_web, "job-retry", job).content.decode()

    assert 'class="row-note row-error"' in row
    assert "only a finished job can be retried" in row
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_retry_without_htmx_goes_to_the_new_job(admin_web: Client, failed_job: Job) -> None:
    response = admin_web.post(reverse("console:job-retry", args=[failed_job.pk]), follow=True)

    retried = Job.objects.exclude(pk=failed_job.pk).get()
    assert response.redirect_chain == [(reverse("console:job-detail", args=[retried.pk]), 302)]
    assert "Retried as a new job." in response.content.decode()


@pytest.mark.django_db
def test_cancel_from_the_detail_page_comes_back_to_it(admin_web: Client, job: Job) -> None:
    page = admin_web.get(reverse("console:job-detail", args=[job.pk])).content.decode()
    assert 'data-action="cancel"' in page and 'name="return_to" value="detail"' in page

    response = _action(admin_web, "job-cancel", job, data={"return_to": "detail"})

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("console:job-detail", args=[job.pk])
    page = admin_web.get(reverse("console:job-detail", args=[job.pk])).content.decode()
    assert "Job cancelled." in page
    assert 'data-state="cancelled"' in page and 'data-action="retry"' in page


@pytest.mark.django_db
def test_cancel_and_retry_need_change_permission(
    viewer_web: Client, job: Job, failed_job: Job
) -> None:
    assert _action(viewer_web, "job-cancel", job).status_code == 403
    assert _action(viewer_web, "job-retry", failed_job).status_code == 403
    job.refresh_from_db()
    assert job.state == Job.State.PENDING
    assert Job.objects.count() == 2
    listing = viewer_web.get(reverse("console:job-list")).content.decode()
    assert "data-action" not in listing
    detail = viewer_web.get(reverse("console:job-detail", args=[failed_job.pk])).content.decode()
    assert "data-action" not in detail


@pytest.mark.django_db
def test_job_actions_are_post_only(admin_web: Client, job: Job) -> None:
    assert admin_web.get(reverse("console:job-cancel", args=[job.pk])).status_code == 405
    assert admin_web.get(reverse("console:job-retry", args=[job.pk])).status_code == 405


@pytest.mark.django_db
def test_job_detail_shows_each_attempts_report_errors(admin_web: Client, failed_job: Job) -> None:
    page = admin_web.get(reverse("console:job-detail", args=[failed_job.pk])).content.decode()

    history = re.findall(r'data-testid="history-row">(.*?)</tr>', page, re.S)
    assert len(history) == 1
    errors = re.search(r'data-testid="report-errors".*?</details>', history[0], re.S).group(0)
    assert "1 failed report submission<" in errors
    assert "HTTP 502 from the platform" in errors and "2025-01-01T00:00:00Z" in errors
