"""A real CFSSL CA for the tests: ``cfssl serve`` on the loopback, with a certificate database.

``cfssl_server(path)`` makes a CA with ``cfssl gencert -initca``, writes a signing
configuration, creates the SQLite certificate database CFSSL records what it signs in
(CFSSL ships no migration for it in the Debian package: :data:`CERTDB_SCHEMA` is the
schema its 1.2 release reads and writes), starts ``cfssl serve`` on a free port and stops
it (its whole process group) on exit.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.x509 import ocsp

#: The tables CFSSL 1.2 uses: the columns of its INSERTs, keyed as its UPDATEs look rows up.
CERTDB_SCHEMA = """
CREATE TABLE certificates (
    serial_number            TEXT NOT NULL,
    authority_key_identifier TEXT NOT NULL,
    ca_label                 TEXT,
    status                   TEXT NOT NULL,
    reason                   INTEGER,
    expiry                   TIMESTAMP,
    revoked_at               TIMESTAMP,
    pem                      TEXT NOT NULL,
    PRIMARY KEY (serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
    serial_number            TEXT NOT NULL,
    authority_key_identifier TEXT NOT NULL,
    body                     TEXT NOT NULL,
    expiry                   TIMESTAMP,
    PRIMARY KEY (serial_number, authority_key_identifier),
    FOREIGN KEY (serial_number, authority_key_identifier)
        REFERENCES certificates (serial_number, authority_key_identifier)
);
"""

#: The profile that only authsign may use, and its key (hex, as CFSSL's auth_keys take it).
AUTH_PROFILE = "authed"
AUTH_KEY = "6365727479617264" * 4

STARTUP_SECONDS = 15.0


@dataclass(frozen=True)
class CfsslServer:
    """A running ``cfssl serve`` and the files it uses."""

    url: str
    ca_pem: str
    ca_path: Path
    ca_key_path: Path
    certdb_path: Path | None  # None: started without a certificate database
    config: dict[str, Any]
    config_path: Path
    db_config_path: Path | None
    log_path: Path
    auth_key: str = AUTH_KEY
    auth_profile: str = AUTH_PROFILE

    def ocsp_statuses(self) -> dict[int, ocsp.OCSPSingleResponse]:
        """What CFSSL's own OCSP signer says of each certificate in the certdb, by serial.

        ``cfssl ocsprefresh`` signs a response for every certificate from the certdb's
        status, ``cfssl ocspdump`` prints them (base64, one a line): an independent reading
        of the revocations, through CFSSL's code rather than this test's SQL.
        """
        assert self.db_config_path is not None, "started without a certificate database"
        common = ["-db-config", str(self.db_config_path)]
        subprocess.run(
            [
                "cfssl",
                "ocsprefresh",
                *common,
                "-ca",
                str(self.ca_path),
                "-responder",
                str(self.ca_path),
                "-responder-key",
                str(self.ca_key_path),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        dumped = subprocess.run(
            ["cfssl", "ocspdump", *common],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        statuses: dict[int, ocsp.OCSPSingleResponse] = {}
        for line in dumped.split():
            response = ocsp.load_der_ocsp_response(base64.b64decode(line))
            for single in response.responses:
                statuses[single.serial_number] = single
        return statuses


def signing_config() -> dict[str, Any]:
    """Profiles ``default`` (TLS server, 90 days), ``client`` and ``authed`` (authsign only)."""
    return {
        "signing": {
            "default": {
                "expiry": "2160h",
                "usages": ["digital signature", "key encipherment", "server auth"],
            },
            "profiles": {
                "client": {
                    "expiry": "2160h",
                    "usages": ["digital signature", "key encipherment", "client auth"],
                },
                AUTH_PROFILE: {
                    "expiry": "720h",
                    "usages": ["digital signature", "key encipherment", "server auth"],
                    "auth_key": "certyard",
                },
            },
        },
        "auth_keys": {"certyard": {"type": "standard", "key": AUTH_KEY}},
    }


def certdb_create(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executescript(CERTDB_SCHEMA)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ca_create(directory: Path) -> tuple[Path, Path]:
    request = {
        "CN": "Certyard Test CFSSL CA",
        "key": {"algo": "ecdsa", "size": 256},
        "names": [{"O": "Certyard tests"}],
    }
    request_path = directory / "ca-csr.json"
    request_path.write_text(json.dumps(request))
    made = subprocess.run(
        ["cfssl", "gencert", "-initca", str(request_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # gencert prints {"cert", "key", "csr"}: what cfssljson would split into files.
    output = json.loads(made.stdout)
    ca_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    ca_path.write_text(output["cert"])
    key_path.write_text(output["key"])
    key_path.chmod(0o600)
    return ca_path, key_path


def _die_with_the_tests() -> None:
    """In the child: be sent SIGTERM when the test process dies without its cleanup.

    A run killed from outside (a timeout, ^C twice) runs no ``finally``; without this the
    server would outlive it, holding its port.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _answering(url: str, process: subprocess.Popen[bytes], log_path: Path) -> bool:
    """Wait until ``info`` answers; False if the port was taken (to try another)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            if "address already in use" in log:
                return False
            pytest.fail(f"cfssl serve exited ({process.returncode}):\n{log[-2000:]}")
        try:
            answer = httpx.post(f"{url}/api/v1/cfssl/info", json={}, timeout=2)
            if answer.status_code == 200 and answer.json().get("success"):
                return True
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.05)
    pytest.fail(f"cfssl serve did not answer within {STARTUP_SECONDS} s:\n{log_path.read_text()}")


@contextlib.contextmanager
def cfssl_server(
    directory: Path,
    *,
    certdb: bool = True,
    config: dict[str, Any] | None = None,
    quiet: bool = False,
) -> Iterator[CfsslServer]:
    """A CFSSL CA serving on 127.0.0.1 from files under ``directory``, stopped on exit.

    ``certdb``: record what it signs in a certificate database (the gateway tests read it;
    the benchmark measures CFSSL with and without one). ``config``: the signing
    configuration (:func:`signing_config` by default). ``quiet``: log warnings only, not a
    line per request (a benchmark would measure the logging).
    """
    if shutil.which("cfssl") is None:
        pytest.fail("cfssl is not installed: run `make system-deps`", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, key_path = _ca_create(directory)
    config = config if config is not None else signing_config()
    config_path = directory / "config.json"
    config_path.write_text(json.dumps(config))
    certdb_path: Path | None = None
    db_config_path: Path | None = None
    options = ["-loglevel", "3"] if quiet else []
    if certdb:
        certdb_path = directory / "certs.db"
        certdb_create(certdb_path)
        db_config_path = directory / "db-config.json"
        db_config = {"driver": "sqlite3", "data_source": str(certdb_path)}
        db_config_path.write_text(json.dumps(db_config))
        options += ["-db-config", str(db_config_path)]
    log_path = directory / "cfssl.log"
    for _attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    "cfssl",
                    "serve",
                    "-address",
                    "127.0.0.1",
                    "-port",
                    str(port),
                    "-ca",
                    str(ca_path),
                    "-ca-key",
                    str(key_path),
                    "-config",
                    str(config_path),
                    *options,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped whole
                preexec_fn=_die_with_the_tests,
            )
        try:
            if not _answering(url, process, log_path):
                continue
            yield CfsslServer(
                url=url,
                ca_pem=ca_path.read_text(),
                ca_path=ca_path,
                ca_key_path=key_path,
                certdb_path=certdb_path,
                config=config,
                config_path=config_path,
                db_config_path=db_config_path,
                log_path=log_path,
            )
            return
        finally:
            _stop(process)
    pytest.fail("cfssl serve found no free port in 3 attempts")
