"""Who may see and do what: login, permissions, POST only, CSRF, offline assets."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from certyard.fleet.models import Orchestrator

GET_PAGES = [
    "console:dashboard",
    "console:orchestrator-list",
    "console:registration-token-list",
    "console:store-list",
    "console:certificate-list",
    "console:job-list",
    "console:job-rows",
]


@pytest.mark.django_db
@pytest.mark.parametrize("name", GET_PAGES)
def test_every_page_needs_a_login(client: Client, name: str) -> None:
    url = reverse(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.django_db
def test_an_action_without_login_redirects_and_changes_nothing(
    client: Client, waiting_orchestrator: Orchestrator
) -> None:
    url = reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk])
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.NEW


@pytest.mark.django_db
def test_login_page_has_the_standard_fields_and_logs_in(client: Client, admin_user_: User) -> None:
    page = client.get(reverse("login")).content.decode()
    assert 'name="username"' in page
    assert 'name="password"' in page
    assert ">Log in</button>" in page

    response = client.post(
        reverse("login"), {"username": "root", "password": "a-long-test-password-7"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("console:dashboard")
    assert client.get(reverse("console:dashboard")).status_code == 200


@pytest.mark.django_db
def test_logout_is_a_post_form(admin_web: Client) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()
    assert re.search(r'<form[^>]*method="post"[^>]*action="/logout/"', page)
    assert admin_web.post(reverse("logout")).status_code == 302
    assert admin_web.get(reverse("console:dashboard")).status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        "console:orchestrator-list",
        "console:registration-token-list",
        "console:store-list",
        "console:certificate-list",
        "console:job-list",
        "console:job-rows",
    ],
)
def test_reads_need_the_view_permission_like_the_api(plain_web: Client, name: str) -> None:
    assert plain_web.get(reverse(name)).status_code == 403


@pytest.mark.django_db
def test_dashboard_shows_nothing_to_a_user_without_permissions(
    plain_web: Client, waiting_orchestrator: Orchestrator
) -> None:
    response = plain_web.get(reverse("console:dashboard"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "waiting-agent" not in page
    assert 'data-testid="certificate-counts"' not in page


@pytest.mark.django_db
def test_approve_without_permission_is_refused_and_changes_nothing(
    plain_user: User, waiting_orchestrator: Orchestrator
) -> None:
    # Seeing orchestrators is not enough: approving needs fleet.change_orchestrator.
    plain_user.user_permissions.add(Permission.objects.get(codename="view_orchestrator"))
    client = Client()
    client.force_login(plain_user)
    url = reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk])

    response = client.post(url, HTTP_HX_REQUEST="true")

    assert response.status_code == 403
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.NEW
    # And the page does not offer the button it would refuse.
    page = client.get(reverse("console:orchestrator-list")).content.decode()
    assert "waiting-agent" in page
    assert ">Approve</button>" not in page


@pytest.mark.django_db
def test_actions_are_post_only(admin_web: Client, waiting_orchestrator: Orchestrator) -> None:
    url = reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk])
    assert admin_web.get(url).status_code == 405
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.NEW


@pytest.mark.django_db
def test_post_without_csrf_token_is_refused(
    admin_user_: User, waiting_orchestrator: Orchestrator
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user_)
    url = reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk])

    response = client.post(url, HTTP_HX_REQUEST="true")

    assert response.status_code == 403
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.NEW


@pytest.mark.django_db
def test_htmx_post_with_the_token_from_the_page_headers_passes_csrf(
    admin_user_: User, waiting_orchestrator: Orchestrator
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user_)
    page = client.get(reverse("console:orchestrator-list")).content.decode()
    token = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", page).group(1)

    response = client.post(
        reverse("console:orchestrator-approve", args=[waiting_orchestrator.pk]),
        HTTP_HX_REQUEST="true",
        HTTP_X_CSRFTOKEN=token,
    )

    assert response.status_code == 200
    waiting_orchestrator.refresh_from_db()
    assert waiting_orchestrator.status == Orchestrator.Status.APPROVED


@pytest.mark.django_db
def test_pages_load_nothing_from_other_hosts(admin_web: Client) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))]
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert any("django_htmx/htmx-2" in s for s in scripts)
    for asset in [*scripts, *(s for s in sources if s.endswith(".css"))]:
        response = admin_web.get(asset)
        assert response.status_code == 200, asset
        response.close()


@pytest.mark.django_db
def test_navigation_links(admin_web: Client) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()
    for label, url in [
        ("Dashboard", "/"),
        ("Orchestrators", "/orchestrators/"),
        ("Stores", "/stores/"),
        ("Certificates", "/certificates/"),
        ("Jobs", "/jobs/"),
        ("API docs", "/api/docs/"),
        ("Django admin", "/admin/"),
    ]:
        assert f'href="{url}"' in page and f">{label}</a>" in page, label


@pytest.mark.django_db
def test_pages_of_one_thing_need_a_login_too(client: Client, store) -> None:
    from certyard.jobs.models import Job
    from certyard.jobs.services import job_inventory_request

    job, _ = job_inventory_request(store=store, source=Job.Source.ADMIN)
    for name, pk in [
        ("console:orchestrator-detail", store.orchestrator.pk),
        ("console:store-edit", store.pk),
        ("console:store-delete", store.pk),
        ("console:job-detail", job.pk),
    ]:
        url = reverse(name, args=[pk])
        response = client.get(url)
        assert response.status_code == 302, name
        assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.django_db
def test_new_actions_refuse_posts_without_csrf_token(admin_user_: User, store) -> None:
    from certyard.inventory.models import CertificateStore

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user_)

    deleted = client.post(reverse("console:store-delete", args=[store.pk]))
    edited = client.post(reverse("console:store-edit", args=[store.pk]), {"store_path": "/x"})

    assert deleted.status_code == 403 and edited.status_code == 403
    store.refresh_from_db()
    assert store.store_path == "/etc/ssl/certs"
    assert CertificateStore.objects.filter(pk=store.pk).exists()
