"""The agent's configuration directory: its registration, key and certificates.

Layout (directory mode 0700, files 0600, each written atomically)::

    key.pem     the agent's EC P-256 private key (PKCS#8, unencrypted: the directory protects it)
    key.next.pem  the key of a certificate renewal under way (see orchestrators.agent.renewal)
    cert.pem    the client certificate the platform issued, when it issued one
    ca.pem      the platform's orchestrator CA chain
    agent.json  platform_url, orchestrator_id, name, client_machine, verify_tls, store_roots,
                max_file_bytes, reload_commands, scan_targets, scan_ports, secret_commands
    state/      the store types' state, and ``device-keys/`` (keys made here for a
                reenrollment that waits for approval)

``reload_commands`` (``{real store path: [argv, ...]}``) are set on this machine alone with
``certyard-orchestrator reload``: the platform can never make the agent run a command.
``store_roots`` and ``max_file_bytes`` are set with ``certyard-orchestrator roots``; a running
agent follows them (``GuardsWatch``) and reports them to the platform. ``scan_targets``
(networks and host-name patterns) and ``scan_ports`` are what TLS scan stores may connect
to, set with ``certyard-orchestrator scan-allow`` on this machine alone: nothing, until its
administrator allows something. ``secret_commands`` (``{name: argv}``) are the commands of
the ``command`` secret provider, set with ``certyard-orchestrator secret-command``: local
only, like the reload commands.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import stat
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrators.protocol import MAX_REPORTED_STORE_ROOTS
from orchestrators.scan import ScanAllowance, ScanTargetError

HOME_ENV = "CERTYARD_ORCHESTRATOR_HOME"
KEY_FILE = "key.pem"
PENDING_KEY_FILE = "key.next.pem"
CERT_FILE = "cert.pem"
CA_FILE = "ca.pem"
AGENT_FILE = "agent.json"

logger = logging.getLogger(__name__)


class ConfigError(Exception):
    """The configuration directory is missing, incomplete or unreadable."""


class NotRegistered(ConfigError):
    """The configuration directory holds no registration."""


def default_config_dir() -> Path:
    """``$CERTYARD_ORCHESTRATOR_HOME``, else ``~/.config/certyard-orchestrator``."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home)
    return Path.home() / ".config" / "certyard-orchestrator"


def ensure_config_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or tighten it to 0700 if group or others have access."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (temp file in its dir, replace)."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


DEFAULT_MAX_FILE_BYTES = 16 * 1024 * 1024
# The platform keeps at most this many roots of an agent (protocol: POST limits).
MAX_STORE_ROOTS = MAX_REPORTED_STORE_ROOTS


def store_root_normalised(path: str | Path) -> str:
    """A store root as the agent keeps it: absolute, links and ``..`` resolved."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(str(path))))


def guards_update(
    config: AgentConfig,
    *,
    add: list[str] | None = None,
    remove: list[str] | None = None,
    max_file_bytes: int | None = None,
) -> AgentConfig:
    """Change the store roots or the file size limit and save them; the new config."""
    roots = list(config.store_roots)
    for path in add or []:
        root = store_root_normalised(path)
        if not os.path.isdir(root):
            raise ConfigError(f"{path} is not a folder of this machine")
        if root not in roots:
            if len(roots) >= MAX_STORE_ROOTS:
                raise ConfigError(
                    f"at most {MAX_STORE_ROOTS} store roots: remove one first, or add a "
                    "folder that holds several stores"
                )
            roots.append(root)
    for path in remove or []:
        root = store_root_normalised(path)
        if root not in roots:
            raise ConfigError(f"{path} is not a store root (roots: {', '.join(roots) or 'none'})")
        roots.remove(root)
    if max_file_bytes is not None and max_file_bytes < 1:
        raise ConfigError("the file size limit must be at least 1 byte")
    updated = replace(
        config,
        store_roots=tuple(roots),
        max_file_bytes=config.max_file_bytes if max_file_bytes is None else max_file_bytes,
    )
    _config_write(updated)
    return updated


def scan_allowance_update(
    config: AgentConfig,
    *,
    add: list[str] | None = None,
    remove: list[str] | None = None,
    ports: str | None = None,
) -> AgentConfig:
    """Change what TLS scan stores may connect to and save it; the new config.

    Raises:
        ConfigError: a network or pattern that does not parse, one to remove that is not
            there, or ports that are not ports.
    """
    targets = list(config.scan_targets)
    for item in add or []:
        try:
            ScanAllowance.parse([item], "")
        except ScanTargetError as exc:
            raise ConfigError(str(exc)) from exc
        if item not in targets:
            targets.append(item)
    for item in remove or []:
        if item not in targets:
            raise ConfigError(
                f"{item} is not allowed now (allowed: {', '.join(targets) or 'nothing'})"
            )
        targets.remove(item)
    new_ports = config.scan_ports if ports is None else ports
    try:
        ScanAllowance.parse(targets, new_ports)
    except ScanTargetError as exc:
        raise ConfigError(str(exc)) from exc
    updated = replace(config, scan_targets=tuple(targets), scan_ports=new_ports)
    _config_write(updated)
    return updated


def _commands_changed(
    commands: dict[str, tuple[str, ...]], key: str, command: str | None, what: str
) -> dict[str, tuple[str, ...]]:
    """``commands`` with ``key`` set to ``command`` (split like a shell would, run without
    one later) or removed (``command`` None); ``what`` names them in errors."""
    changed = dict(commands)
    if command is None:
        if key not in changed:
            raise ConfigError(f"no {what} is set for {key}")
        del changed[key]
        return changed
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise ConfigError(f"cannot read the command: {exc}") from exc
    if not argv:
        raise ConfigError(f"the {what} is empty")
    changed[key] = argv
    return changed


def reload_command_update(
    config: AgentConfig, *, store_path: str, command: str | None
) -> AgentConfig:
    """Set the command run after a write to the store at ``store_path`` (split like a shell
    would, but run without one), or remove it (``command`` None); save and return the config.
    """
    commands = _commands_changed(
        config.reload_commands, store_root_normalised(store_path), command, "reload command"
    )
    updated = replace(config, reload_commands=commands)
    _config_write(updated)
    return updated


def secret_command_update(config: AgentConfig, *, name: str, command: str | None) -> AgentConfig:
    """Name a command for the ``command`` secret provider (``ref+agent:command:<name>:<arg>``
    runs it with ``<arg>`` appended, without a shell), or forget it (``command`` None)."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", name):
        raise ConfigError(f"{name!r}: a secret command's name is lowercase letters, digits, - or _")
    commands = _commands_changed(config.secret_commands, name, command, "secret command")
    updated = replace(config, secret_commands=commands)
    _config_write(updated)
    return updated


def _config_write(config: AgentConfig) -> None:
    data = asdict(config)
    del data["config_dir"]
    data["store_roots"] = list(config.store_roots)
    data["scan_targets"] = list(config.scan_targets)
    data["reload_commands"] = {path: list(argv) for path, argv in config.reload_commands.items()}
    data["secret_commands"] = {name: list(argv) for name, argv in config.secret_commands.items()}
    write_private_file(config.config_dir / AGENT_FILE, json.dumps(data, indent=2).encode() + b"\n")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """A saved registration.

    ``verify_tls`` is True (system CAs), False (no verification: ``--insecure``) or the path
    of a CA bundle that signs the platform's TLS certificate.
    """

    config_dir: Path
    platform_url: str
    orchestrator_id: str
    name: str
    client_machine: str
    verify_tls: bool | str = True
    # The folders stores may be in (real paths): the agent refuses any other, whatever
    # the platform asks. Empty: no store can be read until an administrator adds one.
    store_roots: tuple[str, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # Run after a write that changed a store: {real store path: argv}. Local only (see above).
    reload_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # What TLS scan stores may connect to (local only, like the roots): networks and
    # host-name patterns, and ports. Empty: no scan runs.
    scan_targets: tuple[str, ...] = ()
    scan_ports: str = ""
    # Commands of the `command` secret provider: {name: argv}. Local only (see above).
    secret_commands: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def key_path(self) -> Path:
        return self.config_dir / KEY_FILE

    @property
    def pending_key_path(self) -> Path:
        return self.config_dir / PENDING_KEY_FILE

    @property
    def cert_path(self) -> Path:
        return self.config_dir / CERT_FILE

    @property
    def ca_path(self) -> Path:
        return self.config_dir / CA_FILE

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The agent's private key from ``key.pem``."""
        return _key_load(self.key_path)

    def pending_key(self) -> ec.EllipticCurvePrivateKey | None:
        """The key of a renewal under way (``key.next.pem``), if there is one."""
        if not self.pending_key_path.exists():
            return None
        return _key_load(self.pending_key_path)


@dataclass(frozen=True, slots=True)
class Guards:
    """What the agent's administrator allows it: the folders stores may be in (real
    paths) and the largest file it reads. The agent enforces them on every job and
    reports them to the platform (``POST limits``)."""

    store_roots: tuple[str, ...]
    max_file_bytes: int
    scan_allowance: ScanAllowance = field(default_factory=ScanAllowance)

    @classmethod
    def of(cls, config: AgentConfig) -> Guards:
        return cls(
            tuple(config.store_roots),
            config.max_file_bytes,
            ScanAllowance.parse(config.scan_targets, config.scan_ports),
        )


class GuardsWatch:
    """The guards as ``agent.json`` says now, for an agent that runs while an administrator
    changes them (``certyard-orchestrator roots``): no restart needed.

    :meth:`current` costs a ``stat`` while the file is unchanged (the agent calls it before
    each poll and each job, and about every second while it waits); the file is read again
    when its inode, size or modification time changed (every write replaces it, so its
    inode changes even within one clock tick). An unreadable file (a hand edit gone
    wrong) keeps the guards the agent had, with a warning: never looser, never none.
    """

    def __init__(self, config_dir: Path, initial: Guards) -> None:
        self._path = config_dir / AGENT_FILE
        self._config_dir = config_dir
        self._guards = initial
        self._stamp = self._stamp_now()

    def _stamp_now(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self._path)
        except OSError:
            return None
        return (status.st_ino, status.st_size, status.st_mtime_ns)

    def current(self) -> Guards:
        """The guards now (re-read when ``agent.json`` changed since the last call)."""
        stamp = self._stamp_now()
        if stamp == self._stamp:
            return self._guards
        # Noted first: a write between this stat and the read is seen at the next call.
        self._stamp = stamp
        try:
            guards = Guards.of(load_config(self._config_dir))
        except ConfigError as exc:
            logger.warning("keeping the store roots the agent had: %s", exc)
            return self._guards
        if guards != self._guards:
            logger.info(
                "store roots now %s; file size limit %d bytes (agent.json changed)",
                ", ".join(guards.store_roots) or "none",
                guards.max_file_bytes,
            )
        self._guards = guards
        return guards


def _key_load(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the agent key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is not an EC private key")
    return key


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new EC P-256 key for the agent."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(private_key: ec.EllipticCurvePrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def save_pending_key(config: AgentConfig, private_key: ec.EllipticCurvePrivateKey) -> None:
    """Keep the key a renewal asks a certificate for before asking (mode 0600, atomically):
    if the platform certifies it and the answer is lost, the agent still holds the key."""
    write_private_file(config.pending_key_path, private_key_pem(private_key))


def promote_pending_key(config: AgentConfig, *, certificate: str | None) -> None:
    """Make the pending key the agent's key, once the platform certified it.

    The certificate is written first, then the key file replaced by a rename: at every
    moment ``key.pem`` or ``key.next.pem`` holds the key the platform knows. Without a
    certificate (the answer was lost) the previous one is removed: it is not for this key.
    """
    if certificate:
        write_private_file(config.cert_path, certificate.encode())
    else:
        config.cert_path.unlink(missing_ok=True)
    os.replace(config.pending_key_path, config.key_path)
    _directory_sync(config.config_dir)


def _directory_sync(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_registration(
    config: AgentConfig,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    certificate: str | None,
    ca_chain: str | None,
) -> None:
    """Write a registration into ``config.config_dir``, replacing any previous one."""
    ensure_config_dir(config.config_dir)
    write_private_file(config.key_path, private_key_pem(private_key))
    config.pending_key_path.unlink(missing_ok=True)  # a previous registration's renewal
    for path, pem in ((config.cert_path, certificate), (config.ca_path, ca_chain)):
        if pem:
            write_private_file(path, pem.encode())
        else:
            path.unlink(missing_ok=True)  # never keep a previous registration's certificate
    # agent.json last: its presence is what marks the directory as registered.
    _config_write(config)


def _commands_of(data: Any, what: str = "reload_commands") -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be an object")
    commands = {}
    for key, argv in data.items():
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ValueError(f"{what}: the command of {key} must be a list of strings")
        commands[str(key)] = tuple(argv)
    return commands


def load_config(config_dir: Path) -> AgentConfig:
    """The registration saved in ``config_dir``.

    Raises:
        NotRegistered: there is no registration in ``config_dir``.
        ConfigError: the registration is unreadable or incomplete.
    """
    agent_file = config_dir / AGENT_FILE
    if not agent_file.exists():
        raise NotRegistered(
            f"not registered: run `certyard-orchestrator register` first (no {agent_file})"
        )
    try:
        data: dict[str, Any] = json.loads(agent_file.read_text())
        config = AgentConfig(
            config_dir=config_dir,
            platform_url=str(data["platform_url"]),
            orchestrator_id=str(data["orchestrator_id"]),
            name=str(data["name"]),
            client_machine=str(data["client_machine"]),
            verify_tls=data.get("verify_tls", True),
            store_roots=tuple(str(root) for root in data.get("store_roots", [])),
            max_file_bytes=int(data.get("max_file_bytes", DEFAULT_MAX_FILE_BYTES)),
            reload_commands=_commands_of(data.get("reload_commands") or {}),
            scan_targets=tuple(str(item) for item in data.get("scan_targets", [])),
            scan_ports=str(data.get("scan_ports", "")),
            secret_commands=_commands_of(data.get("secret_commands") or {}, "secret_commands"),
        )
        # Checked here, so a hand edit that breaks it is refused, never read as "anything".
        ScanAllowance.parse(config.scan_targets, config.scan_ports)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read {agent_file}: {exc}") from exc
    if not config.key_path.exists():
        raise NotRegistered(
            f"not registered: run `certyard-orchestrator register` first (no {config.key_path})"
        )
    return config
