"""The helpers the built-in handlers share: settings, {field} substitution, globs."""

from __future__ import annotations

import fnmatch
import re

import pytest

from handlers.builtin._common import (
    event_fields,
    glob_compile,
    glob_regex,
    key_value_lines,
    setting,
    substitute,
)
from handlers.builtin.webhook import SignedWebhook
from tests.handlers.support import expiring_event


def test_known_fields_are_replaced_and_unknown_ones_stay_as_written() -> None:
    fields = event_fields(expiring_event())
    text = substitute("{subject_label} in {days} days ({nope}) {kind} {event_id} {}", fields)
    assert text == "www.example.com in 12 days ({nope}) certificate.expiring 42 {}"


def test_braces_inside_a_value_are_not_substituted_again() -> None:
    event = expiring_event(subject_label="{kind} {days}", data={"alias": "{subject_label}"})
    assert substitute("{subject_label}|{alias}", event_fields(event)) == (
        "{kind} {days}|{subject_label}"
    )


def test_json_in_a_template_stays_as_written() -> None:
    assert substitute('{"kind": "{kind}"}', {"kind": "x"}) == '{"kind": "x"}'


def test_event_attributes_win_over_data_keys_and_values_read_as_text() -> None:
    event = expiring_event(
        data={"kind": "spoofed", "ok": True, "none": None, "list": [1, "a"], "ratio": 0.5}
    )
    fields = event_fields(event)
    assert fields["kind"] == "certificate.expiring"
    assert (fields["ok"], fields["none"], fields["list"], fields["ratio"]) == (
        "true",
        "",
        '[1, "a"]',
        "0.5",
    )


def test_a_setting_left_out_falls_back_to_its_declared_default() -> None:
    handler = SignedWebhook({"url": "http://127.0.0.1/", "attempts": None})
    assert setting(handler, "attempts") == 3
    assert setting(handler, "url") == "http://127.0.0.1/"


@pytest.mark.parametrize(
    "pattern",
    ["*.prod.example.com", "web-??.example.com", "[a-c]*", "[!x]y*", "a*b*c", "*]", "[", "a.b"],
)
def test_globs_match_like_fnmatch(pattern: str) -> None:
    names = ["www.prod.example.com", "web-01.example.com", "b1", "zy", "a1b2c", "x]", "[", "a.b"]
    names += ["axb", "prod.example.com", "web-1.example.com", "xy", "ab"]
    compiled = glob_compile(pattern, ignore_case=False)
    for name in names:
        assert bool(compiled.fullmatch(name)) == fnmatch.fnmatchcase(name, pattern), name


def test_globs_have_no_groups_so_several_join_into_one_alternation() -> None:
    rules = ["*.prod.example.com", "*[0-9]*", "*"]
    joined = re.compile("|".join(f"({glob_regex(rule)})" for rule in rules))
    assert joined.fullmatch("a.prod.example.com").lastindex == 1
    assert joined.fullmatch("host7.example.com").lastindex == 2
    assert joined.fullmatch("anything").lastindex == 3


def test_glob_compile_ignores_case_unless_told() -> None:
    assert glob_compile("*.PROD.example.com").fullmatch("www.prod.EXAMPLE.com")
    assert not glob_compile("Prod", ignore_case=False).fullmatch("prod")


def test_key_value_lines_split_at_the_first_equals_sign() -> None:
    assert key_value_lines(["a=b=c", " k = v "], what="key=value") == [("a", "b=c"), ("k", "v")]
    with pytest.raises(ValueError, match="line 2"):
        key_value_lines(["a=b", "no equals"], what="key=value")
    with pytest.raises(ValueError, match="nothing after"):
        key_value_lines(["a="], what="key=value")
    assert key_value_lines(["a="], what="key=value", value_required=False) == [("a", "")]
