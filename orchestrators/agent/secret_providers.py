"""The agent's secret providers and the resolution of a job's references
(``orchestrators.secret_refs``).

Built-in providers: ``env`` (a variable of the agent's environment), ``file`` (a file only
the agent's user may read: owned by it, mode 0600 or 0400; the first line, without its
line break) and ``command`` (a command the machine's administrator named with
``certyard-orchestrator secret-command``, run without a shell, given the reference's name
as its last argument; the first line of its output). Others come from the entry-point
group ``certyard.secret_providers``; a built-in name cannot be taken by one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import subprocess
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from orchestrators.sdk import JobConfiguration
from orchestrators.secret_refs import (
    ENTRY_POINT_GROUP,
    SecretContext,
    SecretProvider,
    SecretReference,
    SecretUnavailable,
    is_reference,
    reference_parse,
)

logger = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024


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
    """``ref+agent:file:/absolute/path``: the first line of a file that only the agent's
    user may read (owned by it; no permission for group or others)."""

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
                raise SecretUnavailable(f"{name} is not owned by the agent's user")
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
                "see `certyard-orchestrator secret-command`)"
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


def _resolved(
    value: Any,
    where: str,
    providers: Mapping[str, type[SecretProvider]],
    context: SecretContext,
) -> Any:
    if not is_reference(value):
        return value
    try:
        reference: SecretReference = reference_parse(value)
    except ValueError as exc:
        raise SecretUnavailable(f"{where}: {exc}") from None
    provider = providers.get(reference.scheme)
    if provider is None:
        known = ", ".join(sorted(providers))
        raise SecretUnavailable(
            f"{where}: {reference} names provider {reference.scheme!r}, which this agent "
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


def job_secrets_resolve(
    job: JobConfiguration,
    providers: Mapping[str, type[SecretProvider]],
    context: SecretContext,
) -> JobConfiguration:
    """``job`` with every reference in its store password, store properties and entry
    parameters replaced by the secret; unchanged when it holds none.

    Raises:
        SecretUnavailable: naming the field and the reference that could not be resolved.
    """
    store = job.store
    resolve: Callable[[Any, str], Any] = lambda value, where: _resolved(  # noqa: E731
        value, where, providers, context
    )
    password = resolve(store.password, "store password")
    properties = {
        key: resolve(value, f"store property {key}") for key, value in store.properties.items()
    }
    payload = job.payload
    parameters = payload.get("entry_parameters")
    if isinstance(parameters, dict) and any(is_reference(v) for v in parameters.values()):
        payload = {
            **payload,
            "entry_parameters": {
                key: resolve(value, f"entry parameter {key}") for key, value in parameters.items()
            },
        }
    if password is store.password and properties == store.properties and payload is job.payload:
        return job
    return dataclasses.replace(
        job,
        store=dataclasses.replace(store, password=password, properties=properties),
        payload=payload,
    )
