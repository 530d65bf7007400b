"""Store-type declarations: what a store type says about itself, and the built-in ones.

An agent sends the declaration of every store type it carries (``POST store-types``); the
platform creates the store type from it, or updates it when ``schema_version`` grew, and
migrates the existing stores' properties (new properties get their defaults; a value whose
choice was removed is flagged on the store, never silently emptied). Console and API forms
for stores and jobs are generated from it. Part of the wire protocol: Django-free, imported
by both sides.

A third-party store type declares itself by setting ``declaration`` on its
:class:`~orchestrators.sdk.StoreTypeExtension` subclass::

    declaration = StoreTypeDeclaration(
        short_name="ACME_APPLIANCE",
        name="ACME appliance slot",
        schema_version=1,
        operations=frozenset({StoreOperation.INVENTORY, StoreOperation.ADD}),
        properties=(
            PropertySpec("port", "Port", PropertyType.INT, default=443),
            PropertySpec("mode", "Mode", PropertyType.CHOICE, choices=("a", "b"), default="a"),
        ),
        private_key=Policy.REQUIRED,
    )
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrators.protocol import StoreOperation

SHORT_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
PROPERTY_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
MAX_PROPERTIES = 50
MAX_CHOICES = 100
MAX_TEXT = 500


class DeclarationError(ValueError):
    """A declaration that is not well formed; the message says which field and why."""


class PropertyType(enum.StrEnum):
    STRING = "string"
    BOOL = "bool"
    INT = "int"
    SECRET = "secret"  # noqa: S105 (a property type, not a password)
    CHOICE = "choice"


class Policy(enum.StrEnum):
    """Whether a private key (or a custom alias) is forbidden, optional or required."""

    FORBIDDEN = "forbidden"
    OPTIONAL = "optional"
    REQUIRED = "required"


class PasswordStyle(enum.StrEnum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


class RequiredWhen(enum.StrEnum):
    """When an entry parameter must be given."""

    HAS_PRIVATE_KEY = "has_private_key"
    ADD = "add"
    REMOVE = "remove"
    REENROLLMENT = "reenrollment"


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """A typed store property (or, in ``entry_parameters``, a per-entry job parameter).

    ``depends_on`` is ``(other property, value)``: the property applies only when the other
    one has that value. ``required_when`` is for entry parameters only.
    """

    name: str
    display_name: str
    type: PropertyType = PropertyType.STRING
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    depends_on: tuple[str, Any] | None = None
    help: str = ""
    required_when: frozenset[RequiredWhen] = frozenset()

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "type": str(self.type),
            "required": self.required,
            "default": self.default,
            "choices": list(self.choices),
            "depends_on": (
                None
                if self.depends_on is None
                else {"name": self.depends_on[0], "value": self.depends_on[1]}
            ),
            "help": self.help,
            "required_when": sorted(str(item) for item in self.required_when),
        }


@dataclass(frozen=True, slots=True)
class StoreTypeDeclaration:
    """Everything the platform needs to know about a store type to manage its stores."""

    short_name: str
    name: str
    schema_version: int = 1
    operations: frozenset[StoreOperation] = frozenset({StoreOperation.INVENTORY})
    properties: tuple[PropertySpec, ...] = ()
    entry_parameters: tuple[PropertySpec, ...] = ()
    private_key: Policy = Policy.OPTIONAL
    custom_alias: Policy = Policy.OPTIONAL
    password: PasswordStyle = PasswordStyle.NONE
    store_path_hint: str = ""
    description: str = field(default="")
    # "path": the store path is a file or folder on the machine (checked against the agent's
    # store roots); "targets": network targets (see orchestrators.scan), checked against
    # what the agent allows to be scanned instead.
    store_path_kind: str = "path"

    def to_wire(self) -> dict[str, Any]:
        return {
            "short_name": self.short_name,
            "name": self.name,
            "schema_version": self.schema_version,
            "operations": sorted(str(operation) for operation in self.operations),
            "properties": [spec.to_wire() for spec in self.properties],
            "entry_parameters": [spec.to_wire() for spec in self.entry_parameters],
            "private_key": str(self.private_key),
            "custom_alias": str(self.custom_alias),
            "password": str(self.password),
            "store_path_hint": self.store_path_hint,
            "description": self.description,
            # Left out for a path, so declarations made before it existed stay unchanged.
            **({"store_path_kind": self.store_path_kind} if self.store_path_kind != "path" else {}),
        }


def _text(data: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key, "" if not required else None)
    if not isinstance(value, str) or (required and not value.strip()):
        raise DeclarationError(f"{where}.{key}: a non-empty string is required")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise DeclarationError(f"{where}.{key}: at most {MAX_TEXT} characters, no NUL")
    return value


def _enum(enum_type: type[enum.StrEnum], value: Any, where: str) -> Any:
    allowed = [member.value for member in enum_type]
    if value not in allowed:
        raise DeclarationError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return enum_type(value)


def _value_fits(spec_type: PropertyType, value: Any, choices: tuple[str, ...]) -> bool:
    if value is None:
        return True
    if spec_type is PropertyType.BOOL:
        return isinstance(value, bool)
    if spec_type is PropertyType.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec_type is PropertyType.CHOICE:
        return value in choices
    return isinstance(value, str)


def property_value_fits(spec: PropertySpec, value: Any) -> bool:
    """Whether ``value`` is a valid value of the property (``None``: unset)."""
    return _value_fits(spec.type, value, spec.choices)


def _spec_from_wire(data: Any, where: str, *, entry: bool) -> PropertySpec:
    if not isinstance(data, dict):
        raise DeclarationError(f"{where}: an object is required")
    name = _text(data, "name", where)
    if not PROPERTY_NAME_PATTERN.match(name):
        raise DeclarationError(f"{where}.name: {name!r} must be lowercase letters, digits, _")
    spec_type = _enum(PropertyType, data.get("type", "string"), f"{where}.type")
    choices_raw = data.get("choices") or []
    if not isinstance(choices_raw, list) or len(choices_raw) > MAX_CHOICES:
        raise DeclarationError(f"{where}.choices: a list of at most {MAX_CHOICES} strings")
    choices = tuple(choices_raw)
    if any(not isinstance(choice, str) or not choice or len(choice) > 200 for choice in choices):
        raise DeclarationError(f"{where}.choices: each choice is a non-empty string")
    if spec_type is PropertyType.CHOICE and not choices:
        raise DeclarationError(f"{where}.choices: a choice property needs its choices")
    required = data.get("required", False)
    if not isinstance(required, bool):
        raise DeclarationError(f"{where}.required: true or false")
    default = data.get("default")
    if spec_type is PropertyType.SECRET and default not in (None, ""):
        raise DeclarationError(f"{where}.default: a secret property has no default")
    if not _value_fits(spec_type, default, choices):
        raise DeclarationError(f"{where}.default: {default!r} is not a valid {spec_type} value")
    depends_raw = data.get("depends_on")
    depends_on = None
    if depends_raw is not None:
        if not isinstance(depends_raw, dict) or not isinstance(depends_raw.get("name"), str):
            raise DeclarationError(f"{where}.depends_on: {{'name': ..., 'value': ...}}")
        depends_on = (depends_raw["name"], depends_raw.get("value"))
    when_raw = data.get("required_when") or []
    if not isinstance(when_raw, list) or (when_raw and not entry):
        raise DeclarationError(f"{where}.required_when: a list, for entry parameters only")
    required_when = frozenset(
        _enum(RequiredWhen, item, f"{where}.required_when") for item in when_raw
    )
    return PropertySpec(
        name=name,
        display_name=_text(data, "display_name", where, required=False) or name,
        type=spec_type,
        required=required,
        default=default,
        choices=choices,
        depends_on=depends_on,
        help=_text(data, "help", where, required=False),
        required_when=required_when,
    )


def _specs_from_wire(data: Any, where: str, *, entry: bool) -> tuple[PropertySpec, ...]:
    if data is None:
        return ()
    if not isinstance(data, list) or len(data) > MAX_PROPERTIES:
        raise DeclarationError(f"{where}: a list of at most {MAX_PROPERTIES} properties")
    specs = tuple(
        _spec_from_wire(item, f"{where}[{index}]", entry=entry) for index, item in enumerate(data)
    )
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DeclarationError(f"{where}: {', '.join(duplicates)} declared twice")
    for spec in specs:
        if spec.depends_on is not None and spec.depends_on[0] not in names:
            raise DeclarationError(
                f"{where}.{spec.name}.depends_on: no property {spec.depends_on[0]!r}"
            )
    return specs


def declaration_from_wire(data: Any) -> StoreTypeDeclaration:
    """Check and build a declaration from its JSON form (what an agent sent).

    Raises:
        DeclarationError: naming the first field that is wrong.
    """
    if not isinstance(data, dict):
        raise DeclarationError("a store-type declaration is a JSON object")
    short_name = _text(data, "short_name", "declaration")
    if not SHORT_NAME_PATTERN.match(short_name):
        raise DeclarationError(
            f"declaration.short_name: {short_name!r} must start with a letter and hold at most "
            "40 letters, digits, '_', '.' or '-'"
        )
    where = f"store type {short_name}"
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 1_000_000:
        raise DeclarationError(f"{where}.schema_version: a positive integer")
    operations_raw = data.get("operations")
    if not isinstance(operations_raw, list) or not operations_raw:
        raise DeclarationError(f"{where}.operations: a non-empty list")
    operations = frozenset(
        _enum(StoreOperation, item, f"{where}.operations") for item in operations_raw
    )
    return StoreTypeDeclaration(
        short_name=short_name,
        name=_text(data, "name", where),
        schema_version=version,
        operations=operations,
        properties=_specs_from_wire(data.get("properties"), f"{where}.properties", entry=False),
        entry_parameters=_specs_from_wire(
            data.get("entry_parameters"), f"{where}.entry_parameters", entry=True
        ),
        private_key=_enum(Policy, data.get("private_key", "optional"), f"{where}.private_key"),
        custom_alias=_enum(Policy, data.get("custom_alias", "optional"), f"{where}.custom_alias"),
        password=_enum(PasswordStyle, data.get("password", "none"), f"{where}.password"),
        store_path_hint=_text(data, "store_path_hint", where, required=False),
        description=_text(data, "description", where, required=False),
        store_path_kind=_path_kind(data.get("store_path_kind", "path"), where),
    )


STORE_PATH_KINDS = ("path", "targets")


def _path_kind(value: Any, where: str) -> str:
    if value not in STORE_PATH_KINDS:
        raise DeclarationError(f"{where}.store_path_kind: one of {', '.join(STORE_PATH_KINDS)}")
    return str(value)


_ALL = frozenset(StoreOperation)
_BACKUP = PropertySpec(
    "backup",
    "Keep a backup",
    PropertyType.BOOL,
    default=False,
    help="Before a write, keep the previous file as <name>.certyard-bak-<time>.",
)
_FILE_MODE = PropertySpec(
    "file_mode",
    "Mode of new files",
    PropertyType.STRING,
    default="",
    help="Octal mode for a file the store creates (e.g. 0640); empty: 0600 for files with a "
    "private key, else the folder's default.",
)
_FILE_GROUP = PropertySpec(
    "file_group",
    "Group of new files",
    PropertyType.STRING,
    default="",
    help="Group for a file the store creates; empty: the folder's group.",
)

PEM_DECLARATION = StoreTypeDeclaration(
    short_name="PEM",
    name="PEM files",
    schema_version=2,
    operations=_ALL,
    properties=(
        PropertySpec("recursive", "Read subfolders", PropertyType.BOOL, default=False),
        PropertySpec(
            "file_patterns",
            "File-name patterns",
            PropertyType.STRING,
            default="*.pem,*.crt,*.cer,*.der,*.p7b,*.p7c,*.p12,*.pfx",
        ),
        PropertySpec(
            "key_file",
            "Private key file",
            PropertyType.CHOICE,
            choices=("same", "separate"),
            default="same",
            help="Write a certificate's key into its file, or into <alias>.key beside it.",
        ),
        PropertySpec(
            "key_format",
            "Format of new keys",
            PropertyType.CHOICE,
            choices=("pkcs8", "pkcs1", "sec1"),
            default="pkcs8",
            help="A key replacing one already there keeps the format found.",
        ),
        PropertySpec("include_chain", "Write the chain", PropertyType.BOOL, default=True),
        _BACKUP,
        _FILE_MODE,
        _FILE_GROUP,
    ),
    private_key=Policy.OPTIONAL,
    custom_alias=Policy.OPTIONAL,
    password=PasswordStyle.OPTIONAL,
    store_path_hint="A folder (/etc/ssl/site) or one bundle file (/etc/ssl/bundle.pem)",
    description="A folder of PEM, DER, PKCS#7 or PKCS#12 files, or one bundle file.",
)

PKCS12_DECLARATION = StoreTypeDeclaration(
    short_name="PKCS12",
    name="PKCS#12 file",
    schema_version=1,
    operations=_ALL,
    properties=(
        PropertySpec(
            "profile",
            "Encryption profile",
            PropertyType.CHOICE,
            choices=("found", "aes256", "3des", "rc2"),
            default="found",
            help="found: keep the scheme the file was found in (AES-256 for a new file); "
            "3des and rc2 are for consumers that cannot read AES.",
        ),
        _BACKUP,
        _FILE_MODE,
        _FILE_GROUP,
    ),
    entry_parameters=(),
    private_key=Policy.OPTIONAL,
    custom_alias=Policy.OPTIONAL,
    password=PasswordStyle.REQUIRED,
    store_path_hint="/etc/app/keystore.p12",
    description="One PKCS#12 (.p12/.pfx) keystore of several entries.",
)


def _java_declaration(short_name: str, name: str) -> StoreTypeDeclaration:
    return StoreTypeDeclaration(
        short_name=short_name,
        name=name,
        schema_version=1,
        operations=_ALL,
        properties=(_BACKUP, _FILE_MODE, _FILE_GROUP),
        entry_parameters=(
            PropertySpec(
                "entry_password",
                "Entry password",
                PropertyType.SECRET,
                help="The key entry's own password; empty: the store password.",
            ),
        ),
        private_key=Policy.OPTIONAL,
        custom_alias=Policy.REQUIRED,
        password=PasswordStyle.REQUIRED,
        store_path_hint="/etc/app/keystore.jks",
        description=f"A Java {short_name} keystore (aliases compared as Java does).",
    )


JKS_DECLARATION = _java_declaration("JKS", "Java keystore (JKS)")
JCEKS_DECLARATION = _java_declaration("JCEKS", "Java keystore (JCEKS)")

TLS_MAX_CONCURRENCY = 256
TLS_DECLARATION = StoreTypeDeclaration(
    short_name="TLS",
    name="TLS endpoints (network scan)",
    schema_version=1,
    operations=frozenset({StoreOperation.INVENTORY}),
    properties=(
        PropertySpec(
            "ports",
            "Ports",
            PropertyType.STRING,
            required=True,
            default="443",
            help="Ports and ranges to try on every target: 443, 8443, 9000-9010.",
        ),
        PropertySpec(
            "sni_names",
            "Server names (SNI)",
            PropertyType.STRING,
            default="",
            help="Names to ask every endpoint for, comma-separated; empty: a name target "
            "is asked for its own name, an address for none.",
        ),
        PropertySpec(
            "concurrency",
            "Connections at once",
            PropertyType.INT,
            default=32,
            help=f"At most {TLS_MAX_CONCURRENCY}.",
        ),
        PropertySpec(
            "rate_per_second",
            "New connections per second",
            PropertyType.INT,
            default=200,
        ),
        PropertySpec("connect_timeout", "Connect timeout (seconds)", PropertyType.INT, default=3),
        PropertySpec(
            "handshake_timeout", "Handshake timeout (seconds)", PropertyType.INT, default=5
        ),
    ),
    private_key=Policy.FORBIDDEN,
    custom_alias=Policy.FORBIDDEN,
    password=PasswordStyle.NONE,
    store_path_hint="Targets: www.example.com, 10.0.4.7, 10.0.5.0/28",
    store_path_kind="targets",
    description="The certificates TLS servers present, found by connecting to host names, "
    "addresses and ranges on the given ports, within what the agent allows.",
)


BUILTIN_DECLARATIONS: dict[str, StoreTypeDeclaration] = {
    declaration.short_name: declaration
    for declaration in (
        PEM_DECLARATION,
        PKCS12_DECLARATION,
        JKS_DECLARATION,
        JCEKS_DECLARATION,
        TLS_DECLARATION,
    )
}
