"""Two submissions with the same idempotency key at the same moment (a double click, a
client retrying before its first answer arrived): one request, one certificate.

The key is taken by the request's first insert, inside the transaction that issues it
(issue 22: one commit per enrollment). Here both submissions pass the look-up for an
earlier request before either writes, so the database's unique constraint has to decide:
the loser's insert waits for the winner to commit, fails, takes everything the loser
wrote down with it (its signed certificate included), and the loser answers with the
winner's request. Real threads on real connections, on PostgreSQL (``make test`` runs
this folder again there): the in-process SQLite test database is in memory with a shared
cache, where a second writer fails at once with "database table is locked" instead of
waiting as it does on the platform's SQLite file (``BEGIN IMMEDIATE`` with a timeout).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections

from certyard.enrollment import services
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.enrollment.services import pfx, submit
from certyard.inventory.models import Certificate
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, IssuedCertificate, KeyAlgorithm
from tests.certs import csr_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
State = EnrollmentRequest.State


@pytest.fixture(autouse=True)
def _concurrent_writers() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("the in-memory SQLite test database cannot hold two writers: PostgreSQL")


@pytest.fixture
def ca() -> CertificateAuthority:
    return pki_services.ca_create(name="Race Root", key_algorithm=KeyAlgorithm.EC_P256)


@pytest.fixture
def requester(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("racer", password="pw")


def _both_past_the_look_up(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each submission's first look-up for an earlier request (none yet) returns only once
    both have made it; the look-up made after a failed insert is not held. Returns the
    list of threads that looked up, one entry per look-up: three once the loser's insert
    failed on the key."""
    both_looked = threading.Barrier(2, timeout=20)
    real_replayed = submit._replayed
    held: set[int] = set()
    look_ups: list[int] = []

    def replayed_in_step(*args: Any, **kwargs: Any) -> Any:
        look_ups.append(threading.get_ident())
        found = real_replayed(*args, **kwargs)
        if threading.get_ident() not in held:
            held.add(threading.get_ident())
            both_looked.wait()
        return found

    # The PKCS#12 path looks up with the same function, imported by name.
    for module in (submit, pfx):
        monkeypatch.setattr(module, "_replayed", replayed_in_step)
    return look_ups


def _race(submission: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    answers: list[Any] = []
    errors: list[BaseException] = []

    def submit_once() -> None:
        try:
            answers.append(submission())
        except BaseException as error:  # the assertions look at it
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return answers, errors


def _csr_race(
    requester: Any, monkeypatch: pytest.MonkeyPatch, first_csr: str, second_csr: str
) -> tuple[list[Any], list[BaseException]]:
    """Two submissions, of ``first_csr`` and ``second_csr``, with one key."""
    look_ups = _both_past_the_look_up(monkeypatch)
    csrs = iter([first_csr, second_csr])
    lock = threading.Lock()

    def submission() -> EnrollmentRequest:
        with lock:
            csr = next(csrs)
        return services.enrollment_submit_csr(
            template_name="web", csr_pem=csr, actor=requester, idempotency_key="double-click"
        )

    answers, errors = _race(submission)
    assert len(look_ups) == 3  # the loser's insert failed on the key, and it looked again
    return answers, errors


def test_racing_csr_submissions_issue_once(
    ca: CertificateAuthority, requester: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Template.objects.create(name="web", ca=ca, allowed_domains=["example.test"])

    answers, errors = _csr_race(
        requester, monkeypatch, csr_for("one.example.test"), csr_for("two.example.test")
    )

    assert not errors, errors
    assert len(answers) == 2 and answers[0].pk == answers[1].pk
    assert sorted(answer.replayed for answer in answers) == [False, True]
    assert all(answer.state == State.ISSUED for answer in answers)
    # The loser signed too, but its certificate rolled back with its insert: nothing of it
    # was recorded, by the CA or in the inventory.
    assert EnrollmentRequest.objects.count() == 1
    assert IssuedCertificate.objects.filter(ca=ca).count() == 1
    assert Certificate.objects.filter(common_name__endswith=".example.test").count() == 1


def test_racing_pfx_submissions_hand_one_file_over(
    ca: CertificateAuthority, requester: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Template.objects.create(name="web", ca=ca, allowed_domains=["example.test"])
    look_ups = _both_past_the_look_up(monkeypatch)

    def submission() -> Any:
        return services.enrollment_submit_pfx(
            template_name="web",
            common_name="pfx.example.test",
            password="long-enough-1",
            actor=requester,
            idempotency_key="double-click",
        )

    answers, errors = _race(submission)
    assert len(look_ups) == 3  # the loser's insert failed on the key, and it looked again

    assert not errors, errors
    assert answers[0].request.pk == answers[1].request.pk
    assert sorted(answer.pfx is None for answer in answers) == [False, True]
    assert EnrollmentRequest.objects.count() == 1
    assert IssuedCertificate.objects.filter(ca=ca).count() == 1


def test_racing_submissions_that_wait_for_approval_make_one_request(
    ca: CertificateAuthority, requester: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Template.objects.create(
        name="web", ca=ca, allowed_domains=["example.test"], require_approval=True
    )

    csr = csr_for("pending.example.test")
    answers, errors = _csr_race(requester, monkeypatch, csr, csr)

    assert not errors, errors
    assert answers[0].pk == answers[1].pk
    assert EnrollmentRequest.objects.get().state == State.PENDING


def test_racing_refused_submissions_are_one_refusal(
    ca: CertificateAuthority, requester: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Template.objects.create(name="web", ca=ca, allowed_domains=["example.test"])

    csr = csr_for("www.example.org")
    answers, errors = _csr_race(requester, monkeypatch, csr, csr)

    assert answers == []
    assert [type(error) for error in errors] == [services.EnrollmentRefused] * 2
    refused = EnrollmentRequest.objects.get()
    assert refused.state == State.FAILED and "outside the domains" in refused.failure_reason
    assert {error.details["enrollment_id"] for error in errors} == {str(refused.pk)}  # type: ignore[attr-defined]
