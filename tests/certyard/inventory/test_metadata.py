"""Certificate metadata: typed fields, values and who set them, the generators (once per
new certificate, and backfills that resume), the action handlers ask for, and the API."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from rest_framework.test import APIClient

from certyard.errors import Conflict, ServiceError
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.metadata import (
    metadata_field_create,
    metadata_field_update,
    metadata_value_canonical,
    metadata_values_set,
)
from certyard.inventory.metadata.generators import (
    metadata_backfill_cancel,
    metadata_backfill_run,
    metadata_backfill_start,
    metadata_backfills_resume,
    metadata_generate_new,
)
from certyard.inventory.models import (
    Certificate,
    CertificateMetadata,
    MetadataBackfill,
    MetadataField,
    MetadataGeneratorCursor,
)
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from certyard.workflows.services import actions_apply, registration_save
from handlers.base import CertificateInfo, HandlerKind, MetadataGenerator
from handlers.registry import HandlerClass, handler_classes
from tests.certs import Issued, issue
from tests.certyard.conftest import ADMIN, error_of
from tests.conftest import entry

pytestmark = pytest.mark.django_db

Field = MetadataField.Type
# The fields the two built-in generators fill (crypto_strength's five, and owner and
# environment from certificate_fields), typed as their documentation asks.
BUILTIN_FIELDS = {
    "owner": (Field.STRING, []),
    "environment": (Field.CHOICE, ["production", "test"]),
    "key_strength": (Field.STRING, []),
    "signature_hash": (Field.STRING, []),
    "validity_days": (Field.INTEGER, []),
    "strength": (Field.CHOICE, ["weak", "acceptable", "strong"]),
    "quantum_vulnerable": (Field.BOOLEAN, []),
}


def _field(name: str, kind: str = Field.STRING, **extra: Any) -> MetadataField:
    return metadata_field_create(name=name, type=kind, **extra)


def _builtin_fields() -> None:
    for name, (kind, choices) in BUILTIN_FIELDS.items():
        _field(name, kind, choices=choices)


def _register(name: str, handler: str, *, order: int = 100, **values: Any) -> HandlerRegistration:
    return registration_save(
        registration=HandlerRegistration(name=name, handler=handler, order=order), values=values
    )


def _builtin_generators() -> list[HandlerRegistration]:
    return [
        _register(
            "fields",
            "certyard.certificate_fields",
            order=10,
            owner_attribute="CN",
            environment_rules=["*.prod.example.test=production", "*.example.test=test"],
        ),
        _register("crypto", "certyard.crypto_strength", order=20),
    ]


def _certificates(count: int, *, prefix: str = "host") -> list[Certificate]:
    """Certificate rows as the inventory keeps them (no DER: no generator reads it)."""
    now = timezone.now()
    rows = []
    for index in range(count):
        name = f"{prefix}{index}.{'prod.' if index % 2 else ''}example.test"
        digest = hashlib.sha256(name.encode()).hexdigest()
        rows.append(
            Certificate(
                der=b"",
                sha256=digest,
                sha1=digest[:40],
                serial_number=format(index + 1, "x"),
                issuer="CN=Test CA",
                subject=f"CN={name}",
                common_name=name,
                sans=[f"DNS:{name}"],
                sans_text=f"DNS:{name}",
                not_before=now - dt.timedelta(days=1),
                not_after=now + dt.timedelta(days=89 + index % 2 * 1000),
                key_algorithm="EC" if index % 3 else "RSA",
                key_size=256 if index % 3 else 2048,
                signature_algorithm="ecdsa-with-SHA256" if index % 3 else "sha1WithRSAEncryption",
            )
        )
    return Certificate.objects.bulk_create(rows)


def _values(certificate: Certificate) -> dict[str, tuple[str, str]]:
    return {
        value.field.name: (value.value, value.source)
        for value in CertificateMetadata.objects.filter(certificate=certificate).select_related(
            "field"
        )
    }


# --- Fields and values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw", "stored"),
    [
        (Field.STRING, "  alice  ", "alice"),
        (Field.STRING, 42, "42"),
        (Field.TEXT, "line one\nline two", "line one\nline two"),
        (Field.INTEGER, "007", "7"),
        (Field.INTEGER, -12, "-12"),
        (Field.INTEGER, 397.0, "397"),
        (Field.DATE, "2026-02-28", "2026-02-28"),
        (Field.DATE, dt.date(2026, 3, 1), "2026-03-01"),
        (Field.BOOLEAN, True, "true"),
        (Field.BOOLEAN, "No", "false"),
        (Field.BOOLEAN, 1, "true"),
        (Field.EMAIL, "pki-team@example.test", "pki-team@example.test"),
        (Field.STRING, "", None),
        (Field.INTEGER, None, None),
    ],
)
def test_each_type_stores_its_values_in_canonical_form(kind: str, raw: Any, stored: Any) -> None:
    field = _field("f", kind)
    assert metadata_value_canonical(field=field, value=raw) == stored


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        (Field.STRING, "two\nlines", "must be one line"),
        (Field.STRING, "x" * 1001, "longer than 1,000 characters"),
        (Field.STRING, "nul\x00byte", "cannot be stored"),
        (Field.STRING, ["a", "list"], "must be text, not a list"),
        (Field.TEXT, {"an": "object"}, "must be text, not an object"),
        (Field.INTEGER, "12.5", "must be a whole number"),
        (Field.INTEGER, True, "whole number, not true/false"),
        (Field.INTEGER, "9" * 25, "must be a whole number"),
        (Field.DATE, "28/02/2026", "YYYY-MM-DD"),
        (Field.DATE, "2026-02-30", "not a date in the calendar"),
        (Field.BOOLEAN, "maybe", "must be true or false"),
        (Field.EMAIL, "not-an-address", "must be an email address"),
    ],
)
def test_each_type_refuses_what_it_cannot_hold_with_a_clear_message(
    kind: str, raw: Any, message: str
) -> None:
    field = _field("f", kind)
    with pytest.raises(ServiceError) as refused:
        metadata_value_canonical(field=field, value=raw)
    assert message in refused.value.message
    assert refused.value.message.startswith("f: ")
    assert refused.value.details["fields"] == {"f": [refused.value.message[3:]]}


def test_a_choice_field_takes_only_its_choices_in_their_own_spelling() -> None:
    field = _field("tier", Field.CHOICE, choices=["Gold", "Silver"])
    assert metadata_value_canonical(field=field, value="gold") == "Gold"
    with pytest.raises(ServiceError, match="must be one of: Gold, Silver"):
        metadata_value_canonical(field=field, value="Bronze")


def test_a_pattern_must_compile_and_every_value_must_match_it_in_full() -> None:
    with pytest.raises(ServiceError) as refused:
        _field("ticket", pattern="[A-Z")
    assert "pattern" in refused.value.details["fields"]
    field = _field("ticket", pattern=r"[A-Z]+-\d+")
    assert metadata_value_canonical(field=field, value="PKI-12") == "PKI-12"
    with pytest.raises(ServiceError, match="does not match the pattern"):
        metadata_value_canonical(field=field, value="PKI-12 and more")


@pytest.mark.parametrize(
    ("attributes", "at_fault"),
    [
        ({"name": "1owner"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "ok", "type": Field.CHOICE}, "choices"),
        ({"name": "ok", "choices": ["a"]}, "choices"),
        ({"name": "ok", "type": Field.CHOICE, "choices": ["a", "a"]}, "choices"),
        ({"name": "ok", "type": "colour"}, "type"),
    ],
)
def test_a_field_definition_is_checked_and_the_fault_named(
    attributes: dict[str, Any], at_fault: str
) -> None:
    with pytest.raises(ServiceError) as refused:
        metadata_field_create(**attributes)
    assert at_fault in refused.value.details["fields"]


def test_a_field_s_type_is_fixed_once_certificates_have_values() -> None:
    field = _field("owner")
    metadata_field_update(field=field, type=Field.EMAIL)  # no values yet: allowed
    [certificate] = _certificates(1)
    metadata_values_set(certificates=[certificate], values={"owner": "a@example.test"}, source="x")
    with pytest.raises(Conflict, match="type cannot change"):
        metadata_field_update(field=field, type=Field.STRING)
    metadata_field_update(field=field, label="Owner's address")  # the rest may change


def test_setting_values_is_all_or_nothing_with_one_message_per_field() -> None:
    _field("owner")
    _field("days", Field.INTEGER)
    [certificate] = _certificates(1)
    with pytest.raises(ServiceError) as refused:
        metadata_values_set(
            certificates=[certificate],
            values={"owner": "alice", "days": "many", "nope": 1},
            source="user:root",
        )
    assert set(refused.value.details["fields"]) == {"days", "nope"}
    assert refused.value.details["fields"]["nope"] == ["there is no metadata field named 'nope'"]
    assert not CertificateMetadata.objects.exists()


def test_a_person_s_value_stays_unless_a_generator_is_told_to_overwrite_it() -> None:
    _field("owner")
    _field("team")
    first, second = _certificates(2)
    metadata_values_set(certificates=[first], values={"owner": "alice"}, source="user:root")
    changed = metadata_values_set(
        certificates=[first, second], values={"owner": "bob", "team": "pki"}, source="generator"
    )
    assert changed == 3  # first's team, second's owner and team
    assert _values(first) == {"owner": ("alice", "user:root"), "team": ("pki", "generator")}
    assert _values(second)["owner"] == ("bob", "generator")
    # Clearing from a generator spares a person's value too.
    metadata_values_set(certificates=[first], values={"owner": None}, source="generator")
    assert _values(first)["owner"] == ("alice", "user:root")
    metadata_values_set(
        certificates=[first], values={"owner": "carol"}, source="gen", overwrite_user_values=True
    )
    assert _values(first)["owner"] == ("carol", "gen")
    # A person replaces anyone's value, and may clear it.
    metadata_values_set(certificate_ids=[second.pk], values={"owner": "dave"}, source="user:dave")
    metadata_values_set(certificate_ids=[second.pk], values={"team": None}, source="user:dave")
    assert _values(second) == {"owner": ("dave", "user:dave")}


def test_an_unchanged_value_is_not_written_again() -> None:
    _field("owner")
    [certificate] = _certificates(1)
    assert metadata_values_set(certificates=[certificate], values={"owner": "a"}, source="g") == 1
    stamp = CertificateMetadata.objects.get().updated_at
    assert metadata_values_set(certificates=[certificate], values={"owner": "a"}, source="g") == 0
    assert CertificateMetadata.objects.get().updated_at == stamp


def test_job_complete_handlers_set_metadata_through_their_action() -> None:
    _field("owner")
    [certificate] = _certificates(1)
    actions_apply(
        [
            {
                "action": "set_metadata",
                "certificate_sha256": certificate.sha256.upper(),
                "values": {"owner": "from-a-handler"},
            }
        ]
    )
    assert _values(certificate) == {"owner": ("from-a-handler", "handler")}
    with pytest.raises(ServiceError, match="holds no certificate"):
        actions_apply(
            [{"action": "set_metadata", "certificate_sha256": "ab" * 32, "values": {"owner": "x"}}]
        )


# --- Generators: new certificates ------------------------------------------------------


def _metadata_runs(**filters: Any) -> list[HandlerRun]:
    return list(HandlerRun.objects.filter(kind=HandlerKind.METADATA, **filters).order_by("pk"))


def test_generators_run_once_for_each_new_certificate_however_often_it_is_reported(
    store: Any, ca: Issued, django_capture_on_commit_callbacks: Any
) -> None:
    _builtin_fields()
    _builtin_generators()
    leaves = [issue(f"web{i}.prod.example.test", issuer=ca, days=90) for i in range(3)]
    report = [entry(f"leaf{i}", leaf, ca) for i, leaf in enumerate(leaves)]

    with django_capture_on_commit_callbacks(execute=True):
        inventory_submit(store=store, entries=report)
    # The commit queued one task (the worker is not running here: we run it ourselves).
    assert OrmQ.objects.count() == 1
    assert MetadataGeneratorCursor.objects.get().queued_at is not None
    assert (
        metadata_generate_new(time_budget=None, settle_seconds=0) == 4
    )  # three leaves and their CA

    runs = _metadata_runs()
    assert [run.registration_name for run in runs] == ["fields", "crypto"]
    for run in runs:
        assert run.state == HandlerRun.State.SUCCEEDED, run.error
        assert run.subject_type == "certificates"
        assert run.inputs["count"] == 4
        assert run.output["errors"] == [] and run.duration_ms is not None
    leaf = Certificate.objects.get(sha256=leaves[0].sha256)
    values = _values(leaf)
    assert values["owner"] == ("web0.prod.example.test", "fields")
    assert values["environment"] == ("production", "fields")
    assert values["key_strength"] == ("EC-256", "crypto")
    assert values["quantum_vulnerable"] == ("true", "crypto")
    assert values["validity_days"] == ("365", "crypto")
    assert MetadataGeneratorCursor.objects.get().queued_at is None
    assert Event.objects.filter(kind="metadata.generated").count() == 1

    # The same report again, and once more with one new certificate: only that one runs.
    newcomer = issue("new.example.test", issuer=ca, days=30)
    with django_capture_on_commit_callbacks(execute=True):
        inventory_submit(store=store, entries=report)
    assert metadata_generate_new(time_budget=None, settle_seconds=0) == 0
    with django_capture_on_commit_callbacks(execute=True):
        inventory_submit(store=store, entries=[*report, entry("new", newcomer, ca)])
    assert metadata_generate_new(time_budget=None, settle_seconds=0) == 1
    later = _metadata_runs(pk__gt=runs[-1].pk)
    newcomer_id = Certificate.objects.get(sha256=newcomer.sha256).pk
    assert [(run.inputs["count"], run.inputs["first_id"]) for run in later] == [
        (1, newcomer_id),
        (1, newcomer_id),
    ]
    assert _values(Certificate.objects.get(sha256=newcomer.sha256))["environment"] == (
        "test",
        "fields",
    )


def test_with_no_generator_registered_new_certificates_just_move_the_cursor(
    store: Any, ca: Issued, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        inventory_submit(store=store, entries=[entry("a", issue("a.test", issuer=ca), ca)])
    assert OrmQ.objects.count() == 0  # nothing to run: no task
    top = Certificate.objects.order_by("-pk").first()
    assert MetadataGeneratorCursor.objects.get().last_certificate_id == top.pk
    assert not _metadata_runs()


class FlakyGenerator(MetadataGenerator):
    """Names the owner after the host; cannot handle certificates whose name starts "bad"."""

    def generate(self, certificate: CertificateInfo) -> Mapping[str, Any]:
        if certificate.common_name.startswith("bad"):
            raise RuntimeError("this certificate upsets me")
        return {"owner": certificate.common_name.split(".")[0], "unknown_field": "x"}


@pytest.fixture
def flaky_generator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A generator class of this module, installed under a name for this test only."""
    name = "test.flaky_metadata"
    installed = HandlerClass(name, f"{__name__}:FlakyGenerator", "tests", "0", FlakyGenerator)
    monkeypatch.setitem(handler_classes(), name, installed)
    yield name


def test_a_generator_failing_for_one_certificate_or_missing_costs_only_that(
    flaky_generator: str,
) -> None:
    _builtin_fields()
    flaky = _register("flaky", flaky_generator, order=1)
    HandlerRegistration.objects.create(
        name="broken", handler="test.broken_import", kind=HandlerKind.METADATA, order=2
    )
    HandlerRegistration.objects.create(
        name="gone", handler="no.such.generator", kind=HandlerKind.METADATA, order=3
    )
    _register("crypto", "certyard.crypto_strength", order=4)
    good, bad = _certificates(1, prefix="good") + _certificates(1, prefix="bad")
    MetadataGeneratorCursor.objects.update_or_create(pk=1, defaults={"last_certificate_id": 0})

    assert metadata_generate_new(time_budget=None, settle_seconds=0) == 2

    runs = {run.registration_name: run for run in _metadata_runs()}
    assert runs["flaky"].state == HandlerRun.State.SUCCEEDED
    assert runs["flaky"].registration == flaky
    errors = runs["flaky"].output["errors"]
    assert {
        "sha256": bad.sha256,
        "field": "",
        "message": "RuntimeError: this certificate upsets me",
    } in errors
    assert {
        "sha256": good.sha256,
        "field": "unknown_field",
        "message": "there is no such metadata field",
    } in errors
    assert runs["flaky"].output["error_count"] == 2  # bad's exception, good's unknown field
    assert runs["broken"].state == HandlerRun.State.FAILED
    assert "cannot be imported" in runs["broken"].error
    assert runs["gone"].state == HandlerRun.State.FAILED
    assert "no installed package declares it" in runs["gone"].error
    assert runs["crypto"].state == HandlerRun.State.SUCCEEDED
    assert _values(good)["owner"] == ("good0", "flaky")
    assert "owner" not in _values(bad)
    assert _values(bad)["strength"] == ("weak", "crypto")  # SHA-1 signed: the others went on
    event = Event.objects.get(kind="metadata.generated")
    assert event.data["failed"] == ["broken", "gone"]


def test_a_person_s_value_is_kept_when_the_generators_run(flaky_generator: str) -> None:
    _field("owner")
    _register("flaky", flaky_generator)
    [certificate] = _certificates(1)
    metadata_values_set(certificates=[certificate], values={"owner": "mine"}, source="user:root")
    MetadataGeneratorCursor.objects.update_or_create(pk=1, defaults={"last_certificate_id": 0})
    metadata_generate_new(time_budget=None, settle_seconds=0)
    assert _values(certificate)["owner"] == ("mine", "user:root")
    [run] = _metadata_runs()
    assert run.output["values_set"] == 0


def test_a_batch_is_recorded_once_even_when_two_workers_race_for_it(
    flaky_generator: str,
) -> None:
    """The second worker's compare-and-set on the cursor fails: it records nothing."""
    from certyard.inventory.metadata import generators as metadata_generators

    _field("owner")
    _register("flaky", flaky_generator)
    _certificates(5)
    MetadataGeneratorCursor.objects.update_or_create(pk=1, defaults={"last_certificate_id": 0})
    rows = metadata_generators._certificate_rows(after_id=0, upper_id=None, limit=2)
    registrations = metadata_generators._registrations()
    late = metadata_generators._batch_generate(registrations, rows)  # a slow worker's batch
    assert (
        metadata_generate_new(batch_size=2, time_budget=None, settle_seconds=0) == 5
    )  # a fast one did it all
    # The slow worker now tries to record its batch: the cursor moved, nothing is written.
    assert (
        MetadataGeneratorCursor.objects.filter(pk=1, last_certificate_id=0).update(
            last_certificate_id=rows[-1][0]
        )
        == 0
    )
    assert late[0].rows  # it had values to write
    counts = [run.inputs["count"] for run in _metadata_runs()]
    assert counts == [2, 2, 1] and CertificateMetadata.objects.count() == 5


def test_the_youngest_certificates_wait_to_settle_before_the_cursor_passes_them(
    flaky_generator: str,
) -> None:
    """On PostgreSQL ids may commit out of order: the cursor leaves the last seconds'
    certificates (and any after them) for a later run, so none is skipped."""
    _field("owner")
    _register("flaky", flaky_generator)
    older, newer = _certificates(2)
    Certificate.objects.filter(pk=older.pk).update(
        first_seen=timezone.now() - dt.timedelta(minutes=5)
    )
    MetadataGeneratorCursor.objects.update_or_create(pk=1, defaults={"last_certificate_id": 0})
    assert metadata_generate_new(time_budget=None, settle_seconds=60) == 1
    assert MetadataGeneratorCursor.objects.get().last_certificate_id == older.pk
    assert metadata_generate_new(time_budget=None, settle_seconds=0) == 1
    assert MetadataGeneratorCursor.objects.get().last_certificate_id == newer.pk


# --- Backfills -------------------------------------------------------------------------


def test_a_backfill_walks_every_certificate_once_and_resumes_after_a_lost_worker(
    superuser: Any,
) -> None:
    _builtin_fields()
    _builtin_generators()
    certificates = _certificates(9)
    backfill = metadata_backfill_start(actor=superuser)
    assert (backfill.state, backfill.total, backfill.upper_id) == (
        "queued",
        9,
        certificates[-1].pk,
    )
    assert backfill.registration_names == ["fields", "crypto"]

    # A first slice does one batch of 2 (its time is up at once), and queues the next.
    queued = OrmQ.objects.count()
    assert metadata_backfill_run(backfill.pk, batch_size=2, time_budget=0) == 2
    assert OrmQ.objects.count() == queued + 1
    backfill.refresh_from_db()
    assert (backfill.state, backfill.processed, backfill.cursor) == (
        "running",
        2,
        certificates[1].pk,
    )
    # Its worker dies: nothing runs it again until the heartbeat is stale.
    assert metadata_backfills_resume() == 0
    stale = timezone.now() - dt.timedelta(seconds=120)
    MetadataBackfill.objects.filter(pk=backfill.pk).update(heartbeat_at=stale)
    assert metadata_backfills_resume() == 1
    assert metadata_backfills_resume() == 0  # queued once, not at every schedule
    # The resumed task carries on after the cursor, to the end.
    assert metadata_backfill_run(backfill.pk, batch_size=4, time_budget=None) == 7
    backfill.refresh_from_db()
    assert (backfill.state, backfill.processed, backfill.total) == ("succeeded", 9, 9)
    assert backfill.finished_at is not None and backfill.error_count == 0
    assert metadata_backfill_run(backfill.pk) == 0  # a late duplicate task does nothing

    runs = _metadata_runs(inputs__backfill=backfill.pk)
    for name in ("fields", "crypto"):
        ranges = [
            (r.inputs["first_id"], r.inputs["last_id"]) for r in runs if r.registration_name == name
        ]
        assert sum(r.inputs["count"] for r in runs if r.registration_name == name) == 9
        assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
    assert CertificateMetadata.objects.filter(field__name="key_strength").count() == 9


def test_one_backfill_at_a_time_and_a_cancelled_one_stops(superuser: Any) -> None:
    _builtin_fields()
    [fields, _crypto] = _builtin_generators()
    _certificates(3)
    with pytest.raises(ServiceError, match="no enabled metadata generator registration"):
        metadata_backfill_start(actor=superuser, registration_ids=[999])
    backfill = metadata_backfill_start(actor=superuser, registration_ids=[fields.pk])
    assert backfill.registration_names == ["fields"]
    with pytest.raises(Conflict, match="wait for it, or cancel it"):
        metadata_backfill_start(actor=superuser)
    metadata_backfill_cancel(backfill=backfill)
    assert metadata_backfill_run(backfill.pk) == 0
    backfill.refresh_from_db()
    assert backfill.state == "cancelled" and backfill.processed == 0
    with pytest.raises(Conflict, match="already ended"):
        metadata_backfill_cancel(backfill=backfill)
    HandlerRegistration.objects.update(enabled=False)
    with pytest.raises(ServiceError, match="no metadata generator is registered and enabled"):
        metadata_backfill_start(actor=superuser)


# --- API -------------------------------------------------------------------------------


@pytest.fixture
def certificate() -> Certificate:
    _field("owner", label="Owner")
    _field("expires_review", Field.DATE)
    _field("critical", Field.BOOLEAN)
    return _certificates(1)[0]


def test_the_certificate_detail_shows_its_metadata(
    admin_api: APIClient, certificate: Certificate
) -> None:
    metadata_values_set(certificates=[certificate], values={"owner": "alice"}, source="gen")
    body = admin_api.get(f"{ADMIN}certificates/{certificate.pk}/").json()
    assert body["metadata"]["owner"]["value"] == "alice"
    assert body["metadata"]["owner"]["source"] == "gen"
    assert "updated_at" in body["metadata"]["owner"]
    assert "critical" not in body["metadata"]


def test_patching_metadata_checks_every_value_and_null_clears(
    admin_api: APIClient, certificate: Certificate
) -> None:
    url = f"{ADMIN}certificates/{certificate.pk}/metadata/"
    answer = admin_api.patch(
        url, {"owner": "bob", "expires_review": "2026-13-01", "critical": "perhaps"}, format="json"
    )
    assert answer.status_code == 400
    error = error_of(answer)
    assert set(error["fields"]) == {"expires_review", "critical"}
    assert not CertificateMetadata.objects.exists()
    answer = admin_api.patch(url, {"owner": "bob", "critical": "yes"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["critical"]["value"] == "true"
    assert answer.json()["owner"]["source"] == "user:root"
    answer = admin_api.patch(url, {"owner": None}, format="json")
    assert set(answer.json()) == {"critical"}
    for garbage in (["owner"], "owner", {"owner": {"deep": 1}}):
        assert admin_api.patch(url, garbage, format="json").status_code == 400
    assert admin_api.get(url).json() == answer.json()


def test_patching_metadata_needs_its_change_permission(
    viewer_api: APIClient, certificate: Certificate
) -> None:
    url = f"{ADMIN}certificates/{certificate.pk}/metadata/"
    assert viewer_api.get(url).status_code == 200
    assert viewer_api.patch(url, {"owner": "me"}, format="json").status_code == 403


def test_the_certificate_list_filters_by_a_metadata_value_or_its_absence(
    admin_api: APIClient,
) -> None:
    _field("owner")
    _field("days", Field.INTEGER)
    alice, bob, nobody = _certificates(3)
    metadata_values_set(certificates=[alice], values={"owner": "alice", "days": 7}, source="g")
    metadata_values_set(certificates=[bob], values={"owner": "bob"}, source="g")

    def listed(**params: str) -> set[int]:
        answer = admin_api.get(f"{ADMIN}certificates/", params)
        assert answer.status_code == 200, answer.content
        return {row["id"] for row in answer.json()["results"]}

    assert listed(metadata_field="owner", metadata_value="alice") == {alice.pk}
    assert listed(metadata_field="days", metadata_value="07") == {alice.pk}
    assert listed(metadata_field="owner") == {alice.pk, bob.pk}
    assert listed(metadata_field="owner", metadata_empty="true") == {nobody.pk}
    assert listed(metadata_field="owner", metadata_value="carol") == set()
    for params, at_fault in (
        ({"metadata_field": "nope", "metadata_value": "x"}, "metadata_field"),
        ({"metadata_field": "days", "metadata_value": "seven"}, "metadata_value"),
        ({"metadata_value": "alice"}, "metadata_field"),
    ):
        answer = admin_api.get(f"{ADMIN}certificates/", params)
        assert answer.status_code == 400
        assert at_fault in error_of(answer)["fields"]


def test_metadata_fields_are_managed_through_the_api(admin_api: APIClient) -> None:
    url = f"{ADMIN}metadata-fields/"
    created = admin_api.post(
        url, {"name": "tier", "type": "choice", "choices": ["gold"]}, format="json"
    )
    assert created.status_code == 201, created.content
    field_id = created.json()["id"]
    bad = admin_api.post(url, {"name": "ticket", "pattern": "(unclosed"}, format="json")
    assert bad.status_code == 400 and "pattern" in error_of(bad)["fields"]
    assert admin_api.post(url, {"name": "tier"}, format="json").status_code == 400
    patched = admin_api.patch(f"{url}{field_id}/", {"choices": ["gold", "silver"]}, format="json")
    assert patched.json()["choices"] == ["gold", "silver"]
    [certificate] = _certificates(1)
    metadata_values_set(certificates=[certificate], values={"tier": "gold"}, source="g")
    changed_type = admin_api.patch(f"{url}{field_id}/", {"type": "string"}, format="json")
    assert changed_type.status_code == 409
    assert admin_api.get(url).json()["results"][0]["name"] == "tier"
    assert admin_api.delete(f"{url}{field_id}/").status_code == 204
    assert not CertificateMetadata.objects.exists()


def test_backfills_start_and_report_progress_through_the_api(
    admin_api: APIClient, viewer_api: APIClient
) -> None:
    _builtin_fields()
    _builtin_generators()
    _certificates(4)
    url = f"{ADMIN}metadata/backfills/"
    assert viewer_api.post(url, {}, format="json").status_code == 403
    started = admin_api.post(url, {}, format="json")
    assert started.status_code == 201, started.content
    body = started.json()
    assert (body["state"], body["total"], body["processed"]) == ("queued", 4, 0)
    assert body["started_by"] == "root"
    again = admin_api.post(url, {}, format="json")
    assert again.status_code == 409 and error_of(again)["code"] == "backfill_running"
    metadata_backfill_run(body["id"])
    progress = admin_api.get(f"{url}{body['id']}/").json()
    assert (progress["state"], progress["processed"], progress["percent"]) == (
        "succeeded",
        4,
        100,
    )
    assert progress["values_set"] > 0
    cancelled = admin_api.post(f"{url}{body['id']}/cancel/")
    assert cancelled.status_code == 409
    bad = admin_api.post(url, {"registrations": ["x"]}, format="json")
    assert bad.status_code == 400


def test_metadata_needs_permissions_on_every_endpoint(nobody_api: APIClient) -> None:
    for path in ("metadata-fields/", "metadata/backfills/"):
        assert nobody_api.get(f"{ADMIN}{path}").status_code == 403
    assert nobody_api.post(f"{ADMIN}metadata/backfills/", {}, format="json").status_code == 403
