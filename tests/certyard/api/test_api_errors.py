"""Every error on the agent and admin APIs is the JSON error body, even those Django answers
before any view runs."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.certyard.conftest import ADMIN, AGENT, error_of


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
@pytest.mark.parametrize("path", [f"{AGENT}session", f"{AGENT}register", f"{ADMIN}stores/"])
def test_a_body_over_the_size_limit_is_a_json_400(path: str, superuser) -> None:
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(superuser)
    response = client.post(path, "{" + '"x": "' + "a" * 500 + '"}', content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


@pytest.mark.django_db
@pytest.mark.parametrize("path", [f"{AGENT}session", f"{ADMIN}certificates/"])
def test_a_bad_host_header_is_a_json_400(path: str) -> None:
    response = Client(HTTP_HOST="evil.example.test").get(path)

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_json_404() -> None:
    response = Client(SERVER_NAME="127.0.0.1").get(f"{AGENT}no-such-thing")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
