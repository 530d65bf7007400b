"""A real agent inventories a folder of certificates collected from the real world.

The files are ones we did not make: cryptography's test vectors (certificates that bend
or break the rules, DER, PKCS#7, PKCS#12) and the machine's CA bundle, beside files that
hold no certificate at all. Every certificate must be recorded, with its parse
warnings; only the non-certificates are rejected, each with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import warnings
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from tests.certs import issue
from tests.e2e.conftest import (
    LivePlatform,
    file_store_created,
    inventory_finished,
    orchestrator_approved,
)

pytestmark = pytest.mark.e2e

VECTORS = Path(os.path.dirname(cryptography_vectors.__file__))
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Certificates installed on real machines that bend the rules, and why each is odd.
ODD = {
    "x509/custom/two_basic_constraints.pem": "two-basic-constraints.pem",
    "x509/custom/invalid_version.pem": "invalid-version.crt",
    "x509/san_x400address.der": "x400-san.cer",  # DER under a .cer name
    "x509/san_edipartyname.der": "edi-party-san.der",
    "x509/e-trust.ru.der": "gost-key.crt",  # a GOST public key, DER under .crt
    "x509/custom/invalid_utf8_common_name.pem": "bad-utf8-cn.pem",
    "x509/custom/cp_invalid.pem": "bad-policies.pem",
    "x509/custom/malformed-san.pem": "bad-san.pem",
    "x509/custom/malformed-ian.pem": "bad-ian.pem",
    "x509/custom/nc_invalid_ip_netmask.pem": "bad-name-constraints.pem",
    "x509/custom/empty-eku.pem": "empty-eku.pem",
    "x509/custom/inhibit_any_policy_negative.pem": "negative-inhibit-any-policy.pem",
    "x509/cryptography.io.old_header.pem": "old-x509-header.pem",
    "x509/cryptography.io.with_garbage.pem": "text-around.pem",
}
# What the agent must report as rejected, and words its reason must contain.
NOT_CERTIFICATES = {
    "key-only.crt": "private key",
    "empty.pem": "empty",
    "notes.cer": "not PEM, DER",
    "locked.p12": "password",
}
# Files the platform itself must refuse: the bytes look like DER but are no certificate.
FAKE_DER = "fake.der"


def _ders_in(path: Path) -> list[bytes]:
    """The DER of every certificate in a PEM or DER file (the test's own oracle)."""
    data = path.read_bytes()
    if not data.lstrip().startswith(b"-----") and b"-----BEGIN" not in data:
        return [data]
    ders = []
    for block in data.decode("latin-1").split("-----BEGIN ")[1:]:
        label, rest = block.split("-----", 1)
        if "CERTIFICATE" not in label:
            continue
        body = rest.split("-----END", 1)[0]
        lines = [line for line in body.strip().splitlines() if ":" not in line]
        ders.append(base64.b64decode("".join(lines)))
    return ders


def _sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def test_a_folder_of_real_world_certificates_is_recorded_whole(
    live_platform: LivePlatform, agent_factory, tmp_path: Path
) -> None:
    folder = tmp_path / "collected"
    folder.mkdir()
    expected: set[str] = set()
    for source, name in ODD.items():
        shutil.copy(VECTORS / source, folder / name)
        expected.update(_sha256(der) for der in _ders_in(folder / name))
    # A PEM chain with Windows line endings, and a leaf with its key and text around it.
    chain = (VECTORS / "x509/cryptography.io.chain.pem").read_text()
    (folder / "windows-chain.pem").write_bytes(chain.replace("\n", "\r\n").encode())
    expected.update(_sha256(der) for der in _ders_in(folder / "windows-chain.pem"))
    ours = issue("ours.real-world.e2e.test")
    (folder / "with-key.pem").write_text(f"Bag Attributes\n{ours.key_pem}{ours.pem}")
    expected.add(ours.sha256)
    # PKCS#7 bundles, DER and PEM.
    shutil.copy(VECTORS / "pkcs7/amazon-roots.p7b", folder / "amazon-roots.p7b")
    shutil.copy(VECTORS / "pkcs7/isrg.pem", folder / "isrg.p7c")
    for name in ("amazon-roots.p7b", "isrg.p7c"):
        data = (folder / name).read_bytes()
        with warnings.catch_warnings():  # amazon-roots.p7b is BER, as real exports often are
            warnings.simplefilter("ignore", UserWarning)
            loaded = (
                pkcs7.load_pem_pkcs7_certificates(data)
                if data.startswith(b"-----")
                else pkcs7.load_der_pkcs7_certificates(data)
            )
        expected.update(_sha256(c.public_bytes(pkcs7.serialization.Encoding.DER)) for c in loaded)
    # A PKCS#12 the store password opens, and one it does not.
    shutil.copy(VECTORS / "pkcs12/cert-key-aes256cbc.p12", folder / "server.p12")
    _, p12_cert, _ = pkcs12.load_key_and_certificates(
        (folder / "server.p12").read_bytes(), b"cryptography"
    )
    assert p12_cert is not None
    expected.add(_sha256(p12_cert.public_bytes(pkcs7.serialization.Encoding.DER)))
    shutil.copy(VECTORS / "pkcs12/name-all-pwd.p12", folder / "locked.p12")
    # The machine's CA bundle: many certificates that are not one chain.
    if CA_BUNDLE.exists():
        shutil.copy(CA_BUNDLE, folder / "ca-certificates.crt")
        expected.update(_sha256(der) for der in _ders_in(CA_BUNDLE))
    # Files that hold no certificate.
    (folder / "key-only.crt").write_text(ours.key_pem)
    (folder / "empty.pem").write_bytes(b"")
    (folder / "notes.cer").write_text("this file lists where the certificates went\n")
    (folder / FAKE_DER).write_bytes(b"\x30\x82\x00\x10" + os.urandom(16))
    (folder / "readme.txt").write_text("not read: not a certificate file name\n")

    agent = agent_factory("e2e-real-world")
    agent.start()
    with live_platform.api() as api:
        orchestrator = orchestrator_approved(api, "e2e-real-world")
        store = file_store_created(api, orchestrator, folder, password="cryptography")
        job = inventory_finished(api, store["id"], agent, timeout=120)

        assert job["state"] == "succeeded", job
        assert job["outcome"] == "warning", job["message"]
        result = job["result"]["inventory"]
        rejected = {item["alias"]: item["error"] for item in result["rejected"]}
        assert set(rejected) == {*NOT_CERTIFICATES, FAKE_DER}, rejected
        for alias, words in NOT_CERTIFICATES.items():
            assert words in rejected[alias], (alias, rejected[alias])
        assert "ParseError" not in rejected[FAKE_DER]
        assert result["rejected_count"] == len(NOT_CERTIFICATES) + 1
        assert f"{result['rejected_count']} of" in job["message"]

        # Every certificate in those files is recorded (a chain's issuers as certificates,
        # the entries' own at locations of the store).
        recorded: set[str] = set()
        page: str | None = "certificates/?page_size=500"
        while page:
            answer = api.get(page).json()
            recorded.update(c["sha256"] for c in answer["results"])
            page = answer["next"] and answer["next"].split("/api/v1/", 1)[1]
        missing = expected - recorded
        assert not missing, f"{len(missing)} of {len(expected)} certificates not recorded"
        located = api.get("certificates/", params={"store": store["id"], "page_size": 500})
        assert located.json()["results"], "the store's entries are located"

        two_basic = _ders_in(folder / ODD["x509/custom/two_basic_constraints.pem"])[0]
        odd = api.get("certificates/", params={"search": _sha256(two_basic)}).json()["results"][0]
        detail = api.get(f"certificates/{odd['id']}/").json()
        assert detail["conformant"] is False
        assert any("basic" in w.lower() for w in detail["parse_warnings"]), detail
        gost = api.get(
            "certificates/", params={"search": _sha256(_ders_in(folder / "gost-key.crt")[0])}
        ).json()["results"][0]
        assert gost["key_algorithm"] not in ("RSA", "EC") and gost["key_size"] is None
    assert agent.stop() == 0
    assert "Traceback" not in live_platform.log()
