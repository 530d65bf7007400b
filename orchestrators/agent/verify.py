"""Verified deployment: after a write, run the store's local reload command, then check that
the store's TLS endpoint serves the certificate just written.

Reload commands come from the agent's own configuration (``reload_commands`` in
``agent.json``, set with ``certyard-orchestrator reload``), never from the platform: a platform
that could name a command would run anything on every machine it manages. A command runs
without a shell, with a time limit; only the tail of its output is kept (it may be long).

The endpoint check compares fingerprints, so it validates no chain: the point is "is the new
certificate served", not "is it trusted", and a private CA's certificate must pass too.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

RELOAD_TIMEOUT_SECONDS = 60.0
OUTPUT_TAIL_CHARS = 2000
# Reloads are asynchronous (nginx's workers pick the new certificate up a moment later):
# the endpoint is tried again until it serves the new one or this much time has passed.
VERIFY_SECONDS = 10.0
VERIFY_INTERVAL_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 5.0


def reload_command_for(
    store_path: str, reload_commands: Mapping[str, Sequence[str]]
) -> tuple[str, ...] | None:
    """The reload command configured for the store at ``store_path`` (by its real path)."""
    argv = reload_commands.get(os.path.realpath(store_path))
    return tuple(argv) if argv else None


def _tail(text: str) -> str:
    return text if len(text) <= OUTPUT_TAIL_CHARS else "…" + text[-(OUTPUT_TAIL_CHARS - 1) :]


def reload_run(argv: Sequence[str], *, timeout: float = RELOAD_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Run ``argv`` (no shell); ``{"ran": True, "exit_code": int|None, "output": tail}``.

    ``exit_code`` is None when the command could not be started or ran out of time; the
    output then says why. Standard output and standard error are kept together.
    """
    try:
        completed = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.output.decode(errors="replace") if exc.output else ""
        return {
            "ran": True,
            "exit_code": None,
            "output": _tail(f"{partial}\n[timed out after {timeout:.0f} s]".lstrip()),
        }
    except OSError as exc:
        return {"ran": True, "exit_code": None, "output": _tail(f"cannot run {argv[0]}: {exc}")}
    return {
        "ran": True,
        "exit_code": completed.returncode,
        "output": _tail(completed.stdout.decode(errors="replace")),
    }


def reload_failed_message(reload: dict[str, Any]) -> str:
    """The warning for a reload command that failed, with the end of its output."""
    code = reload.get("exit_code")
    how = f"exit {code}" if code is not None else "did not finish"
    output = str(reload.get("output") or "").strip()[-300:]
    return f"written; the reload command failed ({how})" + (f": {output}" if output else "")


def served_leaf_sha256(
    host: str, port: int, sni: str | None = None, *, timeout: float = CONNECT_TIMEOUT_SECONDS
) -> str:
    """The SHA-256 (hex) of the leaf certificate ``host:port`` serves for ``sni``.

    Raises:
        OSError: no TLS connection (``ssl.SSLError`` is one), or no certificate served.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # A fingerprint comparison, not a trust decision (see the module docstring).
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni or host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError("the endpoint served no certificate")
    return hashlib.sha256(der).hexdigest()


def endpoint_verify(
    endpoint: Mapping[str, Any],
    expected_sha256: str,
    *,
    within: float = VERIFY_SECONDS,
    interval: float = VERIFY_INTERVAL_SECONDS,
) -> dict[str, Any]:
    """Connect to ``endpoint`` (``{"host", "port", "sni"}``) until it serves the certificate
    whose SHA-256 is ``expected_sha256`` or ``within`` seconds passed; the evidence::

        {"endpoint": "host:port", "sni", "served_sha256", "expected_sha256", "served": bool,
         "error": str|None}
    """
    host = str(endpoint.get("host") or "")
    sni = str(endpoint.get("sni") or "") or None
    expected = expected_sha256.lower()
    evidence: dict[str, Any] = {
        "endpoint": f"{host}:{endpoint.get('port')}",
        "sni": sni,
        "served_sha256": None,
        "expected_sha256": expected,
        "served": False,
        "error": None,
    }
    try:
        port = int(endpoint.get("port") or 0)
    except (TypeError, ValueError):
        port = 0
    if not host or not 0 < port < 65536:
        evidence["error"] = "the endpoint has no valid host and port"
        return evidence
    deadline = time.monotonic() + within
    while True:
        try:
            served = served_leaf_sha256(host, port, sni)
            evidence["served_sha256"], evidence["error"] = served, None
            if served == expected:
                evidence["served"] = True
                return evidence
        except (OSError, ValueError) as exc:
            evidence["error"] = f"{type(exc).__name__}: {exc}"[:500]
        if time.monotonic() + interval > deadline:
            return evidence
        time.sleep(interval)
