"""The certyard pytest plugin as a third party meets it: a test folder of its own, outside
the repository, with nothing but Certyard and the examples installed.

Each test writes a small project into pytester's temporary folder and runs pytest on it in
a process of its own (Django is set up once per process), with the environment a third
party has: no ``DJANGO_SETTINGS_MODULE``, no data directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "extending.md"

pytest_plugins = ["pytester"]

# A third party's test module: only certyard.testing, handlers.* and its own package (the
# examples play that part).
THIRD_PARTY_TESTS = """
import json
import os

import pytest

from certyard.testing import (
    RecordingPlatform,
    certificate_info,
    expiring_event,
    handler_make,
    job_complete_context,
    make_certificate,
    registration_request,
)
from certyard_examples.audit_log import ExpiryAuditLog
from certyard_examples.inventory_retry import RetryFailedInventory
from certyard_examples.team_metadata import TeamFromDnsSuffix
from handlers.base import EventHandler, HandlerResult, Verdict
from handlers.parameters import ParameterError


def test_the_plugin_configured_django_with_a_temporary_data_directory():
    from django.conf import settings

    assert os.environ["DJANGO_SETTINGS_MODULE"] == "certyard.settings"
    assert "certyard-test-" in os.environ["CERTYARD_DATA_DIR"]
    assert str(settings.DATA_DIR) == os.environ["CERTYARD_DATA_DIR"]


def test_a_generator_without_the_platform():
    generator = handler_make(
        TeamFromDnsSuffix, teams=["example.com=web", "pay.example.com=payments"]
    )
    info = certificate_info(make_certificate("api.pay.example.com"))
    assert generator.generate(info) == {"team": "payments"}


def test_a_job_complete_handler_with_the_recording_platform():
    handler = handler_make(RetryFailedInventory, delay_minutes=5)
    job = job_complete_context(outcome="failure", final=True, message="store unreachable")
    platform = RecordingPlatform()
    handler.handle(job, platform)
    [scheduled] = platform.scheduled_jobs
    assert scheduled["store_id"] == job.store["id"]
    assert scheduled["job_type"] == "inventory"
    assert scheduled["delay_seconds"] == 300


def test_bad_values_are_refused_as_the_admin_form_refuses_them():
    with pytest.raises(ParameterError) as refused:
        handler_make(RetryFailedInventory, delay_minutes=0)
    assert "delay_minutes" in refused.value.errors


def test_a_generator_through_the_platform(certyard_register, certyard_invoke):
    registration = certyard_register(
        "example.team_from_dns", teams=["example.com=web", "pay.example.com=payments"]
    )
    batch = [
        certificate_info(make_certificate("api.pay.example.com")),
        certificate_info(make_certificate("www.example.com")),
        certificate_info(make_certificate("elsewhere.test")),
    ]
    result = certyard_invoke(registration, batch)
    assert result.ok, result.error
    assert result.result == [{"team": "payments"}, {"team": "web"}, {}]
    assert result.run.state == "succeeded"
    assert result.run.message == "2 values set on 3 certificates"


def test_an_expiry_handler_through_the_platform(certyard_register, certyard_invoke, tmp_path):
    log = tmp_path / "expiring.jsonl"
    registration = certyard_register(ExpiryAuditLog, path=str(log), quiet_above_days=10)
    certificate = make_certificate("www.example.com", days=20)
    result = certyard_invoke(registration, expiring_event(certificate, 30))
    assert result.ok, result.error
    assert result.run.output["context_updates"] == {"suppress_email": True}
    line = json.loads(log.read_text().splitlines()[0])
    assert line["sha256"] == certificate.sha256
    assert line["days"] == 30


def test_a_job_complete_handler_through_the_platform(
    certyard_register, certyard_invoke, certyard_platform
):
    registration = certyard_register(
        "example.retry_failed_inventory", delay_minutes=5, options={"job_types": ["inventory"]}
    )
    job = job_complete_context(outcome="failure", final=True, message="store unreachable")
    result = certyard_invoke(registration, job)
    assert result.ok, result.error
    [scheduled] = certyard_platform.scheduled_jobs
    assert scheduled["store_id"] == job.store["id"]
    assert result.actions == certyard_platform.actions
    assert result.run.output["actions"] == certyard_platform.actions


def test_a_registration_handler_through_the_platform(certyard_register, certyard_invoke):
    registration = certyard_register("example.agent_identity", environments=["prod"])
    allowed = certyard_invoke(
        registration, registration_request(name="web-1", token_labels=("environment=prod",))
    )
    assert allowed.ok, allowed.error
    assert allowed.result.verdict == Verdict.ALLOW
    assert allowed.result.metadata == {"environment": "prod"}
    deferred = certyard_invoke(
        registration, registration_request(name="web-1", csr_common_name="someone-else")
    )
    assert deferred.result.verdict == Verdict.DEFER


class NotInstalled(EventHandler):
    def handle(self, event):
        return HandlerResult()


def test_a_class_no_package_declares_is_named(certyard_register):
    with pytest.raises(LookupError, match="not declared as an entry point"):
        certyard_register(NotInstalled)
"""


@pytest.fixture
def third_party(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project folder with no Django configuration, run as a third party runs it."""
    for name in (
        "DJANGO_SETTINGS_MODULE",
        "CERTYARD_DATA_DIR",
        "CERTYARD_EXTRA_HANDLER_GROUPS",
        "CERTYARD_EXTRA_STORE_TYPE_GROUPS",
        "DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return pytester


def _guide_test_file() -> str:
    """The test file of the guide's "Test your extension" section."""
    found = re.search(
        r"^```python file=tests/test_extension\.py\n(.*?)^```$", GUIDE.read_text(), re.M | re.S
    )
    assert found, "docs/extending.md has no test_extension.py block"
    return found.group(1)


def test_a_third_party_project_tests_the_examples_with_the_kit(third_party):
    third_party.makepyfile(test_acme=THIRD_PARTY_TESTS)
    # The guide's file, as a reader copies it.
    third_party.mkdir("tests")
    (third_party.path / "tests" / "test_extension.py").write_text(_guide_test_file())
    result = third_party.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=9 + 5)
    result.stdout.fnmatch_lines(["certyard: DJANGO_SETTINGS_MODULE=certyard.settings*"])


def test_a_project_that_configures_django_is_left_alone(third_party):
    # Its own settings module (Certyard's, with one change), named in its pytest ini.
    third_party.makepyfile(
        acme_settings="from certyard.settings import *  # noqa: F403\nACME = True\n"
    )
    third_party.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = acme_settings\npythonpath = .\n")
    third_party.makepyfile(
        test_settings="""
import os

def test_its_settings_stand():
    from django.conf import settings

    assert os.environ["DJANGO_SETTINGS_MODULE"] == "acme_settings"
    assert settings.ACME is True
    assert "CERTYARD_DATA_DIR" not in os.environ
"""
    )
    result = third_party.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "certyard: DJANGO_SETTINGS_MODULE" not in result.stdout.str()
