"""Declared parameters: what a handler asks for, and the one checker every caller uses.

A handler class declares its parameters as a tuple of :class:`Parameter`. Django admin
renders one form field per declaration, the platform checks every stored configuration
with :func:`parameters_check` before saving it, and the handler receives the checked
values (defaults filled in, secrets decrypted) as ``self.config``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Parameter:
    """One value a handler needs from whoever registers it.

    Attributes:
        name: The key in ``self.config``: a letter or ``_``, then letters, digits, ``_``.
        type: What kind of value it is; decides the form field and the check.
        help: One sentence shown under the field in admin.
        required: Whether a registration must give it (a default makes it optional).
        default: Used when the registration leaves it out; must pass the same check.
        choices: The allowed values of a ``CHOICE`` parameter.
        minimum, maximum: Bounds of an ``INTEGER`` parameter.
        pattern: A regular expression a ``STRING`` value must match in full.
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
        if parameter.default is not None:
            value_check(parameter, parameter.default)


def value_check(parameter: Parameter, value: Any) -> Any:
    """The value converted to the parameter's type; ``ValueError`` with a sentence if wrong."""
    kind = parameter.type
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


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


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
        if _empty(value):
            if parameter.default is not None:
                checked[name] = parameter.default
            elif parameter.required:
                errors[name] = "is required"
            continue
        try:
            checked[name] = value_check(parameter, value)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise ParameterError(errors)
    return checked
