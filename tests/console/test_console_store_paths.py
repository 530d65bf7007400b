"""The store forms: paths checked against the agent's reported roots (its own message,
before anything is saved), the store type's properties as real fields in a group per
type, the orchestrator page's roots, and the stores table's menu and wrapped paths."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from certyard.console.forms import sentence
from certyard.fleet.models import Orchestrator
from certyard.inventory.models import CertificateStore
from certyard.jobs.models import Job
from orchestrators.roots import store_path_problem

pytestmark = pytest.mark.django_db


def _form(orchestrator: Orchestrator, **changes: str) -> dict[str, str]:
    data = {
        "store_type": "PEM",
        "orchestrator": str(orchestrator.pk),
        "client_machine": "",
        "store_path": "/etc/ssl/site",
        "inventory_interval_minutes": "5",
    }
    data.update(changes)
    return data


def _roots(orchestrator: Orchestrator, roots: list[str] | None, size: int | None = None) -> None:
    Orchestrator.objects.filter(pk=orchestrator.pk).update(store_roots=roots, max_file_bytes=size)


def _field_errors(page: str) -> list[str]:
    return re.findall(r'<p class="field-error" role="alert">(.*?)</p>', page, re.S)


def test_a_path_outside_the_reported_roots_is_a_field_error_with_the_agents_message(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    _roots(approved_orchestrator, ["/etc/ssl", "/srv/tls"])

    response = admin_web.post(
        reverse("console:store-create"), _form(approved_orchestrator, store_path="/root/keys")
    )

    assert response.status_code == 200
    page = response.content.decode()
    message = sentence(store_path_problem("/root/keys", ["/etc/ssl", "/srv/tls"]))
    # The agent's words, capitalised as the console shows every refusal, escaped once.
    assert _field_errors(page) == [message.replace("'", "&#x27;")]
    assert not CertificateStore.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize("path", ["relative/path", "../../../../etc/ssl/certs"])
def test_a_relative_or_dotdot_path_is_refused_when_no_roots_are_known(
    admin_web: Client, approved_orchestrator: Orchestrator, path: str
) -> None:
    response = admin_web.post(
        reverse("console:store-create"), _form(approved_orchestrator, store_path=path)
    )

    errors = _field_errors(response.content.decode())
    assert len(errors) == 1
    assert "not absolute" in errors[0] or "contains &#x27;..&#x27;" in errors[0]
    assert not CertificateStore.objects.exists()


def test_a_path_inside_the_roots_is_added(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    _roots(approved_orchestrator, ["/etc/ssl"])
    response = admin_web.post(reverse("console:store-create"), _form(approved_orchestrator))
    assert response.status_code == 302
    assert CertificateStore.objects.get().store_path == "/etc/ssl/site"


def test_the_edit_form_refuses_a_new_path_outside_the_roots_but_keeps_an_unchanged_one(
    admin_web: Client, store: CertificateStore
) -> None:
    _roots(store.orchestrator, ["/srv"])  # /etc/ssl/certs is outside now
    url = reverse("console:store-edit", args=[store.pk])
    base = {"store_path": store.store_path, "inventory_interval_minutes": "15"}

    kept = admin_web.post(url, base)
    moved = admin_web.post(url, {**base, "store_path": "/etc/other"})

    assert kept.status_code == 302
    assert moved.status_code == 200
    assert "outside the folders this orchestrator may read (/srv)" in moved.content.decode()
    store.refresh_from_db()
    assert store.store_path == "/etc/ssl/certs" and store.inventory_interval_minutes == 15
    page = admin_web.get(url).content.decode()
    assert (
        'data-testid="store-roots-hint"' in page and '<code class="path">/<wbr>srv</code>' in page
    )


def test_the_add_form_groups_each_types_properties_as_real_fields(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    _roots(approved_orchestrator, ["/etc/ssl"])
    page = admin_web.get(
        reverse("console:store-create") + f"?orchestrator={approved_orchestrator.pk}"
    ).content.decode()

    pem = re.search(
        r'<fieldset class="property-group" data-store-type="PEM".*?</fieldset>', page, re.S
    )
    assert pem, "no PEM property group"
    group = pem.group(0)
    assert 'type="checkbox" name="PEM__recursive"' in group and "Read subfolders" in group
    assert 'name="PEM__file_patterns"' in group and "Default: *.pem" in group
    assert re.search(r'<select name="PEM__key_file"', group)
    assert 'data-store-type="PKCS12"' in page
    # The hint data: the chosen orchestrator's roots and each type's example path.
    assert f'"{approved_orchestrator.pk}": ["/etc/ssl"]' in page
    assert 'id="store-path-hints"' in page and "/etc/app/keystore.p12" in page
    assert re.search(rf'<option value="{approved_orchestrator.pk}" selected>', page)
    assert "certyard/store-form.js" in page


def test_property_values_are_checked_as_the_api_checks_them(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    response = admin_web.post(
        reverse("console:store-create"),
        _form(approved_orchestrator, PEM__key_file="nonsense"),
    )
    assert response.status_code == 200
    assert _field_errors(response.content.decode())
    assert not CertificateStore.objects.exists()


def test_the_orchestrator_page_shows_the_reported_roots_and_file_limit(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    url = reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    before = admin_web.get(url).content.decode()
    assert 'data-testid="store-roots" data-reported="no"' in before
    assert "not reported by this agent version" in before

    _roots(approved_orchestrator, ["/etc/ssl", "/srv/<b>tls</b>"], 1048576)
    after = admin_web.get(url).content.decode()

    roots = re.search(r'data-testid="store-roots" data-reported="yes">(.*?)</dd>', after, re.S)
    assert roots
    assert "/<wbr>etc/<wbr>ssl" in roots.group(1)
    assert "&lt;b&gt;tls&lt;" in roots.group(1) and "<b>" not in roots.group(1)  # escaped
    assert "1.0\xa0MB" in after and "(1048576 bytes)" in after


def test_no_configured_roots_is_said_as_such(
    admin_web: Client, approved_orchestrator: Orchestrator
) -> None:
    _roots(approved_orchestrator, [])
    page = admin_web.get(
        reverse("console:orchestrator-detail", args=[approved_orchestrator.pk])
    ).content.decode()
    assert "none configured: the agent refuses every store" in page


def test_the_stores_table_wraps_paths_at_slashes_and_puts_actions_in_a_menu(
    admin_web: Client, store: CertificateStore
) -> None:
    page = admin_web.get(reverse("console:store-list")).content.decode()

    row = re.search(rf'<tr id="store-{store.pk}".*?</tr>', page, re.S).group(0)
    assert ">/<wbr>etc/<wbr>ssl/<wbr>certs</a>" in row
    assert 'data-path="/etc/ssl/certs"' in row  # the attribute stays the plain path
    menu = re.search(r'<details class="menu" data-testid="store-actions">.*?</details>', row, re.S)
    assert menu, "no actions menu"
    for action in ("inventory-now", "edit", "schedule", "delete"):
        assert f'data-action="{action}"' in menu.group(0)
    schedule = re.search(r'<td data-testid="store-schedule">(.*?)</td>', row, re.S).group(1)
    assert "none" in schedule and "<form" not in schedule  # the schedule is text


def test_a_viewer_sees_no_actions_menu(viewer_web: Client, store: CertificateStore) -> None:
    page = viewer_web.get(reverse("console:store-list")).content.decode()
    assert 'data-testid="store-row"' in page
    assert 'data-testid="store-actions"' not in page
