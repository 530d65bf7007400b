"""The APIs' serializers build their fields once per class (certyard.api.serializers,
issue 22) and each serializer still gets fields of its own."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework import serializers

from certyard.api.serializers import ModelSerializer, Serializer, _FieldsKept
from certyard.blueprints.api.serializers import BlueprintDetailSerializer
from certyard.enrollment.api.serializers import EnrollmentSerializer
from certyard.enrollment.models import EnrollmentRequest


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


def _described(field: Any) -> tuple[Any, ...]:
    """What a bound field does with a value, to compare a copy with a field built anew."""
    return (
        type(field),
        repr(field),
        field.field_name,
        field.source,
        tuple(field.source_attrs),
        field.read_only,
        field.required,
        field.allow_null,
        getattr(field, "method_name", None),
    )


# Every API's serializers, imported by the URLconf.
import certyard.urls  # noqa: E402, F401

SERIALIZERS = [
    cls
    for cls in _all_subclasses(_FieldsKept)
    if cls.__module__.startswith("certyard.") and cls not in (ModelSerializer, Serializer)
]


def test_the_apis_serializers_all_build_their_fields_once() -> None:
    """Each serializer of the platform's APIs comes from these bases, so none pays for
    DRF's per-serializer field building; the list would be short if the import moved."""
    assert len(SERIALIZERS) >= 80
    assert {ModelSerializer, Serializer} <= {base for cls in SERIALIZERS for base in cls.__mro__}
    for module in {cls.__module__ for cls in SERIALIZERS}:
        declared = __import__(module, fromlist=["_"])
        plain = [
            value
            for value in vars(declared).values()
            if isinstance(value, type)
            and issubclass(value, serializers.Serializer)
            and not issubclass(value, _FieldsKept)
            and value.__module__ == module
        ]
        assert plain == [], f"{module}: {plain} built their fields on every request"


@pytest.mark.django_db  # a related field's repr shows its queryset's rows
@pytest.mark.parametrize("serializer_class", SERIALIZERS, ids=lambda c: c.__name__)
def test_kept_fields_behave_as_fields_built_anew(serializer_class: type) -> None:
    kept = serializer_class()
    kept_fields = kept.fields  # built and kept
    again = serializer_class()
    built_anew = serializer_class()
    built_anew.get_fields = lambda: super(_FieldsKept, built_anew).get_fields()  # type: ignore[method-assign]
    assert list(again.fields) == list(built_anew.fields)
    for name, field in again.fields.items():
        assert _described(field) == _described(built_anew.fields[name]), name
        assert field is not kept_fields[name] and field.parent is again


def test_the_fields_are_built_from_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    class Counted(ModelSerializer):
        class Meta:
            model = EnrollmentRequest
            fields = ["id", "state", "subject"]

    built: list[str] = []
    real_build_field = serializers.ModelSerializer.build_field

    def build_field(self: Any, name: str, *args: Any) -> Any:
        built.append(name)
        return real_build_field(self, name, *args)

    monkeypatch.setattr(Counted, "build_field", build_field)
    for _ in range(3):
        assert list(Counted().fields) == ["id", "state", "subject"]
    assert built == ["id", "state", "subject"]


def test_nested_serializers_and_lists_are_copied_whole() -> None:
    """A field holding other fields is no plain copy: its children belong to it."""
    first, second = BlueprintDetailSerializer(), BlueprintDetailSerializer()
    nested_first, nested_second = first.fields["stores"], second.fields["stores"]
    assert nested_first is not nested_second
    assert nested_first.child is not nested_second.child
    assert nested_second.child.parent is nested_second and nested_second.parent is second

    class Lists(Serializer):
        names = serializers.ListField(child=serializers.CharField(max_length=3))
        by_kind = serializers.DictField(
            child=serializers.ListField(child=serializers.IntegerField())
        )

    one, other = Lists(data={"names": ["abcd"]}), Lists(data={"names": ["ab"], "by_kind": {}})
    assert one.fields["names"].child is not other.fields["names"].child
    assert other.fields["names"].child.parent is other.fields["names"]
    inner = other.fields["by_kind"].child.child
    assert inner.parent is other.fields["by_kind"].child and inner.root is other
    assert not one.is_valid() and "names" in one.errors
    assert other.is_valid(), other.errors


def test_a_mutable_default_is_each_serializers_own() -> None:
    class Defaults(Serializer):
        names = serializers.ListField(child=serializers.CharField(), default=["first"])

    one = Defaults(data={})
    assert one.is_valid()
    one.validated_data["names"].append("added by a view")
    other = Defaults(data={})
    assert other.is_valid() and other.validated_data["names"] == ["first"]


@pytest.mark.django_db
def test_serializers_made_at_once_on_many_threads_each_answer_for_their_own_object() -> None:
    """The kept fields are shared by request threads; the copies they bind are not."""
    user = get_user_model().objects.create_user("threads", password="pw")
    requests = [
        EnrollmentRequest.objects.create(
            template_name=f"t{number}", state="failed", requested_by=user, subject=f"CN={number}"
        )
        for number in range(8)
    ]
    start = threading.Barrier(len(requests), timeout=10)
    answers: dict[int, list[dict[str, Any]]] = {}

    def serialize(number: int) -> None:
        start.wait()
        answers[number] = [dict(EnrollmentSerializer(requests[number]).data) for _ in range(50)]

    threads = [threading.Thread(target=serialize, args=(n,)) for n in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for number, data in answers.items():
        assert {answer["subject"] for answer in data} == {f"CN={number}"}
        assert {answer["template_name"] for answer in data} == {f"t{number}"}
        assert {answer["requested_by"] for answer in data} == {"threads"}
    assert len(answers) == len(requests)
