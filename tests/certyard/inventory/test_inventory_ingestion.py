"""Inventory ingestion at the service level: ``inventory.services.inventory_submit``."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import Certificate, CertificateLocation
from tests.certs import issue
from tests.conftest import entry

pytestmark = pytest.mark.django_db


def _aliases(store) -> dict[str, str]:
    """alias -> SHA-256 of the certificate recorded there."""
    return dict(
        CertificateLocation.objects.filter(store=store).values_list("alias", "certificate__sha256")
    )


def _garbage_pem(payload: bytes = b"this is not DER at all") -> str:
    """A well-formed PEM block whose base64 decodes to bytes that are not a certificate."""
    body = base64.b64encode(payload).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def test_ec_certificate_is_parsed_into_every_field(store, ca) -> None:
    leaf = issue("www.example.test", issuer=ca, days=45, sans=("www.example.test", "example.test"))

    outcome = inventory_submit(store=store, entries=[entry("web", leaf, ca, private_key=True)])

    assert outcome.added == ["web"] and outcome.new_certificates == 2 and not outcome.rejected
    row = Certificate.objects.get(sha256=leaf.sha256)
    assert row.common_name == "www.example.test"
    assert row.sans == ["DNS:www.example.test", "DNS:example.test"]
    assert "DNS:example.test" in row.sans_text
    assert row.serial_number == format(leaf.certificate.serial_number, "x")
    assert row.sha256 == hashlib.sha256(leaf.der).hexdigest()
    assert row.sha1 == hashlib.sha1(leaf.der, usedforsecurity=False).hexdigest()
    assert bytes(row.der) == leaf.der
    assert (row.key_algorithm, row.key_size) == ("EC", 256)
    assert row.not_after == leaf.certificate.not_valid_after_utc
    assert row.not_before == leaf.certificate.not_valid_before_utc
    assert row.subject == "CN=www.example.test"
    assert row.issuer == "CN=Certyard Test Root CA"
    assert row.is_ca is False and row.self_signed is False
    assert "sha256" in row.signature_algorithm.lower()
    location = CertificateLocation.objects.get(store=store, alias="web")
    assert location.certificate == row and location.has_private_key is True


def test_rsa_and_self_signed_ca_fields(store, ca) -> None:
    rsa_leaf = issue("rsa.example.test", issuer=ca, rsa_bits=2048)

    inventory_submit(store=store, entries=[entry("rsa", rsa_leaf), entry("root", ca)])

    rsa_row = Certificate.objects.get(sha256=rsa_leaf.sha256)
    assert (rsa_row.key_algorithm, rsa_row.key_size) == ("RSA", 2048)
    assert rsa_row.sans == [] and rsa_row.sans_text == ""
    root = Certificate.objects.get(sha256=ca.sha256)
    assert root.is_ca is True and root.self_signed is True
    assert root.common_name == "Certyard Test Root CA"
    assert root.not_after == ca.certificate.not_valid_after_utc


def test_same_certificate_in_two_stores_is_one_certificate_with_two_locations(
    agent,
    pem_store,
) -> None:
    first = pem_store(agent.orchestrator, "/etc/ssl/one")
    second = pem_store(agent.orchestrator, "/etc/ssl/two")
    shared = issue("shared.example.test")

    inventory_submit(store=first, entries=[entry("a", shared)])
    outcome = inventory_submit(store=second, entries=[entry("b", shared)])

    assert outcome.new_certificates == 0 and outcome.added == ["b"]
    assert Certificate.objects.filter(sha256=shared.sha256).count() == 1
    locations = CertificateLocation.objects.filter(certificate__sha256=shared.sha256)
    assert sorted((loc.store_id, loc.alias) for loc in locations) == sorted(
        [(first.pk, "a"), (second.pk, "b")]
    )


def test_chain_links_set_the_issuer_certificate(store, ca) -> None:
    intermediate = issue("Intermediate CA", issuer=ca, ca=True, days=900)
    leaf = issue("leaf.example.test", issuer=intermediate)

    inventory_submit(store=store, entries=[entry("leaf", leaf, intermediate, ca)])

    leaf_row = Certificate.objects.get(sha256=leaf.sha256)
    intermediate_row = Certificate.objects.get(sha256=intermediate.sha256)
    root_row = Certificate.objects.get(sha256=ca.sha256)
    assert leaf_row.issuer_certificate == intermediate_row
    assert intermediate_row.issuer_certificate == root_row
    assert root_row.issuer_certificate is None  # self-signed: no link to itself
    # Only the installed certificate has a location; the chain is only linked.
    assert _aliases(store) == {"leaf": leaf.sha256}


def test_reinventory_without_an_entry_removes_its_location_but_keeps_the_certificate(
    store,
) -> None:
    kept, gone = issue("kept.example.test"), issue("gone.example.test")
    inventory_submit(store=store, entries=[entry("kept", kept), entry("gone", gone)])

    outcome = inventory_submit(store=store, entries=[entry("kept", kept)])

    assert outcome.removed == ["gone"] and outcome.unchanged == 1 and outcome.added == []
    assert _aliases(store) == {"kept": kept.sha256}
    assert Certificate.objects.filter(sha256=gone.sha256).exists()


def test_changed_certificate_at_the_same_alias_counts_as_changed(store) -> None:
    old, new = issue("svc.example.test"), issue("svc.example.test", days=400)
    inventory_submit(store=store, entries=[entry("svc", old)])
    first_seen = CertificateLocation.objects.get(store=store, alias="svc").first_seen

    outcome = inventory_submit(store=store, entries=[entry("svc", new)])

    assert outcome.changed == ["svc"] and outcome.added == [] and outcome.removed == []
    assert outcome.unchanged == 0 and outcome.new_certificates == 1
    location = CertificateLocation.objects.get(store=store, alias="svc")
    assert location.certificate.sha256 == new.sha256
    assert location.first_seen == first_seen  # same location, new certificate
    assert Certificate.objects.filter(sha256=old.sha256).exists()


def test_private_key_flag_change_counts_as_changed(store) -> None:
    cert = issue("key.example.test")
    inventory_submit(store=store, entries=[entry("k", cert, private_key=False)])

    outcome = inventory_submit(store=store, entries=[entry("k", cert, private_key=True)])

    assert outcome.changed == ["k"] and outcome.new_certificates == 0
    assert CertificateLocation.objects.get(store=store, alias="k").has_private_key is True


def test_unchanged_entries_are_counted_and_their_last_seen_moves(store) -> None:
    certs = [issue(f"u{i}.example.test") for i in range(3)]
    entries = [entry(f"u{i}", c) for i, c in enumerate(certs)]
    first = inventory_submit(store=store, entries=entries)
    before = dict(CertificateLocation.objects.filter(store=store).values_list("alias", "last_seen"))

    second = inventory_submit(store=store, entries=entries)

    assert first.added == ["u0", "u1", "u2"]
    assert second.unchanged == 3
    assert second.added == second.changed == second.removed == []
    assert second.new_certificates == 0
    after = dict(CertificateLocation.objects.filter(store=store).values_list("alias", "last_seen"))
    assert all(after[alias] >= before[alias] for alias in before)
    store.refresh_from_db()
    assert store.last_inventory_at is not None


def test_malformed_pem_entry_is_rejected_alone_and_good_entries_are_kept(
    store,
) -> None:
    good1, good2 = issue("good1.example.test"), issue("good2.example.test")
    bad = {"alias": "bad", "private_key": False, "certificates": ["-----BEGIN nonsense"]}

    outcome = inventory_submit(store=store, entries=[entry("g1", good1), bad, entry("g2", good2)])

    assert [(r.index, r.alias) for r in outcome.rejected] == [(1, "bad")]
    assert "PEM" in outcome.rejected[0].error
    assert sorted(outcome.added) == ["g1", "g2"]
    assert _aliases(store) == {"g1": good1.sha256, "g2": good2.sha256}


def test_malformed_entry_at_a_recorded_alias_keeps_the_old_location(store) -> None:
    recorded, other = issue("recorded.example.test"), issue("other.example.test")
    inventory_submit(store=store, entries=[entry("web", recorded), entry("other", other)])
    broken = {"alias": "web", "private_key": True, "certificates": ["not a pem at all"]}

    outcome = inventory_submit(store=store, entries=[broken, entry("other", other)])

    assert [r.alias for r in outcome.rejected] == ["web"]
    assert outcome.removed == []
    assert _aliases(store) == {"web": recorded.sha256, "other": other.sha256}
    location = CertificateLocation.objects.get(store=store, alias="web")
    assert location.has_private_key is False  # untouched by the rejected entry


def test_duplicate_alias_in_one_report_is_rejected(store) -> None:
    first, second = issue("first.example.test"), issue("second.example.test")

    outcome = inventory_submit(store=store, entries=[entry("dup", first), entry("dup", second)])

    assert len(outcome.rejected) == 1
    rejected = outcome.rejected[0]
    assert (rejected.index, rejected.alias) == (1, "dup")
    assert "twice" in rejected.error
    assert _aliases(store) == {"dup": first.sha256}


@pytest.mark.parametrize(
    ("raw", "expected_alias", "words"),
    [
        ({"private_key": False, "certificates": []}, "", "alias"),
        ({"alias": "", "certificates": ["x"]}, "", "alias"),
        ({"alias": 42, "certificates": ["x"]}, "", "alias"),
        ({"alias": "a", "private_key": False, "certificates": "-----BEGIN"}, "a", "list"),
        ({"alias": "a", "private_key": False, "certificates": []}, "a", "list"),
        ({"alias": "a", "private_key": "yes", "certificates": ["x"]}, "a", "private_key"),
        ({"alias": "a", "private_key": 1, "certificates": ["x"]}, "a", "private_key"),
        ({"alias": "a", "certificates": [123]}, "a", "PEM"),
        ("just a string", "", "object"),
        (["a", "list"], "", "object"),
        (None, "", "object"),
    ],
    ids=[
        "missing-alias",
        "empty-alias",
        "alias-not-string",
        "certificates-not-list",
        "certificates-empty",
        "private-key-string",
        "private-key-int",
        "certificate-not-string",
        "entry-string",
        "entry-list",
        "entry-null",
    ],
)
def test_entry_shape_errors_are_rejected_with_a_reason(
    store,
    raw,
    expected_alias: str,
    words: str,
) -> None:
    good = issue("shape-good.example.test")

    outcome = inventory_submit(store=store, entries=[raw, entry("good", good)])

    assert len(outcome.rejected) == 1
    rejected = outcome.rejected[0]
    assert rejected.index == 0 and rejected.alias == expected_alias
    assert words in rejected.error
    assert _aliases(store) == {"good": good.sha256}
    assert Certificate.objects.count() == 1


def test_too_long_alias_and_chain_are_rejected(store) -> None:
    cert = issue("long.example.test")
    long_alias = {"alias": "a" * 513, "certificates": [cert.pem]}
    long_chain = {"alias": "chain", "certificates": [cert.pem] * 21}

    outcome = inventory_submit(store=store, entries=[long_alias, long_chain])

    assert [r.index for r in outcome.rejected] == [0, 1]
    assert "512" in outcome.rejected[0].error and "20" in outcome.rejected[1].error
    assert not CertificateLocation.objects.exists() and not Certificate.objects.exists()


@pytest.mark.parametrize(
    "pem",
    [
        _garbage_pem(),
        _garbage_pem(b"\x30\x82\x01\x00" + b"\x00" * 16),  # starts like DER, is not
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    ],
    ids=["not-der", "truncated-der", "not-base64"],
)
def test_pem_block_that_is_not_a_certificate_is_rejected(store, pem: str) -> None:
    good = issue("decodes-good.example.test")

    outcome = inventory_submit(
        store=store, entries=[{"alias": "fake", "certificates": [pem]}, entry("good", good)]
    )

    assert [(r.index, r.alias) for r in outcome.rejected] == [(0, "fake")]
    assert outcome.rejected[0].error
    assert outcome.new_certificates == 1
    assert _aliases(store) == {"good": good.sha256}
    assert list(Certificate.objects.values_list("sha256", flat=True)) == [good.sha256]


def test_entry_whose_chain_holds_an_unreadable_certificate_is_rejected_whole(
    store,
) -> None:
    leaf = issue("chain-bad.example.test")

    outcome = inventory_submit(
        store=store, entries=[{"alias": "leaf", "certificates": [leaf.pem, _garbage_pem()]}]
    )

    assert [r.alias for r in outcome.rejected] == ["leaf"]
    assert not CertificateLocation.objects.exists()
    assert not Certificate.objects.exists()  # the readable leaf is not kept on its own


def test_pem_with_a_private_key_block_and_surrounding_text_is_read(store) -> None:
    cert = issue("bundle.example.test")
    key_pem = cert.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    text = f"subject=CN=bundle\n{key_pem}{cert.pem}"

    outcome = inventory_submit(store=store, entries=[{"alias": "b", "certificates": [text]}])

    assert outcome.added == ["b"] and not outcome.rejected
    assert _aliases(store) == {"b": cert.sha256}


def test_inventory_of_two_thousand_entries(store, ca) -> None:
    certs = [issue(f"bulk{i}.example.test", issuer=ca) for i in range(5)]
    entries = [
        entry(f"alias-{i:04d}", certs[i % len(certs)], ca, private_key=i % 2 == 0)
        for i in range(2000)
    ]

    first = inventory_submit(store=store, entries=entries)

    assert first.added_count == 2000 and len(first.added) == 100  # the first hundred named
    assert not first.rejected and first.removed == []
    assert first.new_certificates == 6  # five leaves and the CA
    assert CertificateLocation.objects.filter(store=store).count() == 2000
    assert Certificate.objects.count() == 6
    assert all(
        c.issuer_certificate is not None and c.issuer_certificate.sha256 == ca.sha256
        for c in Certificate.objects.exclude(sha256=ca.sha256)
    )
    for cert in certs:
        assert CertificateLocation.objects.filter(certificate__sha256=cert.sha256).count() == 400

    # The same report less 500 entries, with 250 others changed to a new certificate.
    replacement = issue("bulk-new.example.test", issuer=ca)
    second_entries = entries[:1500]
    second_entries[:250] = [entry(f"alias-{i:04d}", replacement, ca) for i in range(250)]

    second = inventory_submit(store=store, entries=second_entries)

    assert second.removed_count == 500 and second.changed_count == 250
    assert second.unchanged == 1250 and second.added == [] and second.new_certificates == 1
    assert CertificateLocation.objects.filter(store=store).count() == 1500
    assert CertificateLocation.objects.filter(certificate__sha256=replacement.sha256).count() == 250
    summary = second.summary()
    assert summary["removed"] == 500 and len(summary["removed_aliases"]) == 100
