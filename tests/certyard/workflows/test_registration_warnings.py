"""A generator's declared fields: created when missing, a warning when one disagrees."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from certyard.errors import ServiceError
from certyard.inventory.models import MetadataField
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save

pytestmark = pytest.mark.django_db

ADD = reverse("admin:workflows_handlerregistration_add")
TEAMS = "example.team_from_dns"  # examples/certyard_examples/team_metadata.py


@pytest.fixture
def admin_web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def _generator_form(**changes: Any) -> dict[str, Any]:
    data = {
        "name": "teams",
        "description": "",
        "enabled": "on",
        "order": "100",
        "timeout_seconds": "30",
        "param_teams": "example.com=web\npay.example.com=payments",
        "param_field": "team",
        "_save": "Save",
    }
    data.update(changes)
    return data


def _warnings(response: Any) -> list[str]:
    return [
        message.message
        for message in get_messages(response.wsgi_request)
        if message.level_tag == "warning"
    ]


def test_saving_the_example_generator_creates_its_field_without_a_warning() -> None:
    registration = registration_save(
        registration=HandlerRegistration(name="teams", handler=TEAMS),
        values={"teams": ["example.com=web"]},
    )
    field = MetadataField.objects.get(name="team")
    assert (field.type, field.label) == ("string", "Team")
    assert "owns the certificate" in field.description
    assert registration.warnings == []
    # Saved again: the field it created agrees, nothing to say.
    assert (
        registration_save(registration=registration, values={"teams": ["x.com=x"]}).warnings == []
    )


def test_a_field_named_by_the_parameter_is_the_one_created() -> None:
    registration_save(
        registration=HandlerRegistration(name="owners", handler=TEAMS),
        values={"teams": ["example.com=web"], "field": "owner_team"},
    )
    assert MetadataField.objects.filter(name="owner_team").exists()
    assert not MetadataField.objects.filter(name="team").exists()


def test_an_existing_field_of_another_compatible_type_is_kept_and_warned_of() -> None:
    MetadataField.objects.create(name="team", type="text", label="Squad")
    registration = registration_save(
        registration=HandlerRegistration(name="teams", handler=TEAMS),
        values={"teams": ["example.com=web"]},
    )
    assert HandlerRegistration.objects.filter(name="teams").exists()
    field = MetadataField.objects.get(name="team")
    assert (field.type, field.label) == ("text", "Squad")  # the administrator's, untouched
    [warning] = registration.warnings
    assert "metadata field team" in warning
    assert "'Text (long)'" in warning and "'Text (one line)'" in warning
    assert "'Squad'" in warning and "'Team'" in warning


def test_an_incompatible_field_is_still_a_refusal() -> None:
    MetadataField.objects.create(name="team", type="boolean")
    with pytest.raises(ServiceError, match="team"):
        registration_save(
            registration=HandlerRegistration(name="teams", handler=TEAMS),
            values={"teams": ["example.com=web"]},
        )
    assert not HandlerRegistration.objects.exists()


def test_admin_creates_the_field_and_says_nothing_when_all_agree(admin_web: Client) -> None:
    response = admin_web.post(f"{ADD}?handler={TEAMS}", _generator_form())
    assert response.status_code == 302, response.content.decode()[:3000]
    assert MetadataField.objects.filter(name="team", type="string").exists()
    assert _warnings(response) == []


def test_admin_shows_a_warning_naming_the_field_that_disagrees(admin_web: Client) -> None:
    MetadataField.objects.create(name="team", type="text", description="Who to call.")
    response = admin_web.post(f"{ADD}?handler={TEAMS}", _generator_form(), follow=True)
    assert response.status_code == 200
    registration = HandlerRegistration.objects.get(name="teams")
    [warning] = _warnings(response)
    assert "metadata field team" in warning and "'Text (long)'" in warning
    assert "description differs" in warning
    page = response.content.decode()
    assert "metadata field team" in page  # shown on the page the admin lands on

    # Editing it again warns again, as long as the field disagrees.
    change = reverse("admin:workflows_handlerregistration_change", args=[registration.pk])
    response = admin_web.post(change, _generator_form(), follow=True)
    assert len(_warnings(response)) == 1
