"""The one door for extension code (certyard.workflows.invoke): every kind reaches it.

An event handler, a registration handler, a metadata generator and a CA gateway that
raises, hangs, is missing or has a stored parameter its class no longer accepts each
leave the same classified run record, whichever kind it is. The misbehaving classes come
from tests/plugins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certyard_test_handlers as plugins
import pytest
from django.utils import timezone

from certyard.enrollment.gateways import GatewayFailed, gateway_call
from certyard.inventory.metadata.generators import metadata_generate_new
from certyard.inventory.models import Certificate, MetadataGeneratorCursor
from certyard.workflows.invoke import Outcome
from certyard.workflows.models import HandlerRegistration, HandlerRun
from certyard.workflows.registration import registration_handlers_run, registration_runs_record
from certyard.workflows.runner import event_runs_execute
from certyard.workflows.services import event_emit, registration_save
from handlers.base import EventKind, HandlerKind, RegistrationRequest
from handlers.gateways import CARecord
from handlers.registry import HandlerClass, handler_classes

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]

# For each kind: the class that raises, the one that hangs (an INTEGER ``seconds`` or a
# CHOICE parameter to break), and the stored value its checker refuses.
CLASSES = {
    HandlerKind.EVENT: ("test.raises", "test.hangs", {"seconds": "soon"}),
    HandlerKind.REGISTRATION: (
        "test.raising_registration",
        "test.hanging_registration",
        {"verdict": "perhaps"},
    ),
    HandlerKind.METADATA: ("test.raising_generator", "test.hanging_generator", {"seconds": "x"}),
    HandlerKind.GATEWAY: ("test.gateway_raises", "test.gateway_hangs", {"answer": "poetry"}),
}
BAD_PARAMETERS_CLASS = {
    HandlerKind.EVENT: "test.hangs",
    HandlerKind.REGISTRATION: "test.decide",
    HandlerKind.METADATA: "test.hanging_generator",
    HandlerKind.GATEWAY: "test.gateway_garbage",
}
VALID = {"test.decide": {"verdict": "allow"}}


@pytest.fixture(autouse=True)
def _generator_and_registration_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugin classes added with this test, whether or not tests/plugins was
    reinstalled since (its entry points are read from the installed metadata)."""
    for name, cls in [
        ("test.raising_registration", plugins.RaisingRegistration),
        ("test.raising_generator", plugins.RaisingGenerator),
        ("test.hanging_generator", plugins.HangingGenerator),
    ]:
        target = f"certyard_test_handlers:{cls.__name__}"
        monkeypatch.setitem(handler_classes(), name, HandlerClass(name, target, "tests", "0", cls))
    yield


def _register(handler: str, **values: Any) -> HandlerRegistration:
    registration = HandlerRegistration(name=f"door {handler}", handler=handler, timeout_seconds=1)
    return registration_save(registration=registration, values=values)


def _event_run(registration: HandlerRegistration) -> HandlerRun:
    event = event_emit(kind=EventKind.CERTIFICATES_ADDED, subject_type="store", subject_id="s1")
    event_runs_execute(event.pk)
    return HandlerRun.objects.filter(registration=registration).earliest("pk")


def _registration_run(registration: HandlerRegistration) -> HandlerRun:
    request = RegistrationRequest(
        name="agent",
        client_machine="agent.example.test",
        agent_version="test",
        capabilities=(),
        client_parameters={},
        csr_pem="",
        source_address=None,
    )
    outcome = registration_handlers_run(request)
    registration_runs_record(outcome, orchestrator_id="o-1", orchestrator_label="agent")
    return HandlerRun.objects.get(registration=registration)


def _metadata_run(registration: HandlerRegistration) -> HandlerRun:
    now = timezone.now()
    Certificate.objects.create(
        der=b"",
        sha256="ab" * 32,
        sha1="ab" * 20,
        serial_number="1",
        issuer="CN=Test CA",
        subject="CN=door.example.test",
        common_name="door.example.test",
        not_before=now,
        not_after=now,
    )
    MetadataGeneratorCursor.objects.update_or_create(pk=1, defaults={"last_certificate_id": 0})
    metadata_generate_new(time_budget=None, settle_seconds=0)
    return HandlerRun.objects.get(registration=registration)


def _gateway_run(registration: HandlerRegistration) -> HandlerRun:
    with pytest.raises(GatewayFailed) as failed:
        gateway_call(registration, "enroll", lambda g: g.enroll(None), expect=CARecord)
    run = HandlerRun.objects.get(registration=registration)
    assert run.error == failed.value.message  # the run says what the caller was told
    return run


RUN: dict[HandlerKind, Callable[[HandlerRegistration], HandlerRun]] = {
    HandlerKind.EVENT: _event_run,
    HandlerKind.REGISTRATION: _registration_run,
    HandlerKind.METADATA: _metadata_run,
    HandlerKind.GATEWAY: _gateway_run,
}


def _misbehaving(kind: HandlerKind, how: str) -> HandlerRegistration:
    raises, hangs, bad_values = CLASSES[kind]
    if how == "raises":
        return _register(raises)
    if how == "hangs":
        return _register(hangs, **({"seconds": 3600} if "seconds" in bad_values else {}))
    if how == "is missing":
        registration = _register(raises)
        HandlerRegistration.objects.filter(pk=registration.pk).update(handler="gone.uninstalled")
    else:  # its stored parameters no longer pass its class's checker
        handler = BAD_PARAMETERS_CLASS[kind]
        registration = _register(handler, **VALID.get(handler, {}))
        HandlerRegistration.objects.filter(pk=registration.pk).update(parameters=bad_values)
    registration.refresh_from_db()
    return registration


@pytest.mark.parametrize(
    ("how", "outcome"),
    [
        ("raises", Outcome.RETRYABLE_ERROR),
        ("hangs", Outcome.TIMED_OUT),
        ("is missing", Outcome.MISSING_CLASS),
        ("gets a bad parameter", Outcome.BAD_PARAMETERS),
    ],
)
@pytest.mark.parametrize("kind", list(CLASSES), ids=str)
def test_every_kind_that_misbehaves_leaves_the_same_classified_run(
    kind: HandlerKind, how: str, outcome: Outcome
) -> None:
    registration = _misbehaving(kind, how)

    run = RUN[kind](registration)

    assert (run.kind, run.state, run.output["outcome"]) == (kind.value, "failed", outcome.value)
    assert run.registration_name == registration.name and run.error
    assert run.finished_at is not None and run.duration_ms is not None
    if how == "hangs":
        assert "timed out after 1 s" in run.error or "within 1 s" in run.error
    if how == "is missing":
        assert "gone.uninstalled" in run.error
    if how == "gets a bad parameter":
        assert "cannot be started" in run.error


def test_a_gateway_whose_stored_parameters_no_longer_pass_is_refused_clearly() -> None:
    registration = _misbehaving(HandlerKind.GATEWAY, "gets a bad parameter")

    with pytest.raises(GatewayFailed) as refused:
        gateway_call(registration, "answer a ping", lambda g: g.ping())

    assert refused.value.permanent and refused.value.http_status == 409
    assert "parameters no longer pass their checks" in refused.value.message
    assert "answer" in refused.value.message  # the parameter at fault


def test_no_module_but_the_door_instantiates_a_handler_or_calls_with_a_timeout() -> None:
    door = ROOT / "platform" / "certyard" / "workflows" / "invoke.py"
    # ``info.cls(`` and ``call_with_timeout(``: how a handler class was instantiated and
    # called before the door; a registry entry's class is only ever called there.
    patterns = re.compile(r"call_with_timeout\(|\.cls\(")
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "platform").rglob("*.py")
        if path != door and patterns.search(path.read_text())
    ]
    assert offenders == []
    text = door.read_text()
    assert "info.cls(config)" in text and "_call_with_timeout(" in text


def test_inventory_writes_no_handler_run_itself() -> None:
    folder = ROOT / "platform" / "certyard" / "inventory"
    writes = re.compile(r"HandlerRun\s*\(|HandlerRun\.objects\.(create|bulk_create|update)")
    assert [p.name for p in folder.rglob("*.py") if writes.search(p.read_text())] == []
