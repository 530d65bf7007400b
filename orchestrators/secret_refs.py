"""Secret references resolved on the agent: the contract a secret provider implements, and
the reference syntax both sides share.

A secret field the platform keeps for an agent (a store password, a secret store property,
a secret entry parameter) holds either the secret itself (encrypted at rest on the
platform, as always) or a **reference** the agent resolves on its own machine, so the
platform never holds the secret at all::

    ref+agent:env:P12_PASSWORD          an environment variable of the agent's process
    ref+agent:file:/etc/certyard/p12    a file only the agent's user may read (0600 or 0400)
    ref+agent:command:pass:web/p12      a command its administrator configured
                                        (`certyard-orchestrator secret-command`), given the
                                        name as its last argument
    ref+agent:<provider>:<name>         any other provider installed beside the agent

A provider is a class implementing :class:`SecretProvider`, found through the entry-point
group ``certyard.secret_providers`` (its name is the provider's scheme)::

    [project.entry-points."certyard.secret_providers"]
    vault = "acme_certyard.vault:VaultProvider"

The agent resolves every reference in a job before the store type sees it; the store type
receives the secret as if the platform had sent it. A reference that cannot be resolved
fails the job at once (another attempt would meet it again) with a message that names the
reference, never a value. A provider must never log or return in an error what it read.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import ClassVar

ENTRY_POINT_GROUP = "certyard.secret_providers"
REFERENCE_PREFIX = "ref+agent:"
_SCHEME = r"[a-z][a-z0-9_-]{0,39}"
_REFERENCE = re.compile(rf"ref\+agent:({_SCHEME}):([^\x00-\x1f\x7f]{{1,1000}})")


class SecretUnavailable(Exception):
    """The secret a reference names cannot be had now. The message says why, for a person
    (``"environment variable P12_PASSWORD is not set"``), and never contains a secret."""


@dataclass(frozen=True, slots=True)
class SecretReference:
    """A parsed reference: the provider's scheme and the name it resolves."""

    scheme: str
    name: str

    def __str__(self) -> str:
        return f"{REFERENCE_PREFIX}{self.scheme}:{self.name}"


def is_reference(value: object) -> bool:
    """Whether ``value`` is meant as a reference (it starts with ``ref+agent:``), well
    formed or not: such a value is never used as a secret itself."""
    return isinstance(value, str) and value.startswith(REFERENCE_PREFIX)


def reference_parse(value: str) -> SecretReference:
    """The reference ``value`` names.

    Raises:
        ValueError: ``value`` is not ``ref+agent:<provider>:<name>`` (a provider of lowercase
            letters, digits, ``-`` and ``_``; a name without control characters).
    """
    match = _REFERENCE.fullmatch(value)
    if match is None:
        raise ValueError(
            "a secret reference is ref+agent:<provider>:<name>, for example "
            "ref+agent:env:P12_PASSWORD (provider: lowercase letters, digits, - or _; "
            "name: no line breaks or control characters)"
        )
    return SecretReference(match.group(1), match.group(2))


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
