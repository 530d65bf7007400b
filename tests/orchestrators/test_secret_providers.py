"""Secrets resolved on the agent: the reference syntax, the built-in providers (env, file,
command) and the example ``pass`` provider against the real `pass`, and a job's references
replaced before a store type sees them; failures name the reference, never a value."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from certyard_examples.pass_secrets import PassProvider

from orchestrators.agent.secret_providers import job_secrets_resolve
from orchestrators.protocol import JobType
from orchestrators.sdk import JobConfiguration, StoreConfiguration
from orchestrators.secret_refs import (
    CommandProvider,
    FileProvider,
    SecretContext,
    SecretUnavailable,
    is_reference,
    load_secret_providers,
    reference_parse,
)
from tests.servers.password_store import password_store

CONTEXT = SecretContext()


def test_references_parse_or_say_how_they_should_look() -> None:
    reference = reference_parse("ref+agent:command:pass:web/p12")
    assert (reference.scheme, reference.name) == ("command", "pass:web/p12")
    assert str(reference) == "ref+agent:command:pass:web/p12"
    on_platform = reference_parse("ref+platform:env:GATEWAY_TOKEN")
    assert (on_platform.side, on_platform.scheme, on_platform.name) == (
        "platform",
        "env",
        "GATEWAY_TOKEN",
    )
    assert is_reference("ref+agent:") and not is_reference("hunter2")
    assert is_reference("ref+platform:x", "platform") and not is_reference(
        "ref+platform:x", "agent"
    )
    for bad in ("ref+agent:", "ref+agent:ENV:X", "ref+agent:env:", "ref+agent:env:a\nb"):
        with pytest.raises(ValueError, match="ref\\+agent:<provider>:<name>"):
            reference_parse(bad)


def test_the_installed_providers_include_the_example() -> None:
    providers = load_secret_providers()
    assert {"env", "file", "command", "pass"} <= set(providers)
    assert providers["pass"] is PassProvider


def _job(password: str | None, **properties: object) -> JobConfiguration:
    return JobConfiguration(
        job_id="j1",
        type=JobType.INVENTORY,
        attempt=1,
        store=StoreConfiguration("s1", "PKCS12", "here", "/srv/a.p12", dict(properties), password),
        payload={"entry_parameters": {"entry_password": "ref+agent:env:ENTRY_PASS"}},
    )


def test_a_jobs_references_are_replaced_and_its_values_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORE_PASS", "store-secret-1")
    monkeypatch.setenv("ENTRY_PASS", "entry-secret-2")
    job = _job("ref+agent:env:STORE_PASS", profile="aes256", token="ref+agent:env:ENTRY_PASS")

    resolved = job_secrets_resolve(job, load_secret_providers(), CONTEXT)

    assert resolved.store.password == "store-secret-1"
    assert resolved.store.properties == {"profile": "aes256", "token": "entry-secret-2"}
    assert resolved.payload["entry_parameters"] == {"entry_password": "entry-secret-2"}
    plain = _job("a-plain-password")
    plain = JobConfiguration(plain.job_id, plain.type, 1, plain.store)
    assert job_secrets_resolve(plain, load_secret_providers(), CONTEXT) is plain


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("ref+agent:env:NOT_THERE", "store password: ref+agent:env:NOT_THERE is unavailable: "
         "environment variable NOT_THERE is not set"),
        ("ref+agent:vault:kv/p12", "names provider 'vault', which the agent does not have"),
        ("ref+agent:Env:X", "store password: a secret reference is ref+agent:<provider>:<name>"),
        ("ref+agent:command:nope:x", "no secret command 'nope' on this machine"),
    ],
)  # fmt: skip
def test_a_reference_that_cannot_be_resolved_is_named_in_the_error(
    password: str, message: str
) -> None:
    with pytest.raises(SecretUnavailable) as raised:
        job_secrets_resolve(_job(password), load_secret_providers(), CONTEXT)
    assert message in str(raised.value)


def test_a_file_secret_must_be_the_agents_alone(tmp_path: Path) -> None:
    secret = tmp_path / "p12.pass"
    secret.write_text("file-secret-3\nignored second line\n")
    secret.chmod(0o600)
    assert FileProvider().resolve(str(secret), CONTEXT) == "file-secret-3"

    secret.chmod(0o640)
    with pytest.raises(SecretUnavailable, match="mode 0640: others may read it"):
        FileProvider().resolve(str(secret), CONTEXT)
    secret.chmod(0o600)
    link = tmp_path / "link.pass"
    link.symlink_to(secret)
    with pytest.raises(SecretUnavailable, match="cannot open"):
        FileProvider().resolve(str(link), CONTEXT)
    with pytest.raises(SecretUnavailable, match="not an absolute path"):
        FileProvider().resolve("p12.pass", CONTEXT)
    with pytest.raises(SecretUnavailable, match="No such file"):
        FileProvider().resolve(str(tmp_path / "absent"), CONTEXT)


def test_a_command_secret_runs_only_what_the_machine_configured() -> None:
    printer = (sys.executable, "-c", "import sys; print('cmd-' + sys.argv[1]); print('x')")
    failing = (
        sys.executable,
        "-c",
        "import sys; print('leaked-output'); sys.stderr.write('no such entry\\n'); sys.exit(3)",
    )
    sleeper = (sys.executable, "-c", "import time; time.sleep(5)")
    context = SecretContext(
        commands={"printer": printer, "failing": failing, "sleeper": sleeper},
        timeout_seconds=1,
    )

    assert CommandProvider().resolve("printer:web/p12", context) == "cmd-web/p12"
    with pytest.raises(SecretUnavailable) as failed:
        CommandProvider().resolve("failing:web", context)
    assert "exit 3" in str(failed.value) and "no such entry" in str(failed.value)
    assert "leaked-output" not in str(failed.value)  # what it printed is never repeated
    with pytest.raises(SecretUnavailable, match="did not answer within 1 s"):
        CommandProvider().resolve("sleeper:x", context)
    with pytest.raises(SecretUnavailable, match="give the argument"):
        CommandProvider().resolve("printer", context)


def test_the_pass_example_reads_the_real_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with password_store(tmp_path) as store:
        store.insert("certyard/web-p12", "pass-secret-4")
        for key, value in store.env.items():
            monkeypatch.setenv(key, value)
        _pass_resolves(monkeypatch)


def _pass_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PassProvider().resolve("certyard/web-p12", CONTEXT) == "pass-secret-4"
    with pytest.raises(SecretUnavailable, match="pass has no readable entry certyard/absent"):
        PassProvider().resolve("certyard/absent", CONTEXT)
    with pytest.raises(SecretUnavailable, match="is not a pass entry name"):
        PassProvider().resolve("../etc/passwd", CONTEXT)
    # The same through a job, as the agent resolves it.
    monkeypatch.setenv("ENTRY_PASS", "entry-secret-5")
    job = job_secrets_resolve(
        _job("ref+agent:pass:certyard/web-p12"), load_secret_providers(), CONTEXT
    )
    assert job.store.password == "pass-secret-4"
