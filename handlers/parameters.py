"""Declared parameters: what a handler asks for, and the one checker every caller uses.

A handler class declares its parameters as a tuple of :class:`Parameter`. Django admin
renders one form field per declaration, the platform checks every stored configuration
with :func:`parameters_check` before saving it, and the handler receives the checked
values (defaults filled in, secrets decrypted) as ``self.config``.

Every checked value is JSON-compatible (it is stored in the registration's JSON column):
a ``MAPPING`` is a ``dict[str, str]``, a ``JSON`` value whatever JSON can hold.

``MAPPING`` takes a mapping or ``key=value`` lines (:func:`mapping_parse`: blank lines
and ``#`` comments skipped, keys and values trimmed, keys non-empty and unique; an error
names the line). ``JSON`` takes a decoded value or JSON text — a text is always read as
JSON, so the string ``ops`` is ``'"ops"'`` — and enforces the parameter's ``schema`` with
the ``jsonschema`` library (a ``$ref`` is never fetched). Secrets are never parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from orchestrators.secret_refs import is_reference, reference_parse

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"https?://[^\s/$.?#][^\s]*", re.IGNORECASE)


class ParameterType(StrEnum):
    """The kinds of value a parameter holds. Each maps to one form field in admin."""

    STRING = "string"
    TEXT = "text"  # several lines
    INTEGER = "integer"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    EMAIL = "email"
    URL = "url"
    LIST = "list"  # of strings; one per line in the form
    SECRET = "secret"  # noqa: S105 - a string stored encrypted, never shown again
    MAPPING = "mapping"  # dict[str, str]; key=value lines in the form
    JSON = "json"  # any JSON value, optionally checked against a JSON Schema


@dataclass(frozen=True, slots=True)
class Parameter:
    """One value a handler needs from whoever registers it.

    Attributes:
        name: The key in ``self.config``: a letter or ``_``, then letters, digits, ``_``.
        type: What kind of value it is; decides the form field and the check.
        help: One sentence shown under the field in admin.
        required: Whether a registration must give it (a default makes it optional).
        default: Used when the registration leaves it out; must pass the same check. A
            ``MAPPING`` or ``JSON`` default may be written as text (lines, JSON text);
            each check hands out a fresh copy of it.
        choices: The allowed values of a ``CHOICE`` parameter.
        minimum, maximum: Bounds of an ``INTEGER`` parameter.
        pattern: A regular expression a ``STRING`` value must match in full.
        schema: A JSON Schema (as a mapping) a ``JSON`` value must satisfy; the error
            names the failing place, e.g. ``at $.retries: 11 is greater than the
            maximum of 10``. Checked itself when the class is loaded.
    """

    name: str
    type: ParameterType = ParameterType.STRING
    help: str = ""
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    label: str = field(default="")
    # Left out of the hash: a mapping is not hashable, and the name identifies a parameter.
    schema: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def secret(self) -> bool:
        return self.type == ParameterType.SECRET

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


class ParameterError(ValueError):
    """Values that do not match the declarations; ``errors`` maps each name to why."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


def declarations_check(declared: Sequence[Parameter]) -> None:
    """Raise ``TypeError`` when a class's declarations are themselves wrong (a bug in it)."""
    seen: set[str] = set()
    for parameter in declared:
        if not isinstance(parameter, Parameter):
            raise TypeError(f"{parameter!r} is not a Parameter")
        if not _NAME.fullmatch(parameter.name) or parameter.name in seen:
            raise TypeError(f"parameter name {parameter.name!r} is invalid or declared twice")
        seen.add(parameter.name)
        if parameter.type == ParameterType.CHOICE and not parameter.choices:
            raise TypeError(f"choice parameter {parameter.name} declares no choices")
        if parameter.schema is not None:
            _schema_check(parameter)
        if parameter.default is not None:
            try:
                value_check(parameter, parameter.default)
            except ValueError as exc:
                raise TypeError(f"the default of {parameter.name} is refused: {exc}") from exc


def _schema_check(parameter: Parameter) -> None:
    if parameter.type != ParameterType.JSON:
        raise TypeError(f"parameter {parameter.name} declares a schema but is not of type JSON")
    if not isinstance(parameter.schema, Mapping):
        raise TypeError(f"the schema of {parameter.name} is not a mapping (a JSON Schema object)")
    try:
        schema = _json_copy(parameter.schema)
    except ValueError as exc:
        raise TypeError(f"the schema of {parameter.name} is not JSON: {exc}") from exc
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise TypeError(
            f"the schema of {parameter.name} is not a valid JSON Schema: "
            f"at {exc.json_path}: {exc.message}"
        ) from exc


# --- MAPPING: key=value lines ---------------------------------------------------------


def mapping_parse(lines: str | Iterable[str], *, separator: str = "=") -> dict[str, str]:
    """``key=value`` lines as a dict; ``ValueError`` naming the first wrong line.

    ``lines`` is one text (split at line breaks) or its lines. Blank lines and lines
    starting with ``#`` are skipped, but counted, so a line number is the one a person
    sees. A line splits at its first ``separator``: the value may hold more. Keys and
    values are trimmed of surrounding whitespace; a key must be non-empty and appear once;
    a value may be empty (``key=``). Handler authors call it as
    :func:`handlers.helpers.key_values`.
    """
    if not separator:
        raise ValueError("the separator must not be empty")
    if isinstance(lines, str):
        lines = lines.splitlines()
    result: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        line = str(raw).strip()
        if not line or line.startswith("#"):
            continue
        key, found, value = line.partition(separator)
        key, value = key.strip(), value.strip()
        if not found:
            raise ValueError(
                f"line {number}: {_shorten(line)!r} has no {separator!r} "
                f"(write key{separator}value)"
            )
        if not key:
            raise ValueError(f"line {number}: the key before {separator!r} is empty")
        if key in result:
            raise ValueError(
                f"line {number}: the key {key!r} is given twice (first on line {first_line[key]})"
            )
        result[key] = value
        first_line[key] = number
    return result


def mapping_text(mapping: Mapping[str, Any]) -> str:
    """A mapping as the ``key=value`` lines :func:`mapping_parse` reads back the same."""
    return "\n".join(f"{key}={value}" for key, value in mapping.items())


def _mapping_check(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return mapping_parse(value)
    if not isinstance(value, Mapping):
        raise ValueError("must be key=value lines or an object of texts")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(f"the key {_shorten(str(key))!r} must be a text")
        if not isinstance(item, str):
            raise ValueError(f"the value of {_shorten(key)!r} must be a text")
        # The same rules as the lines, so a stored mapping shows as lines and reads back.
        name, item = key.strip(), item.strip()
        if not name:
            raise ValueError("a key is empty")
        if "=" in name or name.startswith("#") or "\n" in name or "\r" in name:
            raise ValueError(
                f"the key {_shorten(name)!r} must not hold '=' or a line break, or start with '#'"
            )
        if "\n" in item or "\r" in item:
            raise ValueError(f"the value of {_shorten(name)!r} must be on one line")
        if "\x00" in name or "\x00" in item:
            raise ValueError("must not contain NUL characters")
        if name in result:
            raise ValueError(f"the key {_shorten(name)!r} is given twice")
        result[name] = item
    return result


# --- JSON: any JSON value, optionally a schema ------------------------------------------

#: The longest JSON text a ``JSON`` parameter takes (a registration is configuration).
JSON_MAX_CHARACTERS = 100_000


def json_text(value: Any) -> str:
    """A JSON value as the indented text the admin form shows."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def _json_copy(value: Any) -> Any:
    """A JSON-compatible deep copy (tuples become lists); ``ValueError`` if not JSON."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"must be a JSON value ({exc})") from exc
    except RecursionError as exc:
        raise ValueError("is nested too deeply") from exc
    return json.loads(text)


def _json_check(parameter: Parameter, value: Any) -> Any:
    if isinstance(value, str):
        # A text is JSON text: the string "ops" is given as '"ops"'.
        if len(value) > JSON_MAX_CHARACTERS:
            raise ValueError(f"must be at most {JSON_MAX_CHARACTERS} characters of JSON")
        try:
            value = json.loads(value, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from exc
        except RecursionError as exc:
            raise ValueError("is nested too deeply") from exc
    else:
        value = _json_copy(value)
        if len(json.dumps(value, ensure_ascii=False)) > JSON_MAX_CHARACTERS:
            raise ValueError(f"must be at most {JSON_MAX_CHARACTERS} characters of JSON")
    if parameter.schema is not None:
        _schema_enforce(parameter.schema, value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"is not valid JSON: {name} is not a JSON number")


def _schema_enforce(schema: Mapping[str, Any], value: Any) -> None:
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    try:
        errors = sorted(
            validator.iter_errors(value), key=jsonschema.exceptions.relevance, reverse=True
        )
    except RecursionError as exc:
        raise ValueError("is nested too deeply") from exc
    except jsonschema.exceptions.SchemaError as exc:  # checked at load: a bug
        raise ValueError(
            f"cannot be checked: its declared schema is invalid ({exc.message})"
        ) from exc
    except Exception as exc:  # an unresolvable $ref (never fetched): the declaration's bug
        raise ValueError(f"cannot be checked: its declared schema cannot be used ({exc})") from exc
    if not errors:
        return
    # The most relevant first (jsonschema's own order), at most three, each with its place.
    errors = [jsonschema.exceptions.best_match(errors), *errors]
    messages: list[str] = []
    for error in errors:
        message = f"at {error.json_path}: {_shorten(error.message, 200)}"
        if message not in messages:
            messages.append(message)
    shown = "; ".join(messages[:3])
    more = len(messages) - 3
    raise ValueError(shown + (f" (and {more} more)" if more > 0 else ""))


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def value_check(parameter: Parameter, value: Any) -> Any:
    """The value converted to the parameter's type; ``ValueError`` with a sentence if wrong."""
    kind = parameter.type
    if kind == ParameterType.MAPPING:
        return _mapping_check(value)
    if kind == ParameterType.JSON:
        return _json_check(parameter, value)
    if kind == ParameterType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    if kind == ParameterType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value.strip()):
                value = int(value)
            else:
                raise ValueError("must be a whole number")
        if parameter.minimum is not None and value < parameter.minimum:
            raise ValueError(f"must be at least {parameter.minimum}")
        if parameter.maximum is not None and value > parameter.maximum:
            raise ValueError(f"must be at most {parameter.maximum}")
        return value
    if kind == ParameterType.LIST:
        if isinstance(value, str):
            value = [line.strip() for line in value.splitlines() if line.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of texts")
        return list(value)
    if not isinstance(value, str):
        raise ValueError("must be a text")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if kind == ParameterType.SECRET and is_reference(value):
        # A reference (ref+platform:... resolved by the platform at the call): its form only.
        reference_parse(value)
    if kind not in (ParameterType.TEXT, ParameterType.SECRET):
        value = value.strip()
    if kind == ParameterType.CHOICE and value not in parameter.choices:
        raise ValueError(f"must be one of {', '.join(parameter.choices)}")
    if kind == ParameterType.EMAIL and not _EMAIL.fullmatch(value):
        raise ValueError("must be an email address (name@example.com)")
    if kind == ParameterType.URL and not _URL.fullmatch(value):
        raise ValueError("must be an http:// or https:// URL")
    if (
        kind == ParameterType.STRING
        and parameter.pattern
        and not re.fullmatch(parameter.pattern, value)
    ):
        raise ValueError(f"must match the pattern {parameter.pattern}")
    return value


def value_empty(parameter: Parameter, value: Any) -> bool:
    """Whether a value counts as not given, so the default applies (``None``, a blank
    text, an empty list or mapping; for ``JSON`` only ``None`` and a blank text)."""
    if parameter.type == ParameterType.JSON:
        # false, 0, [] and {} are values; only nothing (or a blank text) is not.
        return value is None or (isinstance(value, str) and not value.strip())
    if parameter.type == ParameterType.MAPPING:
        return value is None or value == {} or (isinstance(value, str) and not value.strip())
    return value is None or value == "" or value == []


def _default(parameter: Parameter) -> Any:
    if parameter.type in (ParameterType.MAPPING, ParameterType.JSON):
        # Converted (a text default is read), and a copy: a handler that changes its
        # self.config must not change the class's default.
        return value_check(parameter, parameter.default)
    return parameter.default


def parameters_check(declared: Sequence[Parameter], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values checked against the declarations, defaults filled in.

    Unknown names, missing required values and values of the wrong type are all reported
    at once in a :class:`ParameterError`, one sentence per parameter.
    """
    if not isinstance(values, Mapping):
        raise ParameterError({"parameters": "must be an object of name: value"})
    by_name = {parameter.name: parameter for parameter in declared}
    errors: dict[str, str] = {}
    for name in sorted(set(values) - set(by_name)):
        allowed = ", ".join(by_name) or "none"
        errors[str(name)] = f"is not a parameter of this handler (its parameters: {allowed})"
    checked: dict[str, Any] = {}
    for name, parameter in by_name.items():
        value = values.get(name)
        if value_empty(parameter, value):
            if parameter.default is not None:
                checked[name] = _default(parameter)
            elif parameter.required:
                errors[name] = "is required"
            continue
        try:
            checked[name] = value_check(parameter, value)
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        if parameter.type == ParameterType.MAPPING and not checked[name]:
            # Only comments: as good as empty.
            del checked[name]
            if parameter.default is not None:
                checked[name] = _default(parameter)
            elif parameter.required:
                errors[name] = "is required"
    if errors:
        raise ParameterError(errors)
    return checked
