"""Small helpers the built-in handlers share: settings, ``{field}`` substitution, globs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from handlers.base import EventContext, Handler, HandlerError
from handlers.parameters import value_empty

# Only {identifier} is a field: JSON or code in a template ({"a": 1}) stays as written.
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The event's own attributes win over keys of event.data of the same name.
EVENT_FIELDS = ("kind", "subject_label", "subject_type", "subject_id", "occurred_at")


def setting(handler: Handler, name: str) -> Any:
    """The configured value of a parameter, or its declared default when left out.

    The platform fills defaults in before it creates a handler; this keeps a handler that
    is created by hand (tests, a shell) behaving the same.
    """
    value = handler.config.get(name)
    for parameter in type(handler).parameters:
        # The platform's own rule of "left out" (a JSON false, 0 or [] is a value).
        if parameter.name == name and value_empty(parameter, value):
            return parameter.default
    return value


def field_text(value: Any) -> str:
    """A value as it reads inside a sentence: containers as JSON, None as nothing."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def event_fields(event: EventContext) -> dict[str, str]:
    """The ``{name}`` fields of an event: its data's keys, then its own attributes."""
    fields = {key: field_text(value) for key, value in event.data.items() if isinstance(key, str)}
    for name in EVENT_FIELDS:
        fields[name] = field_text(getattr(event, name))
    fields["event_id"] = str(event.event_id)
    fields["attempt"] = str(event.attempt)
    return fields


def substitute(template: str, fields: Mapping[str, str]) -> str:
    """``template`` with each known ``{name}`` replaced, in one pass.

    An unknown name stays as written, and a replacement is never scanned again, so braces
    inside a value (a certificate's subject, a store path) come out literally.
    """

    def replace(match: re.Match[str]) -> str:
        value = fields.get(match[1])
        return match[0] if value is None else value

    return _FIELD.sub(replace, template)


# Line breaks a glob's wildcards never match (str.splitlines' set, NUL added): a name
# holding one is never what a single-line pattern means.
_BREAKS = r"\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ANY_BUT_BREAK = f"[^{_BREAKS}]"


def glob_regex(pattern: str) -> str:
    """A shell-style glob as a regular expression (no groups): ``*``, ``?``, ``[abc]``, ``[!a]``.

    Unlike :func:`fnmatch.translate`, the result has no capturing groups, so several globs
    can be joined into one alternation and the matching one found by its group number.

    A glob never matches across lines: ``*``, ``?`` and ``[!…]`` match any character but a
    line break, whatever flags the caller compiles with (``re.DOTALL`` included), so
    ``*.prod.example.com`` does not match ``evil.test\n.prod.example.com``. The result has
    no anchors: match it with ``fullmatch`` (``$`` would accept a trailing newline).
    """
    parts: list[str] = []
    index, length = 0, len(pattern)
    while index < length:
        char = pattern[index]
        index += 1
        if char == "*":
            # Consecutive stars mean one star; more would only slow the match down.
            while index < length and pattern[index] == "*":
                index += 1
            parts.append(f"{_ANY_BUT_BREAK}*")
        elif char == "?":
            parts.append(_ANY_BUT_BREAK)
        elif char == "[":
            end = index
            if end < length and pattern[end] in "!^":
                end += 1
            if end < length and pattern[end] == "]":
                end += 1
            end = pattern.find("]", end)
            if end < 0:
                parts.append(re.escape(char))
                continue
            members = pattern[index:end]
            index = end + 1
            negate = members[:1] in ("!", "^")
            if negate:
                members = members[1:]
            escaped = "".join("-" if member == "-" else re.escape(member) for member in members)
            # A negated set excludes line breaks too; a listed set matches only what it lists.
            parts.append(f"[^{escaped}{_BREAKS}]" if negate else f"[{escaped}]")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


def glob_compile(pattern: str, *, ignore_case: bool = True) -> re.Pattern[str]:
    """One glob, compiled once; use ``.fullmatch`` (it never matches across lines)."""
    return re.compile(glob_regex(pattern), re.IGNORECASE if ignore_case else 0)


def key_value_lines(
    lines: Iterable[str], *, what: str, value_required: bool = True
) -> list[tuple[str, str]]:
    """``key=value`` lines as pairs; ``ValueError`` naming the first wrong line.

    The first ``=`` splits, so a value may hold ``=`` itself.
    """
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise ValueError(f"line {number} ({line!r}) is not {what}")
        if value_required and not value:
            raise ValueError(f"line {number} ({line!r}) has nothing after '='")
        pairs.append((key, value))
    return pairs


def failure(
    message: str, *, permanent: bool = False, output: Mapping[str, Any] | None = None
) -> HandlerError:
    """A :class:`HandlerError` carrying what the run produced, recorded on the failed run."""
    return HandlerError(message, permanent=permanent, output=output)
