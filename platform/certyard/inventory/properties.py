"""A store's properties checked against its type's declaration, and its TLS endpoint.

Pure functions (no database): the services, the API serializers and the console form use
the same ones, so the same input gets the same answer everywhere.

Secret properties are kept encrypted in ``CertificateStore.properties`` as
``{"encrypted": <token>}``; only :func:`properties_for_agent` opens them, for the job
configuration the agent fetches. Pages and API answers say whether one is set, never what.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from certyard.encryption import decrypt, encrypt
from certyard.errors import ServiceError
from orchestrators.declarations import PropertySpec, PropertyType, property_value_fits
from orchestrators.secret_refs import is_reference, reference_parse

MAX_STRING_PROPERTY = 4000
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def spec_from_stored(item: Any) -> PropertySpec | None:
    """A property spec from a store type's stored JSON (the declaration's wire form, or the
    short ``{"name", "type", "required", "default"}`` of a type made before declarations).

    Lenient: a type made by hand may hold names the declarations' pattern refuses; an item
    that is not even an object with a name is skipped.
    """
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        return None
    try:
        spec_type = PropertyType(item.get("type", "string"))
    except ValueError:
        spec_type = PropertyType.STRING
    choices = item.get("choices") or []
    depends = item.get("depends_on")
    return PropertySpec(
        name=item["name"],
        display_name=str(item.get("display_name") or item["name"]),
        type=spec_type,
        required=bool(item.get("required", False)),
        default=item.get("default"),
        choices=tuple(str(choice) for choice in choices) if isinstance(choices, list) else (),
        depends_on=(
            (str(depends["name"]), depends.get("value"))
            if isinstance(depends, Mapping) and isinstance(depends.get("name"), str)
            else None
        ),
        help=str(item.get("help") or ""),
    )


def specs_of(stored: Any) -> tuple[PropertySpec, ...]:
    """The specs of a store type's ``properties`` (or ``entry_parameters``) JSON."""
    if not isinstance(stored, list):
        return ()
    return tuple(spec for spec in map(spec_from_stored, stored) if spec is not None)


def _shown(spec: PropertySpec, value: Any) -> str:
    if spec.type is PropertyType.SECRET:
        return "the stored value"  # never a secret in a message
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def property_problem(spec: PropertySpec, value: Any, *, where: str) -> str:
    """A sentence saying why ``value`` does not fit ``spec`` (named by ``where``)."""
    if spec.type is PropertyType.CHOICE:
        return (
            f"property {spec.name}: {_shown(spec, value)} is not one of the choices of "
            f"{where} ({', '.join(spec.choices)}); choose one"
        )
    shown = _shown(spec, value)
    return f"property {spec.name}: {shown} is not a {spec.type} value as {where} requires"


def secret_reference_problem(value: str) -> str | None:
    """Why ``value``, meant as a secret reference (``ref+agent:...``), is not one; None for
    a well-formed reference or a value that is no reference."""
    if not is_reference(value):
        return None
    try:
        reference_parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def _is_encrypted(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"encrypted"}


def _applies(spec: PropertySpec, values: Mapping[str, Any]) -> bool:
    if spec.depends_on is None:
        return True
    other, wanted = spec.depends_on
    return values.get(other) == wanted


def properties_check(
    specs: Sequence[PropertySpec],
    values: Mapping[str, Any],
    *,
    current: Mapping[str, Any] | None = None,
    store_type_name: str = "",
) -> tuple[dict[str, Any], dict[str, str]]:
    """Check ``values`` against ``specs``: ``(properties to store, {name: error})``.

    Defaults fill what is not given. A secret is encrypted; a secret not given (or ``None``)
    keeps its ``current`` value, ``""`` clears it. ``depends_on``: a required property
    is required only when the property it depends on has the named value.
    """
    errors: dict[str, str] = {}
    by_name = {spec.name: spec for spec in specs}
    where = f"store type {store_type_name}" if store_type_name else "the store type"
    for name in sorted(set(values) - set(by_name)):
        allowed = ", ".join(sorted(by_name)) or "none"
        errors[str(name)[:60]] = (
            f"{where} has no property {str(name)[:60]} (its properties: {allowed})"
        )
    checked: dict[str, Any] = {}
    for spec in specs:
        value = values.get(spec.name)
        if spec.type is PropertyType.SECRET:
            if value is None:
                kept = (current or {}).get(spec.name)
                if _is_encrypted(kept):
                    checked[spec.name] = kept
                continue
            if not isinstance(value, str):
                errors[spec.name] = f"property {spec.name} must be a text (a secret)"
            elif len(value) > MAX_STRING_PROPERTY:
                errors[spec.name] = (
                    f"property {spec.name}: at most {MAX_STRING_PROPERTY} characters"
                )
            elif (problem := secret_reference_problem(value)) is not None:
                errors[spec.name] = f"property {spec.name}: {problem}"
            elif value:
                checked[spec.name] = {"encrypted": encrypt(value)}
            continue
        if value is None:
            if spec.default is not None:
                checked[spec.name] = spec.default
            continue
        if not property_value_fits(spec, value):
            if spec.type is PropertyType.CHOICE:
                errors[spec.name] = f"property {spec.name} must be one of {', '.join(spec.choices)}"
            else:
                errors[spec.name] = f"property {spec.name} must be a {spec.type}"
            continue
        if isinstance(value, str) and (len(value) > MAX_STRING_PROPERTY or "\x00" in value):
            errors[spec.name] = (
                f"property {spec.name}: at most {MAX_STRING_PROPERTY} characters, no NUL"
            )
            continue
        checked[spec.name] = value
    for spec in specs:
        if spec.name in errors or not spec.required or not _applies(spec, checked):
            continue
        if checked.get(spec.name) in (None, ""):
            errors[spec.name] = f"property {spec.name} is required for {where}"
    return checked, errors


def properties_public(specs: Sequence[PropertySpec], stored: Any) -> dict[str, Any]:
    """The properties as pages and API answers show them: a secret only as set or not."""
    stored = stored if isinstance(stored, Mapping) else {}
    secret = {spec.name for spec in specs if spec.type is PropertyType.SECRET}
    shown = {name: value for name, value in stored.items() if name not in secret}
    for name in sorted(secret):
        shown[name] = "set" if _is_encrypted(stored.get(name)) else "not set"
    return shown


def properties_for_agent(specs: Sequence[PropertySpec], stored: Any) -> dict[str, Any]:
    """The properties with their secrets opened: only for the agent's job configuration."""
    stored = stored if isinstance(stored, Mapping) else {}
    opened: dict[str, Any] = {}
    for name, value in stored.items():
        opened[name] = decrypt(value["encrypted"]) if _is_encrypted(value) else value
    return opened


# --- TLS endpoint ---------------------------------------------------------------------


def _dns_name(value: str) -> bool:
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    # An all-digit last label is an IP address typed wrong (999.1.1.1), not a name.
    return (
        0 < len(name) <= 253
        and all(_DNS_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def endpoint_check(*, host: str | None, port: Any, sni: str | None) -> tuple[str, int | None, str]:
    """The endpoint a store serves, checked: ``(host, port, sni)``; empty host: none.

    Host: a DNS name or an IP address; port 1-65535; both or neither. SNI: a DNS name
    (TLS sends no IP address as a server name), only with a host.

    Raises:
        ServiceError: naming each field that is wrong (``endpoint_host`` ...).
    """
    host = (host or "").strip().lower()
    sni = (sni or "").strip().lower()
    errors: dict[str, list[str]] = {}
    if host:
        try:
            host = str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            if not _dns_name(host):
                errors["endpoint_host"] = ["a DNS name or an IP address"]
    if port in ("", None):
        port = None
    elif isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        errors["endpoint_port"] = ["a port number from 1 to 65535"]
    if "endpoint_host" not in errors and "endpoint_port" not in errors:
        if host and port is None:
            errors["endpoint_port"] = ["give the endpoint's port with its host"]
        elif port is not None and not host:
            errors["endpoint_host"] = ["give the endpoint's host with its port"]
    if sni:
        if not host:
            errors.setdefault("endpoint_sni", []).append("a server name needs an endpoint host")
        elif not _dns_name(sni):
            errors.setdefault("endpoint_sni", []).append("a DNS name (not an IP address)")
    if errors:
        first = next(iter(errors.items()))
        raise ServiceError(f"{first[0].replace('_', ' ')}: {first[1][0]}", fields=errors)
    return host, port, sni
