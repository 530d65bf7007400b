"""The console's *Scheduled tasks* page: who sees it, what it lists, *Run now*."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.test import Client
from django_q.models import OrmQ
from django_q.tasks import async_task

from tests.console.conftest import PASSWORD

pytestmark = pytest.mark.django_db

PAGE = "/scheduled-tasks/"


def _web(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _csrf(client: Client) -> str:
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.context["csrf_token"]


@pytest.fixture
def operator(db: None) -> User:
    """A staff member granted workflows.run_scheduled_task, and nothing else."""
    user = get_user_model().objects.create_user("operator", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="run_scheduled_task"))
    return user


def test_the_page_lists_every_task_with_its_schedule(admin_web: Client) -> None:
    response = admin_web.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("expiry-scan", "metadata-new", "metadata-backfill", "crl-refresh", "retention"):
        assert f'data-name="{name}"' in html
    assert "certyard: expiration scan" in html
    assert "daily" in html and "on demand only" in html
    # Linked from the navigation for whoever may use it.
    assert f'href="{PAGE}"' in admin_web.get("/").content.decode()


def test_run_now_queues_the_task_with_a_flash_message(operator: User) -> None:
    client = _web(operator)
    token = _csrf(client)
    response = client.post(f"{PAGE}expiry-scan/run/", {"csrfmiddlewaretoken": token}, follow=True)
    assert response.status_code == 200
    (message,) = [str(m) for m in response.context["messages"]]
    assert message.startswith("Expiration scan queued (task ")
    queued = OrmQ.objects.get()
    assert queued.task["args"] == ("expiry-scan", "operator", operator.pk)
    assert f'href="{PAGE}"' in response.content.decode()  # the nav link


def test_run_now_needs_the_csrf_token(operator: User) -> None:
    response = _web(operator).post(f"{PAGE}expiry-scan/run/")
    assert response.status_code == 403
    assert not OrmQ.objects.exists()


def test_run_now_is_post_only(admin_web: Client) -> None:
    assert admin_web.get(f"{PAGE}expiry-scan/run/").status_code == 405
    assert not OrmQ.objects.exists()


def test_an_unknown_task_is_a_flash_error(admin_web: Client) -> None:
    response = admin_web.post(f"{PAGE}nope/run/", follow=True)
    (message,) = [str(m) for m in response.context["messages"]]
    assert "no scheduled task is named 'nope'" in message
    assert not OrmQ.objects.exists()


def test_others_are_refused(plain_web: Client, db: None) -> None:
    assert plain_web.get(PAGE).status_code == 403
    assert plain_web.post(f"{PAGE}expiry-scan/run/").status_code == 403
    assert f'href="{PAGE}"' not in plain_web.get("/").content.decode()
    # Staff without the permission: refused too.
    staff = get_user_model().objects.create_user("staffer", password=PASSWORD, is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(PAGE).status_code == 403
    assert client.post(f"{PAGE}expiry-scan/run/").status_code == 403
    assert not OrmQ.objects.exists()


def test_anonymous_is_sent_to_log_in() -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_last_run_shows_with_its_result(admin_web: Client) -> None:
    # A run-now as the cluster runs it (django-q2 in-process: it records the task's result).
    async_task(
        "certyard.workflows.scheduled.scheduled_task_execute",
        "retention",
        "root",
        None,
        group="run now: retention",
        sync=True,
    )
    html = admin_web.get(PAGE).content.decode()
    row = html.split('data-name="retention"', 1)[1].split("</tr>", 1)[0]
    assert "succeeded" in row and "run now by root" in row
    assert 'data-testid="scheduled-task-result">{&quot;rows_pruned&quot;: 0}</code>' in row
