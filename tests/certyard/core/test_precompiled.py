"""Read queries built once per process (certyard.precompiled): the same instances the
queryset gives, one statement, and the querysets it cannot stand for refused."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from certyard.accounts.models import ApiToken
from certyard.accounts.services import api_token_create
from certyard.precompiled import PrecompiledQuery

pytestmark = pytest.mark.django_db


def _tokens(count: int) -> list[ApiToken]:
    user = get_user_model().objects.create_user("precompiled", password="x" * 20)
    return [
        api_token_create(user=user, name=f"t{i}", expires_in=dt.timedelta(days=1))[0]
        for i in range(count)
    ]


def _fields(instance: Any) -> dict[str, Any]:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def test_the_instances_are_the_querysets_own_related_objects_included() -> None:
    tokens = _tokens(3)
    built: list[str] = []

    def build(key: str, user: int) -> Any:
        built.append(key)
        return ApiToken.objects.filter(token_key=key, user_id=user).select_related("user")

    query = PrecompiledQuery(build, key=str, user=int)
    for token in tokens:
        expected = list(build(token.token_key, token.user_id))
        with CaptureQueriesContext(connection) as queries:
            found = query(key=token.token_key, user=token.user_id)
            assert [_fields(t) for t in found] == [_fields(t) for t in expected]
            # The user came with the token, as select_related brings it.
            assert _fields(found[0].user) == _fields(expected[0].user)
            assert isinstance(found[0].created, dt.datetime) and found[0].created.tzinfo
        assert len(queries) == 1
        assert found[0]._state.db == "default" and not found[0]._state.adding
    # Built once for the three runs (the other three calls are the expected querysets).
    assert len(built) == 1 + len(tokens)
    assert query(key="absent", user=tokens[0].user_id) == []


def test_each_parameter_must_reach_the_database_as_passed() -> None:
    pattern = PrecompiledQuery(lambda key: ApiToken.objects.filter(name__contains=key), key=str)
    with pytest.raises(ImproperlyConfigured, match="inside a pattern"):
        pattern(key="x")
    unused = PrecompiledQuery(lambda key: ApiToken.objects.all(), key=str)
    with pytest.raises(ImproperlyConfigured, match="missing: \\['key'\\]"):
        unused(key="x")
    with pytest.raises(ImproperlyConfigured, match="only str, int and UUID"):
        PrecompiledQuery(lambda when: ApiToken.objects.filter(created=when), when=dt.datetime)


def test_only_model_instances_and_the_declared_types() -> None:
    values = PrecompiledQuery(lambda key: ApiToken.objects.filter(token_key=key).values(), key=str)
    with pytest.raises(ImproperlyConfigured, match="model instances"):
        values(key="x")
    prefetch = PrecompiledQuery(
        lambda key: ApiToken.objects.filter(token_key=key).prefetch_related("user"), key=str
    )
    with pytest.raises(ImproperlyConfigured, match="prefetch"):
        prefetch(key="x")
    query = PrecompiledQuery(lambda key: ApiToken.objects.filter(token_key=key), key=str)
    with pytest.raises(TypeError, match="key must be str"):
        query(key=5)
    with pytest.raises(TypeError, match="expected the parameters"):
        query(other="x")


def test_uuid_parameters_reach_the_database_as_its_uuid_fields_take_them() -> None:
    from certyard.fleet.models import Orchestrator

    orchestrators = [Orchestrator.objects.create(name=f"o{i}") for i in range(2)]
    query = PrecompiledQuery(lambda pk: Orchestrator.objects.filter(pk=pk), pk=uuid.UUID)
    for orchestrator in orchestrators:
        (found,) = query(pk=orchestrator.pk)
        assert _fields(found) == _fields(Orchestrator.objects.get(pk=orchestrator.pk))
    assert query(pk=uuid.uuid4()) == []
