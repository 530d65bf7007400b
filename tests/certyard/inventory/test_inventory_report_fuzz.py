"""Mutated real certificates inside inventory reports, through the agent API.

Whatever bytes one entry holds, the answer is never a 500 and every other entry is
recorded. The certificates mutated are ones we did not make (cryptography's test
vectors, the machine's CA bundle when present) as well as our own.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cryptography_vectors
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certyard.inventory.models import CertificateLocation
from certyard.jobs.models import Job
from certyard.jobs.services import job_inventory_request, job_lease_next
from tests.certs import issue
from tests.certyard.conftest import AGENT
from tests.certyard.x509.test_parsing_fuzz import encode, encode_oid, rebuild

VECTORS = Path(os.path.dirname(cryptography_vectors.__file__)) / "x509"
SOURCES = [
    "custom/two_basic_constraints.pem",
    "custom/invalid_version.pem",
    "san_x400address.der",
    "e-trust.ru.der",
    "custom/cp_invalid.pem",
    "custom/malformed-san.pem",
    "custom/empty-eku.pem",
    "custom/inhibit_any_policy_negative.pem",
    "custom/invalid_utf8_common_name.pem",
    "cryptography.io.pem",
    "letsencryptx3.pem",
]


def _der_of(path: Path) -> bytes:
    data = path.read_bytes()
    if not data.startswith(b"-----"):
        return data
    text = data.decode("latin-1")
    body = text.split("-----", 2)[2].split("-----END", 1)[0]
    return base64.b64decode("".join(line for line in body.splitlines() if ":" not in line))


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


REAL_DERS = [_der_of(VECTORS / name) for name in SOURCES]


def _rebuilt(der: bytes, **changes: Any) -> bytes:
    """``der`` with a structural change, or as it is when its layout does not allow it."""
    try:
        return rebuild(der, **changes)
    except Exception:
        return der


@st.composite
def mutated_der(draw: st.DrawFn) -> bytes:
    der = bytearray(draw(st.sampled_from(REAL_DERS)))
    mutation = draw(
        st.sampled_from(
            [
                "truncate",
                "flip",
                "insert",
                "delete",
                "retag",
                "duplicate",
                "duplicate-extension",
                "unknown-extension",
                "odd-key-algorithm",
                "none",
            ]
        )
    )
    if mutation == "duplicate-extension":
        index = draw(st.integers(0, 20))
        return _rebuilt(
            bytes(der),
            extensions=lambda items: [*items, items[index % len(items)]] if items else items,
        )
    if mutation == "unknown-extension":
        arcs = [1, 3, 6, 1, 4, 1, draw(st.integers(0, 2**32)), draw(st.integers(0, 99))]
        critical = b"\x01\x01\xff" if draw(st.booleans()) else b""
        value = encode(0x04, draw(st.binary(max_size=32)))
        invented = encode(0x30, encode_oid(arcs) + critical + value)
        return _rebuilt(bytes(der), extensions=lambda items: [*items, invented])
    if mutation == "odd-key-algorithm":
        # GOST, a made-up algorithm, or a known one with garbage parameters.
        arcs = draw(
            st.sampled_from([[1, 2, 643, 2, 2, 19], [1, 2, 643, 7, 1, 1, 1, 1], [1, 3, 9999, 1]])
        )

        def replace(spki: Any) -> bytes:
            key = spki.children()[1].encoded
            return encode(0x30, encode(0x30, encode_oid(arcs)) + key)

        return _rebuilt(bytes(der), public_key_info=replace)
    if mutation == "truncate":
        del der[draw(st.integers(0, len(der) - 1)) :]
    elif mutation == "flip":
        for _ in range(draw(st.integers(1, 8))):
            index = draw(st.integers(0, len(der) - 1))
            der[index] ^= 1 << draw(st.integers(0, 7))
    elif mutation == "insert":
        index = draw(st.integers(0, len(der)))
        der[index:index] = draw(st.binary(min_size=1, max_size=16))
    elif mutation == "delete":
        start = draw(st.integers(0, len(der) - 1))
        del der[start : start + draw(st.integers(1, 16))]
    elif mutation == "retag":
        # A string type swapped for another (UTF8String, PrintableString, BMPString, ...).
        positions = [i for i, b in enumerate(der) if b in (0x0C, 0x13, 0x16, 0x1E)]
        if positions:
            der[draw(st.sampled_from(positions))] = draw(st.sampled_from([0x0C, 0x13, 0x1E, 0x1C]))
    elif mutation == "duplicate":
        start = draw(st.integers(0, len(der) - 1))
        piece = der[start : start + draw(st.integers(1, 64))]
        der[start:start] = piece
    return bytes(der)


@pytest.fixture
def report_to(
    agent: Any, store: Any, agent_api: Callable[[Any], Any]
) -> Callable[[list[dict[str, Any]]], Any]:
    """Post a report for a fresh inventory job of ``store``, as its agent."""
    client = agent_api(agent)

    def post(entries: list[dict[str, Any]]) -> Any:
        Job.objects.filter(store=store).delete()
        CertificateLocation.objects.filter(store=store).delete()
        job, _ = job_inventory_request(store=store, source=Job.Source.API)
        leased = job_lease_next(orchestrator=agent.orchestrator)
        assert leased is not None and leased.pk == job.pk
        return client.post(f"{AGENT}jobs/{job.pk}/inventory", {"entries": entries}, format="json")

    return post


@pytest.mark.django_db
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutated=st.lists(mutated_der(), min_size=1, max_size=3))
def test_mutated_certificates_never_cause_a_server_error_and_good_entries_are_kept(
    report_to: Callable[[list[dict[str, Any]]], Any], store: Any, mutated: list[bytes]
) -> None:
    good = issue("good.fuzz.example.test")
    entries = [{"alias": "good", "private_key": False, "certificates": [good.pem]}]
    entries += [
        {"alias": f"mutated-{index}", "private_key": False, "certificates": [_pem(der)]}
        for index, der in enumerate(mutated)
    ]

    response = report_to(entries)

    assert response.status_code in (200, 422), response.content
    body = response.json()
    rejected = {r["alias"] for r in body.get("rejected", [])}
    recorded = set(CertificateLocation.objects.filter(store=store).values_list("alias", flat=True))
    assert "good" in recorded
    # Every entry is either recorded or rejected with a reason, never lost.
    assert recorded | rejected == {e["alias"] for e in entries}
    for item in body.get("rejected", []):
        assert item["error"] and "ParseError" not in item["error"]
