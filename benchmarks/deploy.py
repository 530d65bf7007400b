"""Benchmark: one certificate with its key delivered to many stores through real agents.

A fresh platform (as `make run` starts it), N real `certyard-orchestrator` processes, and
on their machines (folders here) S PEM folder stores and S PKCS#12 file stores spread
over them. The built-in CA issues one certificate whose key the platform archived; a
`POST /api/v1/certificates/<id>/deployments` per store type ("every store matching a
filter") sends it, with its key sealed to each agent, to every store. Timed from the first
request until every deployment has ended. A deployment counts as verified when it ended
`written` or `deployed`: the agent wrote atomically, re-read the file with the store's
password and re-inventoried it, and the platform recorded what it read; a sample of
files is read again here with openssl.

Prints verified deployments per second, the per-job time from the job rows (completed_at -
created_at: queueing, lease, agent work, result), the platform's CPU per job (its processes'
user + system time over the run), and how many failed.

Run: .venv/bin/python benchmarks/deploy.py [--agents 20] [--stores 1000] [--postgres URL]
     .venv/bin/python benchmarks/deploy.py --small      (2 agents x 10 stores; the test's)
Goal (issue 16): >= 50 verified deployments/s on a 2-core machine at full size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _live import MANAGE, ROOT, Platform, recreate_database
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

AGENT = [sys.executable, "-m", "orchestrators.agent"]
PASSWORD = "bench-store-pass"  # noqa: S105 (a throwaway store of the benchmark)
DOMAIN = "deploy.bench.test"
FINISHED = ("deployed", "written", "warning", "failed", "cancelled")

SETUP = """
import json
from certyard.enrollment.models import Template
template = Template.objects.create(name="bench-deploy", ca_id={ca_id},
    allowed_domains=[{domain!r}], validity_days=30, archive_keys=True)
print(json.dumps({{"template": template.name}}))
"""

JOB_TIMES = """
import json
from certyard.jobs.models import Job
rows = Job.objects.filter(id__in={ids!r}, completed_at__isnull=False)
print(json.dumps([(r.completed_at - r.created_at).total_seconds() for r in rows]))
"""


def cpu_seconds_by_kind(roots: list[int]) -> dict[str, float]:
    """User + system CPU seconds of ``roots`` and their descendants, by kind of process
    (web, worker, agent, other; from /proc and each process's command line)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])
        commands[pid] = command
    tree = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    hertz = os.sysconf("SC_CLK_TCK")
    by_kind: dict[str, float] = {}
    for pid in tree:
        command = commands.get(pid, "")
        kind = (
            "agent"
            if "orchestrators.agent" in command
            else "worker"
            if "qcluster" in command
            else "web"
            if ("gunicorn" in command or "uvicorn" in command)
            else "other"
        )
        by_kind[kind] = by_kind.get(kind, 0.0) + ticks.get(pid, 0) / hertz
    return by_kind


def shell(platform: Platform, code: str) -> object:
    done = subprocess.run(
        [*MANAGE, "shell", "-c", code],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def expect(answer, *codes: int) -> dict:  # type: ignore[no-untyped-def]
    if answer.status_code not in codes:
        raise SystemExit(f"{answer.request.method} {answer.request.url}: {answer.text[:2000]}")
    return answer.json()


def seed_pkcs12(path: Path, seed: x509.Certificate) -> None:
    """A PKCS#12 file as found on a server: one trusted certificate, AES-256."""
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"seed",
            None,
            None,
            [seed],
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )


def start_agents(platform: Platform, base: Path, count: int) -> list[subprocess.Popen]:
    env = {k: v for k, v in platform.env.items() if not k.startswith("CERTYARD_")}
    agents = []
    for index in range(count):
        # A registration token is spent by the one registration it admits.
        token = expect(
            platform.api.post(
                "registration-tokens/",
                json={"description": f"bench {index}", "approve_on_register": True},
            ),
            201,
        )["token"]
        home = base / f"agent-{index:02d}"
        (home / "stores").mkdir(parents=True)
        subprocess.run(
            [
                *AGENT,
                "register",
                "--url",
                platform.url,
                "--token",
                token,
                "--name",
                f"bench-{index:02d}",
                "--store-root",
                str(home / "stores"),
                "--config-dir",
                str(home / "config"),
            ],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        agents.append(
            subprocess.Popen(
                [*AGENT, "run", "--config-dir", str(home / "config"), "--log-level", "WARNING"],
                cwd=ROOT,
                env=env,
                stdout=(home / "agent.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
    return agents


def orchestrators(platform: Platform, count: int) -> list[dict]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listed = expect(platform.api.get("orchestrators/", params={"page_size": 500}), 200)
        found = sorted(
            (o for o in listed["results"] if o["name"].startswith("bench-")),
            key=lambda o: o["name"],
        )
        if len(found) == count and all(o["status"] == "approved" for o in found):
            return found
        time.sleep(0.5)
    raise SystemExit("the agents did not all register and get approved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--stores", type=int, default=1000, help="per format (PEM, PKCS#12)")
    parser.add_argument("--small", action="store_true", help="2 agents x 10 stores per format")
    parser.add_argument("--postgres", help="a PostgreSQL URL (dropped and created)")
    args = parser.parse_args()
    if args.small:
        args.agents, args.stores = 2, 10
    if args.postgres:
        recreate_database(args.postgres)

    base = Path(tempfile.mkdtemp(prefix="certyard-deploy-bench-"))
    platform = Platform(base / "platform", args.postgres)
    agents: list[subprocess.Popen] = []
    try:
        agents = start_agents(platform, base / "agents", args.agents)
        fleet = orchestrators(platform, args.agents)
        seed = x509.load_pem_x509_certificate(
            expect(platform.api.post("cas/", json={"name": "Bench Seed"}), 201)[
                "certificate_pem"
            ].encode()
        )

        # Stores, round robin over the agents: PEM folders and PKCS#12 files.
        store_ids: list[str] = []
        pkcs12_paths: list[Path] = []
        started = time.perf_counter()
        for index in range(args.stores * 2):
            agent_index = index % args.agents
            folder = base / "agents" / f"agent-{agent_index:02d}" / "stores"
            if index % 2 == 0:
                path = folder / f"pem-{index:05d}"
                path.mkdir()
                body = {"store_type": "PEM", "store_path": str(path)}
            else:
                path = folder / f"keystore-{index:05d}.p12"
                seed_pkcs12(path, seed)
                pkcs12_paths.append(path)
                body = {"store_type": "PKCS12", "store_path": str(path), "password": PASSWORD}
            body["orchestrator"] = fleet[agent_index]["id"]
            store_ids.append(expect(platform.api.post("stores/", json=body), 201)["id"])
        print(
            f"{len(store_ids)} stores on {args.agents} agents in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )

        root = expect(platform.api.post("cas/", json={"name": "Bench Root", "path_length": 1}), 201)
        issuing = expect(
            platform.api.post(
                "cas/",
                json={"name": "Bench Issuing", "key_algorithm": "EC-P256", "parent": root["id"]},
            ),
            201,
        )
        template = shell(platform, SETUP.format(ca_id=issuing["id"], domain=DOMAIN))["template"]
        enrollment = expect(
            platform.api.post(
                "enrollments/pfx/",
                json={
                    "template": template,
                    "common_name": f"www.{DOMAIN}",
                    "sans": [f"www.{DOMAIN}"],
                    "password": "bench-pfx-pw",
                },
            ),
            201,
        )["enrollment"]
        certificate = expect(platform.api.get(f"certificates/{enrollment['certificate']}/"), 200)

        # --- timed: a request per store type ("every store matching a filter"), until
        # every deployment ended; the platform's CPU seconds measured over the same span.
        roots = [platform.process.pid, *(agent.pid for agent in agents)]
        cpu_before = cpu_seconds_by_kind(roots)
        started = time.perf_counter()
        batches = [
            expect(
                platform.api.post(
                    f"certificates/{enrollment['certificate']}/deployments/",
                    json={
                        "store_filter": {"store_type": store_type},
                        "alias": "www",
                        "include_private_key": True,
                    },
                ),
                202,
            )
            for store_type in ("PEM", "PKCS12")
        ]
        requested = time.perf_counter() - started
        while True:
            deployments = [
                d
                for batch in batches
                for d in expect(platform.api.get(f"deployment-batches/{batch['id']}/"), 200)[
                    "deployments"
                ]
            ]
            states = [d["state"] for d in deployments]
            if len(states) == len(store_ids) and all(s in FINISHED for s in states):
                break
            # Not faster: every look reads two batches of up to 1,000 rows, which the
            # platform's CPU figure would count as delivery work.
            time.sleep(2)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds_by_kind(roots)
        cpu = {kind: cpu_after[kind] - cpu_before.get(kind, 0.0) for kind in cpu_after}
        cpu_spent = sum(seconds for kind, seconds in cpu.items() if kind != "agent")
        detail = {"deployments": deployments}

        verified = sum(s in ("written", "deployed") for s in states)
        failed = [d for d in detail["deployments"] if d["state"] not in ("written", "deployed")]
        times = shell(
            platform, JOB_TIMES.format(ids=[d["job"] for d in detail["deployments"] if d["job"]])
        )
        # An independent check of a sample: openssl reads the PKCS#12 files the agents wrote.
        sample = random.sample(pkcs12_paths, min(10, len(pkcs12_paths)))
        for path in sample:
            read = subprocess.run(
                ["openssl", "pkcs12", "-in", str(path), "-passin", f"pass:{PASSWORD}", "-nokeys"],
                capture_output=True,
                timeout=60,
                check=True,
            )
            leaves = x509.load_pem_x509_certificates(read.stdout)
            if not any(
                c.fingerprint(hashes.SHA256()).hex() == certificate["sha256"] for c in leaves
            ):
                raise SystemExit(f"{path} does not hold the delivered certificate")

        print(f"deployment request answered in {requested:.2f} s", flush=True)
        print(
            f"{verified} verified deployments of {len(store_ids)} in {elapsed:.1f} s: "
            f"{verified / elapsed:.1f} verified deployments/s",
            flush=True,
        )
        if times:
            ordered = sorted(times)
            print(
                f"per-job time (completed_at - created_at): median "
                f"{statistics.median(ordered):.2f} s, "
                f"p95 {ordered[int(0.95 * (len(ordered) - 1))]:.2f} s, "
                f"max {ordered[-1]:.2f} s over {len(ordered)} jobs",
                flush=True,
            )
        jobs = max(len(store_ids), 1)
        print(
            f"platform CPU (web, worker, supervisor): {cpu_spent:.1f} s, "
            f"{1000 * cpu_spent / jobs:.1f} ms per job; by process: "
            + ", ".join(
                f"{kind} {seconds:.1f} s ({1000 * seconds / jobs:.1f} ms/job)"
                for kind, seconds in sorted(cpu.items())
            )
            + f"; {os.cpu_count()} cores gave {elapsed * (os.cpu_count() or 1):.0f} s",
            flush=True,
        )
        print(f"openssl read the delivered certificate in {len(sample)} sampled PKCS#12 files")
        if failed:
            print(f"{len(failed)} deployments did not verify, e.g. {failed[0]}", flush=True)
            raise SystemExit(1)
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
        platform.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
