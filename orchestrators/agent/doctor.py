"""``certyard-orchestrator doctor``: is this agent ready to work? Each check says ok, a
warning, or a failure with what to do.

It checks, in order: the configuration (``agent.json`` readable, the folder 0700, the key
0600 and loadable), the client certificate (present, not expired), the platform (reached,
and the agent's key accepted: it opens a real session, so a wrong URL, a TLS problem, a
reset or revoked identity and a pending approval are each named), the store roots (each an
existing folder the agent can read), what TLS scans may reach, the store types (none
broken) and the secret providers and commands at hand. A failure is something the agent
cannot work around; a warning is something that limits it (no store root yet, a
certificate that expires soon).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from orchestrators.agent.client import (
    IdentityRejected,
    NotApproved,
    PlatformClient,
    PlatformError,
    PlatformUnavailable,
)
from orchestrators.agent.config import AgentConfig, ConfigError, Guards, load_config
from orchestrators.agent.store_types import store_types_report
from orchestrators.secret_refs import load_secret_providers

OK, WARNING, FAILURE = "ok", "warn", "FAIL"
# A client certificate this close to its end is worth a warning (the agent renews it itself
# once the platform says so; a warning here means that has not happened yet).
EXPIRY_WARNING = dt.timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: ``level`` is ok, warn or FAIL; ``text`` says what and why."""

    level: str
    topic: str
    text: str


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _configuration(config: AgentConfig) -> Iterator[Finding]:
    folder_mode = _mode(config.config_dir)
    if folder_mode & 0o077:
        yield Finding(
            FAILURE,
            "configuration",
            f"{config.config_dir} is mode {folder_mode:04o}: others may read the agent's key; "
            f"run `chmod 700 {config.config_dir}`",
        )
    key_mode = _mode(config.key_path)
    if key_mode & 0o077:
        yield Finding(
            FAILURE,
            "configuration",
            f"{config.key_path} is mode {key_mode:04o}; run `chmod 600 {config.key_path}`",
        )
    try:
        config.private_key()
    except (OSError, ValueError, ConfigError) as exc:
        yield Finding(FAILURE, "configuration", f"the agent's key does not load: {exc}")
        return
    if not folder_mode & 0o077 and not key_mode & 0o077:
        yield Finding(
            OK,
            "configuration",
            f"{config.config_dir}: orchestrator {config.name} ({config.orchestrator_id}), "
            f"machine {config.client_machine}",
        )


def _certificate(config: AgentConfig, now: dt.datetime) -> Iterator[Finding]:
    if not config.cert_path.exists():
        yield Finding(
            WARNING,
            "certificate",
            "no client certificate: the platform issued none at registration (an older "
            "platform, or a registration still waiting for approval)",
        )
        return
    try:
        certificate = x509.load_pem_x509_certificate(config.cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        yield Finding(FAILURE, "certificate", f"{config.cert_path} is unreadable: {exc}")
        return
    ends = certificate.not_valid_after_utc
    if ends <= now:
        yield Finding(
            FAILURE,
            "certificate",
            f"the client certificate expired on {ends:%Y-%m-%d %H:%M} UTC: register again",
        )
    elif ends - now < EXPIRY_WARNING:
        yield Finding(
            WARNING,
            "certificate",
            f"the client certificate expires on {ends:%Y-%m-%d %H:%M} UTC; a running agent "
            "renews it when the platform says so",
        )
    else:
        yield Finding(OK, "certificate", f"valid until {ends:%Y-%m-%d} UTC")


def _platform(config: AgentConfig) -> Iterator[Finding]:
    try:
        with PlatformClient(
            config.platform_url,
            verify_tls=config.verify_tls,
            orchestrator_id=config.orchestrator_id,
            private_key=config.private_key(),
        ) as client:
            status = client.open_session()
    except NotApproved:
        yield Finding(
            WARNING,
            "platform",
            f"{config.platform_url} accepts the key, but the orchestrator is not approved yet: "
            "an administrator approves it in the console (Orchestrators)",
        )
    except IdentityRejected as exc:
        yield Finding(
            FAILURE,
            "platform",
            f"{config.platform_url} no longer accepts this agent's identity ({exc.message}): "
            "register again",
        )
    except PlatformUnavailable as exc:
        yield Finding(FAILURE, "platform", f"cannot reach {config.platform_url}: {exc}")
    except PlatformError as exc:
        yield Finding(FAILURE, "platform", f"{config.platform_url} refused: {exc.message}")
    except (OSError, ValueError) as exc:  # an unreadable CA bundle, a malformed URL
        yield Finding(FAILURE, "platform", f"cannot connect to {config.platform_url}: {exc}")
    else:
        yield Finding(
            OK, "platform", f"{config.platform_url} reached; key accepted; status {status}"
        )


def _roots(guards: Guards) -> Iterator[Finding]:
    if not guards.store_roots:
        yield Finding(
            WARNING,
            "store roots",
            "none: no store can be read until you add one (`certyard-orchestrator roots "
            "--add PATH`)",
        )
    for root in guards.store_roots:
        path = Path(root)
        if not path.is_dir():
            yield Finding(FAILURE, "store roots", f"{root} is not a folder (any more)")
        elif not os.access(path, os.R_OK | os.X_OK):
            yield Finding(FAILURE, "store roots", f"{root} cannot be read by this user")
        else:
            yield Finding(OK, "store roots", root)
    if guards.scan_allowance.empty:
        yield Finding(OK, "TLS scans", "none allowed (`certyard-orchestrator scan-allow`)")
    else:
        yield Finding(OK, "TLS scans", guards.scan_allowance.describe())


def _store_types() -> Iterator[Finding]:
    reports = store_types_report()
    for report in reports:
        if report.problems:
            yield Finding(
                FAILURE,
                "store types",
                f"{report.name}: {'; '.join(report.problems)}",
            )
    loaded = sorted(r.name for r in reports if not r.problems and not r.refused)
    yield Finding(OK, "store types", ", ".join(loaded) or "none")


def _secrets(config: AgentConfig) -> Iterator[Finding]:
    providers = ", ".join(sorted(load_secret_providers()))
    commands = ", ".join(sorted(config.secret_commands)) or "none"
    yield Finding(OK, "secrets", f"providers {providers}; secret commands {commands}")


def doctor_findings(config_dir: Path, *, now: dt.datetime | None = None) -> list[Finding]:
    """Every check's finding for the agent configured in ``config_dir``."""
    try:
        config = load_config(config_dir)
    except ConfigError as exc:
        return [Finding(FAILURE, "configuration", str(exc))]
    findings = list(_configuration(config))
    findings.extend(_certificate(config, now or dt.datetime.now(dt.UTC)))
    if not any(f.level == FAILURE for f in findings):
        findings.extend(_platform(config))
    findings.extend(_roots(Guards.of(config)))
    findings.extend(_store_types())
    findings.extend(_secrets(config))
    return findings
