"""Discovery: real files made by ``openssl`` and the JDK's ``keytool``, classified by content,
and the walk kept inside the agent's roots."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrators.stores.discovery import (
    Candidate,
    DiscoveryRequest,
    classify,
    discover,
)
from tests.certs import Issued, issue, key_pem

KEYTOOL = "/usr/bin/keytool"


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of every kind of file, made by the real tools."""

    root = tmp_path_factory.mktemp("discovery")
    ca = issue("Discovery CA", ca=True)
    leaf: Issued = issue("site.example", issuer=ca)
    (root / "cert.pem").write_text(leaf.pem)
    (root / "bundle.crt").write_text(leaf.pem + ca.pem)
    (root / "with-key.pem").write_text(leaf.pem + leaf.key_pem)
    (root / "encrypted-key.pem").write_text(leaf.pem + key_pem(leaf.key, b"secret"))
    (root / "only.key").write_text(leaf.key_pem)
    run(
        "openssl",
        "x509",
        "-in",
        str(root / "cert.pem"),
        "-outform",
        "DER",
        "-out",
        str(root / "cert.der"),
    )
    run(
        "openssl",
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        str(root / "bundle.crt"),
        "-out",
        str(root / "chain.p7b"),
    )
    run(
        "openssl",
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        str(root / "bundle.crt"),
        "-outform",
        "DER",
        "-out",
        str(root / "chain-der.p7c"),
    )
    for name, password in (("locked.p12", "secret"), ("open.p12", "")):
        run(
            "openssl",
            "pkcs12",
            "-export",
            "-in",
            str(root / "with-key.pem"),
            "-certfile",
            str(root / "bundle.crt"),
            "-passout",
            f"pass:{password}",
            "-out",
            str(root / name),
        )
    for store_type, name in (("JKS", "app.jks"), ("JCEKS", "app.jceks")):
        run(
            KEYTOOL,
            "-genkeypair",
            "-keystore",
            str(root / name),
            "-storetype",
            store_type,
            "-storepass",
            "changeit",
            "-keypass",
            "changeit",
            "-alias",
            "app",
            "-keyalg",
            "EC",
            "-dname",
            "CN=app",
            "-validity",
            "30",
        )
        run(
            KEYTOOL,
            "-importcert",
            "-noprompt",
            "-keystore",
            str(root / name),
            "-storetype",
            store_type,
            "-storepass",
            "changeit",
            "-alias",
            "ca",
            "-file",
            str(root / "cert.pem"),
        )
    (root / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    (root / "README.txt").write_text("nothing to see")
    (root / "data.bin").write_bytes(os.urandom(64))
    return root


def by_name(candidates: list[Candidate]) -> dict[str, Candidate]:
    return {Path(candidate.path).name: candidate for candidate in candidates}


def test_each_file_is_classified_by_its_content(files: Path) -> None:
    found = discover(DiscoveryRequest((str(files),)), roots=(str(files),))
    got = {
        name: (c.kind, c.store_type, c.certificate_count, c.private_key, c.password_needed)
        for name, c in by_name(found.candidates).items()
    }

    assert got == {
        "cert.pem": ("pem", "PEM", 1, False, False),
        "bundle.crt": ("pem", "PEM", 2, False, False),
        "with-key.pem": ("pem", "PEM", 1, True, False),
        "encrypted-key.pem": ("pem", "PEM", 1, True, True),
        "only.key": ("key_only", None, 0, True, False),
        "cert.der": ("der", "PEM", 1, False, False),
        "chain.p7b": ("pkcs7", "PEM", 2, False, False),
        "chain-der.p7c": ("pkcs7", "PEM", 2, False, False),
        "locked.p12": ("pkcs12", "PKCS12", 0, False, True),
        "open.p12": ("pkcs12", "PKCS12", 3, True, False),
        "app.jks": ("jks", "JKS", 2, True, True),
        "app.jceks": ("jceks", "JCEKS", 2, True, True),
        "broken.pem": ("unknown", None, 0, False, False),
    }
    assert by_name(found.candidates)["broken.pem"].error == "a PEM certificate that does not parse"
    assert found.notes == []


def test_the_wire_form_names_the_suggested_store_type(files: Path) -> None:
    candidate = classify(str(files / "app.jks"), (files / "app.jks").read_bytes())
    assert candidate is not None
    assert candidate.to_wire() == {
        "path": str(files / "app.jks"),
        "kind": "jks",
        "store_type": "JKS",
        "certificate_count": 2,
        "private_key": True,
        "password_needed": True,
        "error": None,
    }


def test_file_patterns_depth_and_ignored_folders_limit_the_walk(tmp_path: Path, ca: Issued) -> None:
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "skip").mkdir()
    for folder in ("", "a", "a/b", "a/b/c", "skip"):
        (tmp_path / folder / "x.pem").write_text(ca.pem)
        (tmp_path / folder / "x.crt").write_text(ca.pem)
    roots = (str(tmp_path),)

    found = discover(
        DiscoveryRequest(
            (str(tmp_path),), file_patterns=("*.pem",), ignored_directories=("skip",), max_depth=2
        ),
        roots=roots,
    )
    by_path = discover(
        DiscoveryRequest((str(tmp_path),), ignored_directories=(str(tmp_path / "a" / "b"),)),
        roots=roots,
    )

    assert sorted(c.path for c in found.candidates) == [
        str(tmp_path / "a" / "b" / "x.pem"),
        str(tmp_path / "a" / "x.pem"),
        str(tmp_path / "x.pem"),
    ]
    assert sorted(Path(c.path).parent.name for c in by_path.candidates) == sorted(
        ["a", "a", "skip", "skip", tmp_path.name, tmp_path.name]
    )


def test_folders_outside_the_roots_are_skipped_directly_or_by_dotdot(
    tmp_path: Path, ca: Issued
) -> None:
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret.pem").write_text(ca.pem)

    found = discover(
        DiscoveryRequest((str(outside), str(inside / ".." / "outside"), "relative")),
        roots=(str(inside),),
    )

    assert found.candidates == []
    assert found.notes == [
        f"{outside}: skipped, outside this orchestrator's roots",
        f"{inside}/../outside: skipped, outside this orchestrator's roots",
        "relative: skipped, not an absolute path",
    ]


def test_links_are_followed_only_when_asked_and_only_inside_the_roots(
    tmp_path: Path, ca: Issued
) -> None:
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    (inside / "real").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.pem").write_text(ca.pem)
    (inside / "real" / "site.pem").write_text(ca.pem)
    (inside / "to-outside").symlink_to(outside)
    (inside / "secret-link.pem").symlink_to(outside / "secret.pem")
    (inside / "site-link.pem").symlink_to(inside / "real" / "site.pem")
    (inside / "real" / "loop").symlink_to(inside)
    roots = (str(inside),)

    not_following = discover(DiscoveryRequest((str(inside),)), roots=roots)
    following = discover(DiscoveryRequest((str(inside),), follow_links=True), roots=roots)

    assert [c.path for c in not_following.candidates] == [str(inside / "real" / "site.pem")]
    # Through a link: the real path, once; never what lies outside the roots.
    assert [c.path for c in following.candidates] == [str(inside / "real" / "site.pem")]


def test_a_file_over_the_size_limit_or_unreadable_is_reported_not_read(
    tmp_path: Path, ca: Issued
) -> None:
    (tmp_path / "big.pem").write_text(ca.pem * 10)
    (tmp_path / "big.txt").write_text(ca.pem * 10)
    os.mkfifo(tmp_path / "pipe.pem")

    found = discover(
        DiscoveryRequest((str(tmp_path),)), roots=(str(tmp_path),), max_file_bytes=len(ca.pem)
    )

    assert [(Path(c.path).name, c.kind, c.error) for c in found.candidates] == [
        ("big.pem", "unknown", f"larger than the agent's file size limit ({len(ca.pem)} bytes)")
    ]


def test_a_payload_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one directory"):
        DiscoveryRequest.from_payload({"directories": []})
    with pytest.raises(ValueError, match="list of strings"):
        DiscoveryRequest.from_payload({"directories": "/etc"})
    request = DiscoveryRequest.from_payload({"directories": ["/etc"], "max_depth": 10_000})
    assert request.max_depth == 64
