"""The parameter checker's MAPPING and JSON types: what they take, what they refuse and how
they say it, and the declarations (a schema, a default) checked when a class is loaded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.base import EventContext, EventHandler, HandlerResult
from handlers.builtin._common import setting
from handlers.parameters import (
    JSON_MAX_CHARACTERS,
    Parameter,
    ParameterError,
    ParameterType,
    declarations_check,
    mapping_parse,
    mapping_text,
    parameters_check,
    value_check,
)

LABELS = Parameter("labels", ParameterType.MAPPING)
RETRY_SCHEMA = {
    "type": "object",
    "properties": {
        "retries": {"type": "integer", "minimum": 0, "maximum": 10},
        "notify": {"type": "array", "items": {"type": "string", "format": "email"}},
    },
    "required": ["retries"],
    "additionalProperties": False,
}
POLICY = Parameter("policy", ParameterType.JSON, schema=RETRY_SCHEMA)
ANY_JSON = Parameter("extra", ParameterType.JSON)


def refusal(parameter: Parameter, value: Any) -> str:
    with pytest.raises(ValueError) as refused:
        value_check(parameter, value)
    return str(refused.value)


# --- MAPPING ------------------------------------------------------------------------


def test_mapping_lines_are_read_with_comments_blanks_and_trimming() -> None:
    text = "# who owns it\nteam = ops\n\n  cost_centre=4711  \nurl=https://x.test/?a=b\nempty=\n"
    assert value_check(LABELS, text) == {
        "team": "ops",
        "cost_centre": "4711",
        "url": "https://x.test/?a=b",  # split at the first "=" only
        "empty": "",
    }
    assert value_check(LABELS, "a=1\r\nb=2") == {"a": "1", "b": "2"}
    assert value_check(LABELS, "tag=#blue") == {"tag": "#blue"}  # only a line can be a comment


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("team=ops\nno pair here", "line 2: 'no pair here' has no '=' (write key=value)"),
        ("# c\n\n=value", "line 3: the key before '=' is empty"),
        ("a=1\nb=2\n a =3", "line 3: the key 'a' is given twice (first on line 1)"),
        ("a=1\x00", "must not contain NUL characters"),
    ],
)
def test_a_wrong_mapping_line_is_named(text: str, message: str) -> None:
    assert refusal(LABELS, text) == message


def test_a_mapping_given_as_an_object_follows_the_same_rules() -> None:
    assert value_check(LABELS, {" team ": " ops "}) == {"team": "ops"}
    assert refusal(LABELS, {"a": 1}) == "the value of 'a' must be a text"
    assert refusal(LABELS, {1: "a"}) == "the key '1' must be a text"
    assert refusal(LABELS, {"": "a"}) == "a key is empty"
    assert refusal(LABELS, {"a=b": "c"}).startswith("the key 'a=b' must not hold '='")
    assert refusal(LABELS, {"#a": "c"}).endswith("or start with '#'")
    assert refusal(LABELS, {"a": "two\nlines"}) == "the value of 'a' must be on one line"
    assert refusal(LABELS, {"a": "1", " a": "2"}) == "the key 'a' is given twice"
    assert refusal(LABELS, ["a=1"]) == "must be key=value lines or an object of texts"


def test_a_stored_mapping_reads_back_the_same_from_its_lines() -> None:
    mapping = {"team": "ops", "url": "https://x.test/?a=b", "empty": ""}
    assert mapping_parse(mapping_text(mapping)) == mapping


def test_a_mapping_of_only_comments_is_not_given() -> None:
    required = Parameter("labels", ParameterType.MAPPING, required=True)
    for value in ("", "   ", "# nothing\n\n", {}, None):
        with pytest.raises(ParameterError) as refused:
            parameters_check([required], {"labels": value})
        assert refused.value.errors == {"labels": "is required"}
    defaulted = Parameter("labels", ParameterType.MAPPING, default="team=ops")
    assert parameters_check([defaulted], {"labels": "# none"}) == {"labels": {"team": "ops"}}
    assert parameters_check([LABELS], {"labels": "# none"}) == {}


# --- JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
        ('"ops"', "ops"),  # a text is JSON text
        ("0", 0),
        ("false", False),
        ({"a": (1, 2)}, {"a": [1, 2]}),  # a decoded value, made JSON-compatible
        ([], []),
    ],
)
def test_json_takes_text_or_a_decoded_value(value: Any, expected: Any) -> None:
    assert value_check(ANY_JSON, value) == expected


def test_json_false_zero_and_empty_containers_are_values_not_left_out() -> None:
    defaulted = Parameter("extra", ParameterType.JSON, default={"on": True})
    for value in (False, 0, [], {}, "false", "[]"):
        assert parameters_check([defaulted], {"extra": value})["extra"] == json.loads(
            json.dumps(value) if not isinstance(value, str) else value
        )
    assert parameters_check([defaulted], {"extra": "  "}) == {"extra": {"on": True}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"a": 1,}', "is not valid JSON: Expecting property name enclosed in double quotes"),
        ("{\n  'a': 1\n}", "(line 2, column 3)"),
        ("NaN", "is not valid JSON: NaN is not a JSON number"),
        ({"a": float("inf")}, "must be a JSON value"),
        ({"a": {1, 2}}, "must be a JSON value"),
        ("[" * 200_000, f"must be at most {JSON_MAX_CHARACTERS} characters of JSON"),
        ("[" * 50_000 + "]" * 50_000, "is nested too deeply"),
    ],
)
def test_what_is_not_json_is_refused_clearly(value: Any, message: str) -> None:
    assert message in refusal(ANY_JSON, value)


def test_a_schema_is_enforced_and_the_failing_place_named() -> None:
    assert value_check(POLICY, '{"retries": 10}') == {"retries": 10}
    assert refusal(POLICY, '{"retries": 11}') == (
        "at $.retries: 11 is greater than the maximum of 10"
    )
    assert refusal(POLICY, {"retries": 1, "notify": ["ops@x.test", 7]}) == (
        "at $.notify[1]: 7 is not of type 'string'"
    )
    assert refusal(POLICY, {"retries": 1, "notify": ["not-an-address"]}) == (
        "at $.notify[0]: 'not-an-address' is not a 'email'"
    )
    assert refusal(POLICY, {}) == "at $: 'retries' is a required property"
    assert refusal(POLICY, '"x"') == "at $: 'x' is not of type 'object'"
    several = refusal(POLICY, {"retries": -1, "notify": [1, 2, 3]})
    assert several.count("at $") == 3 and several.endswith("(and 1 more)")


def test_parameters_check_reports_mapping_and_json_errors_by_name() -> None:
    with pytest.raises(ParameterError) as refused:
        parameters_check([LABELS, POLICY], {"labels": "x", "policy": {"retries": 99}})
    assert refused.value.errors == {
        "labels": "line 1: 'x' has no '=' (write key=value)",
        "policy": "at $.retries: 99 is greater than the maximum of 10",
    }


def test_a_default_is_converted_and_copied_for_each_check() -> None:
    declared = [
        Parameter("labels", ParameterType.MAPPING, default="team=ops"),
        Parameter("policy", ParameterType.JSON, schema=RETRY_SCHEMA, default={"retries": 3}),
        Parameter("extra", ParameterType.JSON, default='{"on": true}'),
    ]
    first = parameters_check(declared, {})
    assert first == {"labels": {"team": "ops"}, "policy": {"retries": 3}, "extra": {"on": True}}
    first["policy"]["retries"] = 9
    assert parameters_check(declared, {})["policy"] == {"retries": 3}
    assert declared[1].default == {"retries": 3}


# --- Declarations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        (
            Parameter("p", ParameterType.JSON, schema={"type": "nope"}),
            "the schema of p is not a valid JSON Schema: at $.type:",
        ),
        (
            Parameter("p", ParameterType.STRING, schema={"type": "object"}),
            "parameter p declares a schema but is not of type JSON",
        ),
        (
            Parameter("p", ParameterType.JSON, schema=["not", "a", "mapping"]),  # type: ignore[arg-type]
            "the schema of p is not a mapping",
        ),
        (
            Parameter("p", ParameterType.JSON, schema=RETRY_SCHEMA, default={"retries": 11}),
            "the default of p is refused: at $.retries: 11 is greater than the maximum of 10",
        ),
        (
            Parameter("p", ParameterType.MAPPING, default="no pair"),
            "the default of p is refused: line 1:",
        ),
    ],
)
def test_wrong_declarations_are_a_type_error(parameter: Parameter, message: str) -> None:
    with pytest.raises(TypeError) as refused:
        declarations_check([parameter])
    assert message in str(refused.value)


def test_right_declarations_pass_and_stay_hashable() -> None:
    declarations_check([LABELS, POLICY, ANY_JSON])
    assert len({LABELS, POLICY, ANY_JSON}) == 3


def test_an_unresolvable_reference_is_never_fetched_and_refused_clearly() -> None:
    remote = Parameter("p", ParameterType.JSON, schema={"$ref": "https://example.invalid/s.json"})
    declarations_check([remote])
    assert refusal(remote, "{}").startswith("cannot be checked: its declared schema cannot be used")


# --- The built-ins' own reading of "left out" ----------------------------------------


class Configured(EventHandler):
    """Only for ``setting``."""

    parameters = (
        Parameter("flags", ParameterType.JSON, default=[1]),
        Parameter("labels", ParameterType.MAPPING, default={"a": "b"}),
    )

    def handle(self, event: EventContext) -> HandlerResult:
        return HandlerResult()


def test_setting_keeps_a_json_empty_list_and_defaults_an_empty_mapping() -> None:
    handler = Configured({"flags": [], "labels": {}})
    assert setting(handler, "flags") == []
    assert setting(handler, "labels") == {"a": "b"}
