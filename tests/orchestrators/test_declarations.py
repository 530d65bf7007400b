"""Store-type declarations (orchestrators/declarations.py): the wire form both sides check."""

from __future__ import annotations

import copy

import pytest

from orchestrators.declarations import (
    BUILTIN_DECLARATIONS,
    DeclarationError,
    Policy,
    PropertyType,
    RequiredWhen,
    declaration_from_wire,
    property_value_fits,
)
from orchestrators.protocol import StoreOperation


@pytest.mark.parametrize("short_name", sorted(BUILTIN_DECLARATIONS))
def test_builtin_declarations_round_trip(short_name):
    declaration = BUILTIN_DECLARATIONS[short_name]
    assert declaration_from_wire(declaration.to_wire()) == declaration


def test_the_java_stores_require_an_alias_and_take_an_entry_password():
    jks = BUILTIN_DECLARATIONS["JKS"]
    assert jks.custom_alias is Policy.REQUIRED
    assert [spec.type for spec in jks.entry_parameters] == [PropertyType.SECRET]


def _minimal() -> dict:
    return {"short_name": "APPLIANCE", "name": "Appliance", "operations": ["inventory", "add"]}


def test_a_minimal_declaration_takes_the_defaults():
    declaration = declaration_from_wire(_minimal())
    assert declaration.schema_version == 1
    assert declaration.operations == {StoreOperation.INVENTORY, StoreOperation.ADD}
    assert declaration.private_key is Policy.OPTIONAL
    assert declaration.properties == ()


def test_entry_parameters_say_when_they_are_required():
    wire = _minimal() | {
        "entry_parameters": [
            {"name": "slot", "type": "int", "required_when": ["add", "has_private_key"]}
        ]
    }
    (spec,) = declaration_from_wire(wire).entry_parameters
    assert spec.required_when == {RequiredWhen.ADD, RequiredWhen.HAS_PRIVATE_KEY}
    assert spec.display_name == "slot"


def _with(path: list, value) -> dict:
    wire = _minimal() | {
        "properties": [{"name": "mode", "type": "choice", "choices": ["a", "b"], "default": "a"}]
    }
    wire = copy.deepcopy(wire)
    target = wire
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return wire


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["short_name"], "1bad", "must start with a letter"),
        (["short_name"], "x" * 41, "at most 40"),
        (["name"], "", "non-empty string"),
        (["name"], "a\x00b", "no NUL"),
        (["schema_version"], 0, "positive integer"),
        (["schema_version"], True, "positive integer"),
        (["operations"], [], "non-empty list"),
        (["operations"], ["inventory", "explode"], "'explode' is not one of"),
        (["private_key"], "sometimes", "is not one of"),
        (["password"], "maybe", "is not one of"),
        (["properties"], "mode", "a list"),
        (["properties", 0, "name"], "Mode", "lowercase"),
        (["properties", 0, "type"], "float", "is not one of"),
        (["properties", 0, "choices"], [], "needs its choices"),
        (["properties", 0, "default"], "c", "not a valid choice value"),
        (["properties", 0, "required"], "yes", "true or false"),
        (["properties", 0, "depends_on"], {"name": "other", "value": 1}, "no property 'other'"),
        (["properties", 0, "required_when"], ["add"], "entry parameters only"),
    ],
)
def test_a_bad_declaration_names_its_field(path, value, message):
    with pytest.raises(DeclarationError, match=message):
        declaration_from_wire(_with(path, value))


def test_a_property_declared_twice_is_refused():
    wire = _minimal() | {"properties": [{"name": "a"}, {"name": "a"}]}
    with pytest.raises(DeclarationError, match="declared twice"):
        declaration_from_wire(wire)


def test_a_secret_has_no_default():
    wire = _minimal() | {"properties": [{"name": "token", "type": "secret", "default": "x"}]}
    with pytest.raises(DeclarationError, match="no default"):
        declaration_from_wire(wire)


@pytest.mark.parametrize("data", [None, [], "PEM", 3])
def test_not_an_object(data):
    with pytest.raises(DeclarationError, match="JSON object"):
        declaration_from_wire(data)


def test_values_fit_their_type():
    spec = declaration_from_wire(
        _minimal() | {"properties": [{"name": "n", "type": "int"}, {"name": "b", "type": "bool"}]}
    ).properties
    assert property_value_fits(spec[0], 3) and not property_value_fits(spec[0], True)
    assert property_value_fits(spec[1], False) and not property_value_fits(spec[1], "false")
    assert property_value_fits(spec[0], None)
