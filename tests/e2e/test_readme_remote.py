"""The README's "Run an agent on another machine", run as written (issue 17).

The commands are read from the README's fenced block; only its placeholders are replaced:
the public host (``certyard.example.com``) by this machine's own non-loopback IPv4
address, the port (``8000``) by a free one, and the paths (the agent's virtual
environment, its store roots) by temporary ones. Then, as the README says: `make run`
listening on every interface, `make agent-wheel` building the agent's package, which is
copied to the "machine" (a folder), installed into a fresh virtual environment, registered
with the token on standard input, checked by `doctor`, approved (API), a store added and
inventoried, all through the non-loopback address; and a certificate issued by a built-in
CA names its CRL and OCSP responder under ``CERTYARD_PUBLIC_URL``.

Traffic stays on this machine: the address is one of its own interfaces (checked by
binding to it), which the kernel delivers locally.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.certs import csr_for, issue
from tests.e2e.conftest import MANAGE, ROOT, _free_port, file_store_created, wait_for

pytestmark = pytest.mark.e2e

SECTION = "## Run an agent on another machine"
PUBLIC_HOST = "certyard.example.com"
PORT = "8000"
AGENT_VENV = "/opt/certyard-agent"
ROOTS = ("/etc/ssl", "/opt/app/tls")
AGENT_NAME = "web-01"


def readme_commands() -> list[str]:
    """The commands of the README section's first ``sh`` block, as a shell reads them:
    continuation lines joined, comments and blank lines left out."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the section has no sh block"
    joined = block.group(1).replace("\\\n", " ")
    return [
        " ".join(line.split())
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def this_machines_ipv4() -> str:
    """A non-loopback IPv4 address of this machine (``hostname -I``), proved local by
    binding to it."""
    listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    for candidate in listed.stdout.split():
        if ":" in candidate or candidate.startswith("127."):
            continue
        with socket.socket() as sock:
            try:
                sock.bind((candidate, 0))
            except OSError:
                continue
        return candidate
    pytest.fail("this machine has no non-loopback IPv4 address (hostname -I)")


def substituted(command: str, replacements: dict[str, str]) -> str:
    for placeholder, value in replacements.items():
        command = command.replace(placeholder, value)
    return re.sub(rf"\b{PORT}\b", replacements[PORT], command)


def _stop_group(process: subprocess.Popen, signum: int, timeout: float) -> None:
    """Signal the process's group (as Ctrl-C does in a terminal); SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Background processes the test starts (each in a session of its own); stopped at the
    end, as Ctrl-C would, whatever happened."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in reversed(processes):
        _stop_group(process, signal.SIGINT, timeout=45)


def test_the_readme_remote_section_works_as_written(
    tmp_path: Path, started: list[subprocess.Popen]
) -> None:
    address = this_machines_ipv4()
    port = str(_free_port())
    public_url = f"http://{address}:{port}"
    venv = tmp_path / "agent-venv"
    roots = [tmp_path / "roots" / "etc-ssl", tmp_path / "roots" / "app-tls"]
    replacements = {
        PUBLIC_HOST: address,
        AGENT_VENV: str(venv),
        ROOTS[0]: str(roots[0]),
        ROOTS[1]: str(roots[1]),
        PORT: port,
    }
    written = readme_commands()
    commands = [substituted(command, replacements) for command in written]
    assert len(commands) == 7, written
    make_run, agent_wheel, make_venv, install, register, doctor, run = commands
    assert make_run.endswith("make run") and "CERTYARD_HOST=0.0.0.0" in make_run
    assert f"CERTYARD_PUBLIC_URL={public_url}" in make_run
    assert agent_wheel == "make agent-wheel"
    assert install.endswith("pip install ./certyard_agent-0.1.0-py3-none-any.whl")
    assert doctor.endswith("certyard-orchestrator doctor")
    assert "--token -" in register and "--store-root" in register
    assert run.endswith("certyard-orchestrator run")

    # --- The platform: `make run`, as written, in this checkout -------------------------
    data_dir = tmp_path / "var"
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CERTYARD_") and k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    platform_env = {
        **base_env,
        "CERTYARD_DATA_DIR": str(data_dir),
        "CERTYARD_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    platform_log = tmp_path / "make-run.log"
    platform = subprocess.Popen(
        ["bash", "-c", make_run],
        cwd=ROOT,
        env=platform_env,
        stdout=platform_log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started.append(platform)

    def log() -> str:
        return platform_log.read_text(errors="replace")

    def password_shown() -> str | None:
        if platform.poll() is not None:
            raise AssertionError(f"make run exited while starting:\n{log()[-4000:]}")
        found = re.search(r"Log in as 'admin' with the password: (\S+)", log())
        return found.group(1) if found else None

    password = wait_for(password_shown, timeout=240, what=f"the banner\n{log()[-3000:]}")
    text = log()
    banner_at = text.index(f"Certyard is running at {public_url}/")
    assert text.index("with the password:") > banner_at, "the password comes after the banner"
    assert f"certyard-orchestrator register --url {public_url} --token -" in text
    assert f"(listening on 0.0.0.0:{port})" in text
    # gunicorn says where it listens; nothing of ours advertises the wildcard.
    assert "http://0.0.0.0" not in text[banner_at:] and "DisallowedHost" not in text
    password_file = data_dir / "admin-password.txt"
    assert str(password_file) in text[banner_at:]
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.read_text().strip() == password

    # The printed password logs in, at the public address.
    with httpx.Client(base_url=public_url, timeout=30, follow_redirects=True) as console:
        console.get("/login/")
        answer = console.post(
            "/login/",
            data={
                "username": "admin",
                "password": password,
                "csrfmiddlewaretoken": console.cookies["csrftoken"],
            },
            headers={"Referer": f"{public_url}/login/"},
        )
        assert answer.status_code == 200 and "/login/" not in str(answer.url), answer.text[:300]

    # An API token for the test, as the README's "API tokens" says.
    token_file = tmp_path / "api-token"
    subprocess.run(
        [*MANAGE, "certyard_bootstrap", "--api-token-file", str(token_file)],
        cwd=ROOT,
        env=platform_env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    api = httpx.Client(
        base_url=f"{public_url}/api/v1/",
        headers={"Authorization": f"Token {token_file.read_text().strip()}"},
        timeout=30,
    )
    made = api.post("registration-tokens/", json={"description": "README remote section"})
    assert made.status_code == 201, made.text
    registration_token = made.json()["token"]

    # --- The agent's package, built on the platform's side and copied over ----------------
    # As a person types it: not inside `make test`'s own make (which would add its
    # "Entering directory" lines).
    shell_env = {k: v for k, v in base_env.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    built = subprocess.run(
        ["bash", "-c", agent_wheel],
        cwd=ROOT,
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheel = Path(built.stdout.strip().splitlines()[-1])
    assert wheel.suffix == ".whl", built.stdout
    assert wheel.name == "certyard_agent-0.1.0-py3-none-any.whl", built.stdout
    machine = tmp_path / "machine"
    machine.mkdir()
    shutil.copy(ROOT / wheel if not wheel.is_absolute() else wheel, machine / wheel.name)

    # --- The managed machine: install, register, run --------------------------------------
    agent_env = {
        **{k: v for k, v in base_env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        "HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
    }
    (tmp_path / "home").mkdir()
    for command in (make_venv, install):
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=machine,
            env=agent_env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert (venv / "bin" / "certyard-orchestrator").exists()

    for root in roots:  # the reader's folders exist: /etc/ssl, /opt/app/tls
        root.mkdir(parents=True)
    registered = subprocess.run(
        ["bash", "-c", register],
        cwd=machine,
        env=agent_env,
        input=f"{registration_token}\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert registration_token not in registered.stdout + registered.stderr
    config = json.loads(
        (tmp_path / "home" / ".config" / "certyard-orchestrator" / "agent.json").read_text()
    )
    assert config["platform_url"] == public_url
    checked = subprocess.run(
        ["bash", "-c", doctor],
        cwd=machine,
        env=agent_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "platform:" in checked.stdout and "FAIL" not in checked.stdout

    listed = api.get("orchestrators/", params={"page_size": 500}).json()["results"]
    orchestrator = next(o for o in listed if o["name"] == AGENT_NAME)
    # It came in through the non-loopback address, not 127.0.0.1.
    assert orchestrator["source_address"] == address
    assert api.post(f"orchestrators/{orchestrator['id']}/approve/").status_code == 200

    agent_log = tmp_path / "agent.log"
    agent = subprocess.Popen(
        ["bash", "-c", run],
        cwd=machine,
        env=agent_env,
        stdout=agent_log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started.append(agent)

    # --- A store under a root, inventoried -------------------------------------------------
    (roots[0] / "site.pem").write_text(issue("site.remote.e2e.test", days=60).pem)
    store = file_store_created(api, orchestrator, roots[0])
    job_id = api.post(f"stores/{store['id']}/inventory-now/").json()["id"]

    def job_finished() -> dict | None:
        if agent.poll() is not None:
            raise AssertionError(f"the agent exited:\n{agent_log.read_text()[-3000:]}")
        job = api.get(f"jobs/{job_id}/").json()
        return job if job["state"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(
        job_finished, timeout=120, what=f"the inventory\n{agent_log.read_text()[-2000:]}"
    )
    assert job["state"] == "succeeded", job
    found = api.get("certificates/", params={"page_size": 500, "store": store["id"]})
    assert found.status_code == 200, found.text
    names = json.dumps(found.json()["results"])
    assert "site.remote.e2e.test" in names

    # --- Issued certificates point relying parties at CERTYARD_PUBLIC_URL -----------------
    created = api.post("cas/", json={"name": "README Remote CA", "key_algorithm": "EC-P256"})
    assert created.status_code == 201, created.text
    ca = created.json()
    assert ca["urls"]["crl_url"].startswith(f"{public_url}/pki/")
    template = subprocess.run(
        [
            *MANAGE,
            "shell",
            "-c",
            "from certyard.enrollment.models import Template\n"
            f"t = Template(name='remote-web', ca_id={ca['id']!r}, "
            "allowed_domains=['remote.e2e.test'], validity_days=30)\n"
            "t.full_clean()\n"
            "t.save()\n",
        ],
        cwd=ROOT,
        env=platform_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert template.returncode == 0, template.stdout + template.stderr
    issued = api.post(
        "enrollments/", json={"template": "remote-web", "csr": csr_for("www.remote.e2e.test")}
    )
    assert issued.status_code == 201, issued.text
    certificate = x509.load_pem_x509_certificate(issued.json()["certificate_pem"].encode())
    [point] = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    [crl_url] = [name.value for name in point.full_name or []]
    access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    [ocsp_url] = [
        d.access_location.value
        for d in access.value
        if d.access_method == AuthorityInformationAccessOID.OCSP
    ]
    assert crl_url.startswith(f"{public_url}/pki/"), crl_url
    assert ocsp_url.startswith(f"{public_url}/pki/"), ocsp_url
    # A relying party fetches the CRL there, logged in nowhere.
    crl = httpx.get(crl_url, timeout=30)
    assert crl.status_code == 200 and crl.headers["content-type"] == "application/pkix-crl"
    api.close()

    # --- Ctrl-C stops it all ----------------------------------------------------------------
    _stop_group(agent, signal.SIGTERM, timeout=30)
    _stop_group(platform, signal.SIGINT, timeout=45)
    assert "Certyard stopped." in log()
