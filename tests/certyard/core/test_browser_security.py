"""Browser security: a strict Content-Security-Policy, and settings for TLS behind a proxy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from certyard import settings as certyard_settings

ROOT = Path(__file__).resolve().parents[3]
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^>]*\sstyle=", re.IGNORECASE)


@pytest.fixture
def root(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_superuser("root", "root@example.test", "pw-7-long")


@pytest.fixture
def web(root: User) -> Client:
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(root)
    return client


def _assert_strict(response) -> None:
    policy = response["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy


def _assert_no_inline_code(html: str) -> None:
    # A JSON data block is not executed, so a CSP does not concern it.
    scripts = [tag for tag in INLINE_SCRIPT.findall(html) if 'type="application/json"' not in tag]
    assert scripts == []
    assert STYLE_ATTRIBUTE.findall(html) == []


@pytest.mark.django_db
def test_login_page_has_a_strict_policy_and_no_inline_code() -> None:
    response = Client(SERVER_NAME="127.0.0.1").get(reverse("login"))
    assert response.status_code == 200
    _assert_strict(response)
    _assert_no_inline_code(response.content.decode())


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url_name",
    ["console:dashboard", "console:store-list", "console:job-list", "console:certificate-list"],
)
def test_console_pages_have_a_strict_policy_and_no_inline_code(web: Client, url_name: str) -> None:
    response = web.get(reverse(url_name))
    assert response.status_code == 200
    _assert_strict(response)
    html = response.content.decode()
    _assert_no_inline_code(html)
    # htmx must not inject its indicator <style> (console.css carries the rules).
    assert '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false}\'>' in html


def test_console_css_has_the_htmx_indicator_rules() -> None:
    css = (ROOT / "static/certyard/console.css").read_text()
    assert ".htmx-indicator {" in css
    assert ".htmx-request .htmx-indicator" in css


@pytest.mark.django_db
def test_admin_pages_have_a_strict_policy_and_no_inline_code(web: Client, root: User) -> None:
    for url in [
        reverse("admin:index"),
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_user_change", args=[root.pk]),
        reverse("admin:fleet_orchestrator_changelist"),
    ]:
        response = web.get(url)
        assert response.status_code == 200, url
        _assert_strict(response)
        _assert_no_inline_code(response.content.decode())


@pytest.mark.django_db
def test_api_docs_load_their_script_from_a_url(web: Client) -> None:
    response = web.get(reverse("api-docs"))
    assert response.status_code == 200
    _assert_strict(response)
    html = response.content.decode()
    _assert_no_inline_code(html)
    # Swagger UI's assets are the offline sidecar's, served from our static files.
    sources = re.findall(r'<script src="([^"]+)"', html)
    assert any("drf_spectacular_sidecar/swagger-ui-dist/" in s for s in sources)
    assert all(s.startswith("/") for s in sources)
    (script_url,) = [s for s in sources if "script" in s.split("?", 1)[-1]]
    script = web.get(script_url.replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content
    # The page's only inline stylesheet is allowed by its hash, not by 'unsafe-inline'.
    style_src = next(
        d for d in response["Content-Security-Policy"].split("; ") if d.startswith("style-src")
    )
    assert style_src.startswith("style-src 'self' 'sha256-")


@pytest.mark.django_db
def test_json_responses_carry_the_policy_harmlessly(web: Client) -> None:
    response = web.get("/healthz")
    assert response["Content-Security-Policy"].startswith("default-src 'self'")


def test_embedded_defaults_are_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "CERTYARD_SECURE_COOKIES",
        "CERTYARD_HSTS_SECONDS",
        "CERTYARD_TRUST_PROXY_PROTO",
        "CERTYARD_SSL_REDIRECT",
    ]:
        monkeypatch.delenv(name, raising=False)
    assert certyard_settings.secure_cookies() is False
    assert certyard_settings.hsts_seconds() == 0
    assert certyard_settings.proxy_ssl_header() is None
    assert certyard_settings.ssl_redirect() is False


def test_settings_switch_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTYARD_SECURE_COOKIES", "true")
    monkeypatch.setenv("CERTYARD_HSTS_SECONDS", "31536000")
    monkeypatch.setenv("CERTYARD_TRUST_PROXY_PROTO", "yes")
    monkeypatch.setenv("CERTYARD_SSL_REDIRECT", "1")
    assert certyard_settings.secure_cookies() is True
    assert certyard_settings.hsts_seconds() == 31536000
    assert certyard_settings.proxy_ssl_header() == ("HTTP_X_FORWARDED_PROTO", "https")
    assert certyard_settings.ssl_redirect() is True
    monkeypatch.setenv("CERTYARD_SECURE_COOKIES", "false")
    monkeypatch.setenv("CERTYARD_HSTS_SECONDS", "0")
    assert certyard_settings.secure_cookies() is False
    assert certyard_settings.hsts_seconds() == 0


_DUMP = """
import json
from django.conf import settings as s
print(json.dumps({n: getattr(s, n) for n in [
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SAMESITE",
    "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY", "X_FRAME_OPTIONS"]}))
"""


def _settings_with(env: dict[str, str]) -> dict[str, object]:
    """The settings as a fresh process loads them with this environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CERTYARD_")}
    base |= {"DJANGO_SETTINGS_MODULE": "certyard.settings", "CERTYARD_SECRET_KEY": "test-key"}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT / "platform"), str(ROOT)])
    code = "import django; django.setup()\n" + _DUMP
    out = subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_settings_module_reads_the_environment() -> None:
    always = {
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "same-origin",
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
    }
    assert _settings_with({}) == always | {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_SSL_REDIRECT": False,
    }
    proxied = {
        "CERTYARD_SECURE_COOKIES": "true",
        "CERTYARD_HSTS_SECONDS": "63072000",
        "CERTYARD_TRUST_PROXY_PROTO": "true",
        "CERTYARD_SSL_REDIRECT": "true",
    }
    assert _settings_with(proxied) == always | {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 63072000,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_SSL_REDIRECT": True,
    }
