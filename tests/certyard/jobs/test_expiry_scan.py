"""The daily expiration scan: one certificate.expiring event per threshold crossed, once."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from django_q.models import Schedule

from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import Certificate, CertificateLocation, CertificateStore
from certyard.jobs import expiry as expiry_module
from certyard.jobs.expiry import expiry_scan
from certyard.jobs.models import ExpiryNotice
from certyard.jobs.tasks import EXPIRY_SCAN_SCHEDULE_NAME, expiry_scan_daily
from certyard.settings import expiry_thresholds_parse
from certyard.workflows.models import Event, HandlerRegistration, HandlerRun
from tests.certs import Issued, issue
from tests.certyard.conftest import ON_POSTGRES
from tests.conftest import RegisteredAgent, entry

NOW = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
EXPIRING = "certificate.expiring"


# --- Helpers ---------------------------------------------------------------------------


def certificate(name: str, *, expires_in: dt.timedelta, start: dt.datetime = NOW) -> Certificate:
    """A certificate row expiring ``expires_in`` after ``start`` (the scan needs no DER)."""
    der = name.encode()
    return Certificate.objects.create(
        der=der,
        sha256=hashlib.sha256(der).hexdigest(),
        sha1=hashlib.sha1(der).hexdigest(),  # noqa: S324 - a fingerprint, as in inventory
        serial_number="01",
        issuer="CN=Test CA",
        subject=f"CN={name}",
        common_name=name,
        not_before=start - 365 * DAY,
        not_after=start + expires_in,
        key_algorithm="EC",
    )


def install(store: CertificateStore, cert: Certificate, alias: str = "") -> CertificateLocation:
    return CertificateLocation.objects.create(
        store=store,
        certificate=cert,
        alias=alias or cert.common_name,
        first_seen=NOW - 30 * DAY,
        last_seen=NOW,
    )


def expiring_events() -> list[Event]:
    return list(Event.objects.filter(kind=EXPIRING).order_by("id"))


def days_by_name(events: list[Event]) -> dict[str, list[int]]:
    """For each common name, the thresholds of its events, in order of emission."""
    found: dict[str, list[int]] = {}
    for event in events:
        found.setdefault(event.data["common_name"], []).append(event.data["days"])
    return found


def thresholds_noticed(location: CertificateLocation) -> set[int]:
    return set(
        ExpiryNotice.objects.filter(
            location=location, certificate_id=location.certificate_id
        ).values_list("threshold_days", flat=True)
    )


@pytest.fixture
def store(agent: RegisteredAgent, pem_store: Callable[..., CertificateStore]) -> CertificateStore:
    return pem_store(agent.orchestrator, "/etc/ssl/expiry")


@pytest.fixture
def other_store(
    agent: RegisteredAgent, pem_store: Callable[..., CertificateStore]
) -> CertificateStore:
    return pem_store(agent.orchestrator, "/opt/app/tls")


@pytest.fixture(autouse=True)
def _default_thresholds() -> Iterator[None]:
    """The documented default, whatever the environment running the tests says."""
    with override_settings(CERTYARD_EXPIRY_THRESHOLDS=(1, 7, 30, 90)):
        yield


# --- Thresholds ------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_location_gets_the_smallest_threshold_it_has_crossed(store: CertificateStore) -> None:
    for name, expires_in in [
        ("far", 100 * DAY),
        ("ninety", 60 * DAY),
        ("thirty", 20 * DAY),
        ("seven", 5 * DAY),
        ("one", dt.timedelta(hours=12)),
        ("gone", -3 * DAY),
    ]:
        install(store, certificate(name, expires_in=expires_in))

    result = expiry_scan(now=NOW)

    assert days_by_name(expiring_events()) == {
        "ninety": [90],
        "thirty": [30],
        "seven": [7],
        "one": [1],
        "gone": [0],
    }
    assert result.events_emitted == 5
    assert result.locations_examined == 5  # "far" is outside the largest threshold
    assert result.by_threshold == {0: 1, 1: 1, 7: 1, 30: 1, 90: 1}


@pytest.mark.django_db
def test_running_the_scan_again_emits_nothing(store: CertificateStore) -> None:
    for name, days in [("a", 80), ("b", 25), ("c", 3), ("d", -1)]:
        install(store, certificate(name, expires_in=days * DAY))
    assert expiry_scan(now=NOW).events_emitted == 4

    again = expiry_scan(now=NOW)
    later_same_day = expiry_scan(now=NOW + dt.timedelta(hours=1))

    assert again.events_emitted == later_same_day.events_emitted == 0
    assert again.locations_examined == 0  # notified locations are not even read again
    assert len(expiring_events()) == 4


@pytest.mark.django_db
def test_passing_time_brings_each_next_threshold_once(store: CertificateStore) -> None:
    location = install(store, certificate("web", expires_in=60 * DAY))

    emitted = [
        expiry_scan(now=NOW + elapsed).events_emitted
        for elapsed in [
            0 * DAY,  # 60 days left: 90
            10 * DAY,  # 50 left: nothing new
            31 * DAY,  # 29 left: 30
            32 * DAY,  # 28 left: nothing new
            54 * DAY,  # 6 left: 7
            59.5 * DAY,  # 12 hours left: 1
            61 * DAY,  # expired a day ago: 0
            400 * DAY,  # long expired: nothing more
        ]
    ]

    assert emitted == [1, 0, 1, 0, 1, 1, 1, 0]
    assert days_by_name(expiring_events()) == {"web": [90, 30, 7, 1, 0]}
    assert thresholds_noticed(location) == {0, 1, 7, 30, 90}


@pytest.mark.django_db
def test_a_location_first_seen_late_gets_only_the_smallest_threshold(
    store: CertificateStore,
) -> None:
    location = install(store, certificate("late", expires_in=5 * DAY))

    expiry_scan(now=NOW)
    expiry_scan(now=NOW + 2 * DAY)  # 3 days left: neither 30 nor 90 afterwards
    expiry_scan(now=NOW + 4.5 * DAY)  # 12 hours left

    assert days_by_name(expiring_events()) == {"late": [7, 1]}
    assert thresholds_noticed(location) == {1, 7, 30, 90}


@pytest.mark.django_db
def test_an_expired_certificate_gets_one_expired_event(store: CertificateStore) -> None:
    install(store, certificate("stale", expires_in=-200 * DAY))

    first = expiry_scan(now=NOW)
    expiry_scan(now=NOW + DAY)
    expiry_scan(now=NOW + 30 * DAY)

    [event] = expiring_events()
    assert first.by_threshold[0] == 1
    assert event.data["days"] == 0
    assert event.data["expired"] is True
    assert event.data["days_left"] == -200


@pytest.mark.django_db
def test_a_certificate_in_two_stores_gets_one_event_in_each(
    store: CertificateStore, other_store: CertificateStore
) -> None:
    shared = certificate("shared", expires_in=20 * DAY)
    install(store, shared, "web")
    install(other_store, shared, "app")

    result = expiry_scan(now=NOW)

    events = expiring_events()
    assert result.events_emitted == 2
    assert {(event.data["store_id"], event.data["alias"]) for event in events} == {
        (str(store.pk), "web"),
        (str(other_store.pk), "app"),
    }
    assert {event.subject_id for event in events} == {str(shared.pk)}
    assert expiry_scan(now=NOW).events_emitted == 0


@pytest.mark.django_db
def test_a_renewed_certificate_at_the_same_location_is_warned_afresh(
    store: CertificateStore,
) -> None:
    location = install(store, certificate("renewed.example", expires_in=5 * DAY), "tls")
    expiry_scan(now=NOW)
    successor = certificate("renewed.example v2", expires_in=20 * DAY)
    CertificateLocation.objects.filter(pk=location.pk).update(certificate=successor)

    result = expiry_scan(now=NOW + DAY)

    assert result.events_emitted == 1
    assert [
        (event.subject_id, event.data["days"], event.data["location_id"])
        for event in expiring_events()
    ] == [
        (str(location.certificate_id), 7, location.pk),
        (str(successor.pk), 30, location.pk),
    ]


@pytest.mark.django_db
def test_a_batch_smaller_than_the_work_covers_every_location(
    store: CertificateStore, other_store: CertificateStore
) -> None:
    for number in range(7):
        install(store, certificate(f"s{number}", expires_in=(number * 10 + 1) * DAY))
    install(other_store, certificate("o", expires_in=-DAY))
    install(other_store, certificate("later", expires_in=200 * DAY))

    result = expiry_scan(now=NOW, batch_size=3)

    assert result.batches == 3
    assert result.locations_examined == result.events_emitted == 8
    assert result.by_threshold == {0: 1, 1: 1, 7: 0, 30: 2, 90: 4}
    assert len({event.data["location_id"] for event in expiring_events()}) == 8
    assert expiry_scan(now=NOW, batch_size=3).events_emitted == 0


@pytest.mark.django_db
def test_the_thresholds_come_from_the_setting(store: CertificateStore) -> None:
    install(store, certificate("ten", expires_in=10 * DAY))
    install(store, certificate("forty", expires_in=40 * DAY))

    with override_settings(CERTYARD_EXPIRY_THRESHOLDS=(14, 3)):
        result = expiry_scan(now=NOW)

    assert days_by_name(expiring_events()) == {"ten": [14]}
    assert result.by_threshold == {0: 0, 3: 0, 14: 1}


@pytest.mark.django_db
def test_a_certificate_whose_expiry_is_unknown_is_skipped(store: CertificateStore) -> None:
    unknown = certificate("unreadable", expires_in=DAY)
    Certificate.objects.filter(pk=unknown.pk).update(not_after=None)
    install(store, unknown)

    assert expiry_scan(now=NOW).events_emitted == 0


# --- The event --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_event_names_the_certificate_and_where_it_is_installed(
    agent: RegisteredAgent, store: CertificateStore, ca: Issued
) -> None:
    """Through real inventory, with the current time."""
    leaf = issue("shop.example.test", issuer=ca, days=20)
    inventory_submit(store=store, entries=[entry("shop", leaf, private_key=True)])

    result = expiry_scan()

    assert result.events_emitted == 1
    [event] = expiring_events()
    location = CertificateLocation.objects.get(store=store, alias="shop")
    cert = location.certificate
    assert (event.kind, event.subject_type, event.subject_id, event.subject_label) == (
        EXPIRING,
        "certificate",
        str(cert.pk),
        "shop.example.test",
    )
    assert event.data == {
        "days": 30,
        "days_left": 19,  # 20 days less the moments since the certificate was made
        "expired": False,
        "not_after": cert.not_after.isoformat(),
        "sha256": leaf.sha256,
        "common_name": "shop.example.test",
        "subject": cert.subject,
        "certificate_id": cert.pk,
        "location_id": location.pk,
        "store_id": str(store.pk),
        "store_type": "PEM",
        "orchestrator_id": str(agent.orchestrator.pk),
        "client_machine": store.client_machine,
        "store_path": "/etc/ssl/expiry",
        "store": f"PEM {store.client_machine}:/etc/ssl/expiry",
        "alias": "shop",
    }
    notice = ExpiryNotice.objects.get(location=location, threshold_days=30)
    assert notice.not_after == cert.not_after
    assert notice.emitted_at <= timezone.now()


@pytest.mark.django_db
def test_a_registration_gets_one_queued_run_per_event(
    agent: RegisteredAgent, store: CertificateStore
) -> None:
    def register(name: str, **filters: Any) -> HandlerRegistration:
        return HandlerRegistration.objects.create(
            name=name, handler="certyard.email", kind="event", events=[EXPIRING], **filters
        )

    everything = register("expiry mail")
    pem_on_agent = register(
        "pem expiry", store_types=["PEM"], orchestrators=[str(agent.orchestrator.pk)]
    )
    jks_only = register("jks expiry", store_types=["JKS"])
    other_kind = HandlerRegistration.objects.create(
        name="added", handler="certyard.email", kind="event", events=["certificates.added"]
    )
    for name, days in [("a", 50), ("b", 5), ("c", -2)]:
        install(store, certificate(name, expires_in=days * DAY))

    expiry_scan(now=NOW, batch_size=2)

    events = expiring_events()
    assert len(events) == 3
    for registration in (everything, pem_on_agent):
        runs = HandlerRun.objects.filter(registration=registration)
        assert sorted(run.event_id for run in runs) == [event.pk for event in events]
        assert {run.state for run in runs} == {HandlerRun.State.QUEUED}
    assert not HandlerRun.objects.filter(registration__in=[jks_only, other_kind]).exists()


# --- Two scans at once ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_that_meets_another_scans_notices_is_read_again(
    store: CertificateStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The rival runs between this scan's read and its insert; its notices make the insert
    fail, and the batch (events included) is read again rather than emitted twice.

    Nested in this scan's transaction here, the rival's work rolls back with the failed
    batch; the race between two real transactions is the PostgreSQL test below."""
    for name, days in [("a", 50), ("b", 5)]:
        install(store, certificate(name, expires_in=days * DAY))
    real_event_spec = expiry_module._event_spec
    rivals: list[int] = []
    rival_started = threading.Event()

    def event_spec_with_rival(**kwargs: Any) -> Any:
        if not rival_started.is_set():
            rival_started.set()
            rivals.append(expiry_scan(now=NOW).events_emitted)
        return real_event_spec(**kwargs)

    monkeypatch.setattr(expiry_module, "_event_spec", event_spec_with_rival)
    caplog.set_level(logging.INFO, logger="certyard.jobs.expiry")

    expiry_scan(now=NOW)

    assert rivals == [2]
    assert "met another scan's notices" in caplog.text
    assert days_by_name(expiring_events()) == {"a": [90], "b": [7]}


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite's immediate transactions allow no race")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_scans_at_once_emit_each_event_once(
    store: CertificateStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Both scans read the same batch before either writes: the second one's insert waits
    for the first to commit, fails, and its batch is read again and found done."""
    for number in range(6):
        install(store, certificate(f"race{number}", expires_in=(number * 15 + 1) * DAY))
    both_read = threading.Barrier(2, timeout=10)
    notices = ExpiryNotice.objects
    real_bulk_create = notices.bulk_create
    waited: set[int] = set()

    def bulk_create_in_step(objs: Any, *args: Any, **kwargs: Any) -> Any:
        """Both scans have read the batch and its notices: now both insert."""
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            both_read.wait()
        return real_bulk_create(objs, *args, **kwargs)

    monkeypatch.setattr(notices, "bulk_create", bulk_create_in_step)
    caplog.set_level(logging.INFO, logger="certyard.jobs.expiry")
    results: list[Any] = []
    errors: list[BaseException] = []

    def scan() -> None:
        try:
            results.append(expiry_scan(now=NOW, batch_size=100))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scan) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sorted(result.events_emitted for result in results) == [0, 6]
    assert len(expiring_events()) == 6
    assert "met another scan's notices" in caplog.text  # they did collide


# --- Setting, task and schedule ---------------------------------------------------------


def test_the_thresholds_setting_is_parsed_to_sorted_distinct_days() -> None:
    assert expiry_thresholds_parse("90,30,7,1") == (1, 7, 30, 90)
    assert expiry_thresholds_parse(" 7, 30 ,7,") == (7, 30)


@pytest.mark.parametrize("raw", ["", " , ", "0,30", "-1", "7,thirty", "7.5", "1e3", "5000", "٣"])
def test_a_wrong_thresholds_setting_stops_the_platform_with_a_clear_message(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="CERTYARD_EXPIRY_THRESHOLDS must be"):
        expiry_thresholds_parse(raw)


@pytest.mark.django_db
def test_the_daily_task_runs_the_scan(store: CertificateStore) -> None:
    install(store, certificate("soon", expires_in=3 * DAY, start=timezone.now()))

    summary = expiry_scan_daily()

    assert summary == {
        "locations_examined": 1,
        "events_emitted": 1,
        "by_threshold": {"0": 0, "1": 0, "7": 1, "30": 0, "90": 0},
        "batches": 1,
    }


@pytest.mark.django_db
def test_a_migration_schedules_the_scan_daily() -> None:
    schedule = Schedule.objects.get(name=EXPIRY_SCAN_SCHEDULE_NAME)

    module_name, _, function_name = schedule.func.rpartition(".")
    assert getattr(importlib.import_module(module_name), function_name) is expiry_scan_daily
    assert (schedule.schedule_type, schedule.repeats) == (Schedule.DAILY, -1)
    assert schedule.kwargs == "q_options={'timeout': 1800}"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_inventory_may_remove_a_location_that_was_warned_about(
    store: CertificateStore,
) -> None:
    """Inventory deletes locations in bulk with plain SQL and knows nothing of notices
    (it sits below jobs): the commit must not trip over them, and the next scan drops them."""
    from tests.certs import issue
    from tests.conftest import entry

    soon, later = issue("soon.example.test", days=5), issue("later.example.test", days=300)
    inventory_submit(store=store, entries=[entry("soon", soon)])
    assert expiry_scan().events_emitted == 1
    assert ExpiryNotice.objects.exists()
    # The certificate left the store: its location goes, in a transaction that commits.
    inventory_submit(store=store, entries=[entry("later", later)])
    assert not CertificateLocation.objects.filter(alias="soon").exists()
    result = expiry_scan()
    assert result.orphans_deleted == 3  # the 7-day notice and the 30- and 90-day ones
    assert not ExpiryNotice.objects.exists()
