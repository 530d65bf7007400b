"""A metadata backfill over 100,000 certificates survives its worker being killed.

The platform runs as `make run` starts it (web server and django-q2 cluster, SQLite). An
inventory of 100,000 certificates is inserted as rows (varied as a real one is: owners in
the subject, several environments, RSA / EC / Ed25519 keys, SHA-1 to SHA-384 signatures),
the two built-in generators are registered, and a backfill is started from the console.
While the console's progress card shows it advancing, the worker cluster's whole process
group is killed with SIGKILL; `certyard_run` starts a new one, the every-minute schedule
finds the backfill's heartbeat stale (5 s here) and queues it again, and it carries on
after its last recorded batch. At the end every certificate has its values, and the run
records show each certificate was processed exactly once per generator.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    LivePlatform,
    console_client,
    platform_python,
    start_platform,
    stop_platform,
    wait_for,
)

pytestmark = pytest.mark.e2e

COUNT = 100_000
BATCH = 2_000  # certyard.inventory.metadata.generators.BATCH_SIZE
# Set on every synthetic certificate by crypto_strength, whatever its key and signature.
ALWAYS_SET = ("key_strength", "validity_days", "strength", "quantum_vulnerable")

INSERT = f"""
from django.db.models import Max
from benchmarks.metadata_backfill import synthetic_certificates_insert
from certyard.inventory.models import Certificate, MetadataGeneratorCursor
synthetic_certificates_insert({COUNT}, seed="e2e")
# An inventory from before the generators were registered: the new-certificate cursor is
# past it, so only the backfill walks it.
top = Certificate.objects.aggregate(top=Max("pk"))["top"]
MetadataGeneratorCursor.objects.update_or_create(pk=1, defaults={{"last_certificate_id": top}})
print(Certificate.objects.count())
"""

REGISTER = """
from benchmarks.metadata_backfill import ENVIRONMENT_RULES
from certyard.workflows.models import HandlerRegistration
from certyard.workflows.services import registration_save
registration_save(
    registration=HandlerRegistration(name="Owner and environment",
        handler="certyard.certificate_fields", order=10, timeout_seconds=120),
    values={"environment_rules": ENVIRONMENT_RULES},
)
registration_save(
    registration=HandlerRegistration(name="Crypto strength",
        handler="certyard.crypto_strength", order=20, timeout_seconds=120),
    values={},
)
"""

COUNTS = """
import json
from django.db.models import Count
from certyard.inventory.models import Certificate, CertificateMetadata
from certyard.workflows.models import HandlerRun
per_field = dict(CertificateMetadata.objects.values_list("field__name").annotate(n=Count("pk")))
runs = [
    [r.registration_name, r.state, r.inputs.get("backfill"), r.inputs["first_id"],
     r.inputs["last_id"], r.inputs["count"], r.output.get("values_set", 0)]
    for r in HandlerRun.objects.filter(kind="metadata").order_by("pk")
]
print(json.dumps({"certificates": Certificate.objects.count(),
                  "values": CertificateMetadata.objects.count(),
                  "per_field": per_field, "runs": runs}))
"""


def _worker_group(run_pid: int) -> tuple[int, int] | None:
    """(pid, process group) of the qcluster process `certyard_run` started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if parent == run_pid and "qcluster" in cmdline:
            pid = int(entry.name)
            return pid, os.getpgid(pid)
    return None


def _progress_card(console: httpx.Client, backfill_id: int) -> dict[str, object]:
    """The console's progress card (what htmx fetches every 2 s), as numbers."""
    answer = console.get(f"/metadata/backfills/{backfill_id}/")
    assert answer.status_code == 200, answer.text[:500]
    card = answer.text
    found = re.search(r'data-state="(\w+)" data-processed="(\d+)" data-total="(\d+)"', card)
    assert found, card[:1000]
    return {
        "state": found[1],
        "processed": int(found[2]),
        "total": int(found[3]),
        "polling": 'hx-trigger="every 2s"' in card,
    }


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LivePlatform]:
    live = start_platform(tmp_path, env_overrides={"CERTYARD_BACKFILL_STALE_SECONDS": "5"})
    yield live
    stop_platform(live)


def test_a_backfill_of_100000_certificates_resumes_after_its_worker_is_killed(
    platform: LivePlatform,
) -> None:
    assert int(platform_python(platform, INSERT).split()[-1]) == COUNT
    with platform.api() as api:
        for name, kind, choices in (
            ("owner", "string", []),
            (
                "environment",
                "choice",
                ["production", "staging", "development", "test", "corporate"],
            ),
            ("key_strength", "string", []),
            ("signature_hash", "string", []),
            ("validity_days", "integer", []),
            ("strength", "choice", ["weak", "acceptable", "strong"]),
            ("quantum_vulnerable", "boolean", []),
        ):
            made = api.post(
                "metadata-fields/", json={"name": name, "type": kind, "choices": choices}
            )
            assert made.status_code == 201, made.text
    # Made first (two of them choice fields), they are kept when the generators that
    # declare them are registered; a missing one would be made then.
    platform_python(platform, REGISTER)

    console = console_client(platform)
    page = console.get("/metadata/")
    assert page.status_code == 200 and "Generate for the whole inventory" in page.text
    started = console.post(
        "/metadata/backfills/",
        data={"csrfmiddlewaretoken": console.cookies["csrftoken"]},
        headers={"Referer": f"{platform.url}/metadata/"},
    )
    assert started.status_code == 200 and "started over 100,000 certificates" in started.text
    backfill_id = int(re.search(r'hx-get="/metadata/backfills/(\d+)/"', started.text)[1])

    # The progress card advances while the worker works.
    first = wait_for(
        lambda: (card := _progress_card(console, backfill_id))["processed"] > 0 and card,
        timeout=120,
        what="the backfill to record its first batch",
        every=0.2,
    )
    assert first["total"] == COUNT and first["state"] == "running" and first["polling"]
    mid = wait_for(
        lambda: (card := _progress_card(console, backfill_id))["processed"] >= 10 * BATCH and card,
        timeout=120,
        what="the backfill to get well under way",
        every=0.2,
    )
    assert mid["processed"] < COUNT, "the backfill finished before the worker could be killed"

    assert platform.process is not None
    worker = _worker_group(platform.process.pid)
    assert worker is not None, "no worker cluster"
    os.killpg(worker[1], signal.SIGKILL)
    killed_at = time.monotonic()
    stopped = _progress_card(console, backfill_id)["processed"]
    time.sleep(3)
    halted = _progress_card(console, backfill_id)
    assert halted["state"] == "running" and halted["processed"] == stopped < COUNT
    # `certyard_run` starts a new worker cluster.
    wait_for(
        lambda: (found := _worker_group(platform.process.pid)) and found[0] != worker[0],
        timeout=60,
        what="a new worker cluster",
    )

    done = wait_for(
        lambda: (card := _progress_card(console, backfill_id))["state"] != "running" and card,
        timeout=300,
        what=f"the backfill to resume and finish\n{platform.log()[-3000:]}",
        every=1,
    )
    resumed_after = time.monotonic() - killed_at
    assert done["state"] == "succeeded", done
    assert done["processed"] == done["total"] == COUNT
    assert not done["polling"]  # the card stops asking once it is over
    assert f"metadata backfill {backfill_id} stalled at certificate" in platform.log()
    with platform.api() as api:
        body = api.get(f"metadata/backfills/{backfill_id}/").json()
    assert (body["state"], body["processed"], body["total"]) == ("succeeded", COUNT, COUNT)
    assert body["percent"] == 100 and body["error_count"] == 0

    counts = json.loads(platform_python(platform, COUNTS).strip().splitlines()[-1])
    assert counts["certificates"] == COUNT
    # Every certificate has the values its generators give it.
    for name in ALWAYS_SET:
        assert counts["per_field"][name] == COUNT, name
    assert 0 < counts["per_field"]["owner"] < COUNT  # 10% have no OU in their subject
    runs = [run for run in counts["runs"] if run[2] == backfill_id]
    # Each certificate was processed once per generator: the recorded batches of each
    # registration are disjoint, and their counts add up to the inventory.
    for name in ("Owner and environment", "Crypto strength"):
        mine = sorted((run for run in runs if run[0] == name), key=lambda run: run[3])
        assert all(run[1] == "succeeded" for run in mine)
        assert sum(run[5] for run in mine) == COUNT, name
        assert all(a[4] < b[3] for a, b in itertools.pairwise(mine)), name
    assert len(runs) == 2 * (COUNT // BATCH)  # hundreds of rows at most, not one per certificate
    # Each value was written once (no value existed before): the writes add up to the table.
    assert sum(run[6] for run in runs) == counts["values"]
    print(f"backfill resumed and finished {resumed_after:.0f} s after the kill")

    # New certificates go through the generators on the (new) worker, once.
    platform_python(
        platform,
        "from benchmarks.metadata_backfill import synthetic_certificates_insert\n"
        "from certyard.inventory.metadata.generators import metadata_generate_new_after_commit\n"
        "synthetic_certificates_insert(10, seed='after')\n"
        "metadata_generate_new_after_commit()  # what an inventory commit queues\n",
    )

    def new_runs() -> list[list[object]] | None:
        found = json.loads(platform_python(platform, COUNTS).strip().splitlines()[-1])
        runs = [run for run in found["runs"] if run[2] is None]
        return runs if len(runs) == 2 else None

    after = wait_for(new_runs, timeout=90, what="the generators to run for new certificates")
    assert [(run[0], run[1], run[5]) for run in after] == [
        ("Owner and environment", "succeeded", 10),
        ("Crypto strength", "succeeded", 10),
    ]
    assert after[0][3] == COUNT + 1  # the first new certificate's id
