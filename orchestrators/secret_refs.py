"""Secret references: the syntax both runtimes share, the contract a secret provider
implements, the built-in providers and the resolution of one value.

A secret field (a store password, a secret store property, a secret entry parameter, a
handler's or CA gateway's secret parameter) holds either the secret itself (encrypted at
rest on the platform, as always) or a **reference**. ``ref+agent:`` references are
resolved by the agent on its own machine, so the platform never holds the secret at all;
``ref+platform:`` references are resolved by the platform when it needs the value (a
gateway's credential read from a vault, a store password kept in the platform host's
environment), so its database holds only the reference::

    ref+agent:env:P12_PASSWORD          an environment variable of the agent's process
    ref+agent:file:/etc/certyard/p12    a file only the agent's user may read (0600 or 0400)
    ref+agent:command:pass:web/p12      a command its administrator configured
                                        (`certyard-orchestrator secret-command`), given the
                                        name as its last argument
    ref+agent:<provider>:<name>         any other provider installed beside the agent
    ref+platform:env:GATEWAY_TOKEN      the same providers, on the platform's host (its
                                        commands: the CERTYARD_SECRET_COMMANDS setting)

A provider is a class implementing :class:`SecretProvider`, found through the entry-point
group ``certyard.secret_providers`` (its name is the provider's scheme)::

    [project.entry-points."certyard.secret_providers"]
    vault = "acme_certyard.vault:VaultProvider"

and is used by whichever runtime it is installed beside. The agent resolves every
``ref+agent:`` reference in a job before the store type sees it; the platform resolves
``ref+platform:`` references at the one door to extension code (a handler's parameters)
and when it hands a job's configuration to its agent. A reference that cannot be resolved
fails the job or the call at once with a message that names the reference, never a value.
A provider must never log or return in an error what it read.
"""

from __future__ import annotations

import abc
import logging
import os
import re
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar, Literal

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "certyard.secret_providers"
Side = Literal["agent", "platform"]
REFERENCE_PREFIX = "ref+agent:"
PLATFORM_REFERENCE_PREFIX = "ref+platform:"
_PREFIXES: dict[str, Side] = {REFERENCE_PREFIX: "agent", PLATFORM_REFERENCE_PREFIX: "platform"}
_SCHEME = r"[a-z][a-z0-9_-]{0,39}"
_REFERENCE = re.compile(rf"ref\+(agent|platform):({_SCHEME}):([^\x00-\x1f\x7f]{{1,1000}})")
MAX_SECRET_BYTES = 64 * 1024


class SecretUnavailable(Exception):
    """The secret a reference names cannot be had now. The message says why, for a person
    (``"environment variable P12_PASSWORD is not set"``), and never contains a secret."""


@dataclass(frozen=True, slots=True)
class SecretReference:
    """A parsed reference: who resolves it, the provider's scheme, the name it resolves."""

    scheme: str
    name: str
    side: Side = "agent"

    def __str__(self) -> str:
        return f"ref+{self.side}:{self.scheme}:{self.name}"


def is_reference(value: object, side: Side | None = None) -> bool:
    """Whether ``value`` is meant as a reference (``ref+agent:`` or ``ref+platform:``; only
    ``side``'s when given), well formed or not: such a value is never a secret itself."""
    if not isinstance(value, str):
        return False
    return any(
        value.startswith(prefix) and side in (None, owner) for prefix, owner in _PREFIXES.items()
    )


def reference_parse(value: str) -> SecretReference:
    """The reference ``value`` names.

    Raises:
        ValueError: ``value`` is not ``ref+agent:<provider>:<name>`` or
            ``ref+platform:<provider>:<name>`` (a provider of lowercase letters, digits,
            ``-`` and ``_``; a name without control characters).
    """
    match = _REFERENCE.fullmatch(value)
    if match is None:
        raise ValueError(
            "a secret reference is ref+agent:<provider>:<name> (resolved by the agent) or "
            "ref+platform:<provider>:<name> (by the platform), for example "
            "ref+agent:env:P12_PASSWORD (provider: lowercase letters, digits, - or _; "
            "name: no line breaks or control characters)"
        )
    side: Side = "agent" if match.group(1) == "agent" else "platform"
    return SecretReference(match.group(2), match.group(3), side)


@dataclass(frozen=True, slots=True)
class SecretContext:
    """What the agent's administrator configured for secrets on this machine.

    Attributes:
        commands: The named commands of the ``command`` provider (``{name: argv}``), set
            with ``certyard-orchestrator secret-command`` on this machine alone.
        timeout_seconds: How long a provider may take (a command, a vault's API).
    """

    commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    timeout_seconds: float = 30.0


class SecretProvider(abc.ABC):
    """Resolves the names of one scheme (``ref+agent:<scheme>:<name>``) to secrets.

    Class attributes:
        scheme: The provider's name in references: its entry point's name.

    The agent makes a fresh instance (no arguments) for each job and calls
    :meth:`resolve` once per reference the job holds.
    """

    scheme: ClassVar[str]

    @abc.abstractmethod
    def resolve(self, name: str, context: SecretContext) -> str:
        """The secret ``name`` stands for.

        Raises:
            SecretUnavailable: it cannot be had (not there, not allowed, timed out), with a
                reason that names ``name`` at most, never what was read.
        """


def _first_line(data: bytes, what: str) -> str:
    if len(data) > MAX_SECRET_BYTES:
        raise SecretUnavailable(f"{what} holds more than {MAX_SECRET_BYTES} bytes")
    text = data.decode("utf-8", errors="strict").splitlines()
    if not text or not text[0]:
        raise SecretUnavailable(f"{what} is empty")
    return text[0]


class EnvironmentProvider(SecretProvider):
    """``ref+agent:env:NAME``: the agent process's environment variable NAME."""

    scheme: ClassVar[str] = "env"

    def resolve(self, name: str, context: SecretContext) -> str:
        value = os.environ.get(name)
        if value is None:
            raise SecretUnavailable(f"environment variable {name} is not set")
        if not value:
            raise SecretUnavailable(f"environment variable {name} is empty")
        return value


class FileProvider(SecretProvider):
    """``ref+agent:file:/absolute/path`` (or ``ref+platform:``): the first line of a file
    only the resolving process's user may read (owned by it; nothing for group or others)."""

    scheme: ClassVar[str] = "file"

    def resolve(self, name: str, context: SecretContext) -> str:
        path = Path(name)
        if not path.is_absolute():
            raise SecretUnavailable(f"{name} is not an absolute path")
        try:
            # No link is followed: a link would let someone else choose what is read.
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise SecretUnavailable(f"cannot open {name}: {exc.strerror}") from None
        with os.fdopen(descriptor, "rb") as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise SecretUnavailable(f"{name} is not a regular file")
            if status.st_uid != os.geteuid():
                raise SecretUnavailable(f"{name} is not owned by the user this process runs as")
            if status.st_mode & 0o077:
                raise SecretUnavailable(
                    f"{name} is mode {stat.S_IMODE(status.st_mode):04o}: others may read it; "
                    f"make it 0600 (chmod 600 {name})"
                )
            return _first_line(file.read(MAX_SECRET_BYTES + 1), name)


class CommandProvider(SecretProvider):
    """``ref+agent:command:<command name>:<argument>``: runs the command the machine's
    administrator configured under that name, with the argument appended (no shell)."""

    scheme: ClassVar[str] = "command"

    def resolve(self, name: str, context: SecretContext) -> str:
        command_name, _, argument = name.partition(":")
        argv = context.commands.get(command_name)
        if argv is None:
            known = ", ".join(sorted(context.commands)) or "none"
            raise SecretUnavailable(
                f"no secret command {command_name!r} on this machine (configured: {known}; "
                "an agent's are set with `certyard-orchestrator secret-command`, the "
                "platform's in CERTYARD_SECRET_COMMANDS)"
            )
        if not argument:
            raise SecretUnavailable(
                f"give the argument for {command_name}: command:{command_name}:<name>"
            )
        try:
            done = subprocess.run(
                [*argv, argument],
                capture_output=True,
                timeout=context.timeout_seconds,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise SecretUnavailable(
                f"secret command {command_name} did not answer within {context.timeout_seconds:g} s"
            ) from None
        except OSError as exc:
            raise SecretUnavailable(
                f"secret command {command_name} cannot run: {exc.strerror}"
            ) from None
        if done.returncode != 0:
            # Its error output may say why (no such entry); never its standard output.
            said = done.stderr.decode(errors="replace").strip().splitlines()
            reason = f": {said[-1][:200]}" if said else ""
            raise SecretUnavailable(
                f"secret command {command_name} failed for {argument} "
                f"(exit {done.returncode}){reason}"
            )
        return _first_line(done.stdout, f"the output of secret command {command_name}")


BUILTIN_PROVIDERS: dict[str, type[SecretProvider]] = {
    provider.scheme: provider for provider in (EnvironmentProvider, FileProvider, CommandProvider)
}


def load_secret_providers() -> dict[str, type[SecretProvider]]:
    """The built-ins and every provider of the ``certyard.secret_providers`` group whose
    class implements the contract (others are skipped with a warning)."""
    providers = dict(BUILTIN_PROVIDERS)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in BUILTIN_PROVIDERS:
            logger.warning(
                "secret provider %s: the name is a built-in's; skipped", entry_point.name
            )
            continue
        try:
            loaded = entry_point.load()
        except Exception as exc:  # a broken package must not stop the agent
            logger.warning("secret provider %s cannot be loaded: %s", entry_point.name, exc)
            continue
        if not (isinstance(loaded, type) and issubclass(loaded, SecretProvider)):
            logger.warning("secret provider %s is not a SecretProvider; skipped", entry_point.name)
            continue
        providers[entry_point.name] = loaded
    return providers


def secret_resolve(
    value: object,
    where: str,
    providers: Mapping[str, type[SecretProvider]],
    context: SecretContext,
    *,
    side: Side,
) -> object:
    """``value`` itself, or the secret it references when it is a reference ``side``
    resolves (``where`` names the field in errors).

    Raises:
        SecretUnavailable: naming ``where`` and the reference (never a value).
    """
    if not isinstance(value, str) or not is_reference(value, side):
        return value
    try:
        reference = reference_parse(value)
    except ValueError as exc:
        raise SecretUnavailable(f"{where}: {exc}") from None
    provider = providers.get(reference.scheme)
    if provider is None:
        known = ", ".join(sorted(providers))
        raise SecretUnavailable(
            f"{where}: {reference} names provider {reference.scheme!r}, which the {side} "
            f"does not have (it has: {known})"
        )
    try:
        return provider().resolve(reference.name, context)
    except SecretUnavailable as exc:
        raise SecretUnavailable(f"{where}: {reference} is unavailable: {exc}") from None
    except Exception as exc:  # a provider's bug names itself, never a value
        raise SecretUnavailable(
            f"{where}: {reference}: provider {reference.scheme} failed ({type(exc).__name__})"
        ) from None
