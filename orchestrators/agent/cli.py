"""``certyard-orchestrator``: register this machine with a platform, run the agent, show status.

Exit codes: 0 success; 1 the platform is unreachable or an unexpected error (``extensions``:
a store type is broken); 2 bad usage, no registration, or the platform refused the request;
3 the platform no longer accepts this orchestrator's identity (re-register).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrators import __version__
from orchestrators.agent.client import PlatformClient, PlatformError, PlatformUnavailable
from orchestrators.agent.config import (
    MAX_STORE_ROOTS,
    AgentConfig,
    ConfigError,
    Guards,
    GuardsWatch,
    default_config_dir,
    ensure_config_dir,
    generate_private_key,
    guards_update,
    load_config,
    reload_command_update,
    save_registration,
    scan_allowance_update,
    secret_command_update,
    store_root_normalised,
)
from orchestrators.agent.doctor import FAILURE, doctor_findings
from orchestrators.agent.renewal import CertificateRenewer
from orchestrators.agent.runner import Runner
from orchestrators.agent.store_types import capabilities, load_store_types, store_types_report
from orchestrators.secret_refs import SecretContext

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_REFUSED = 2
# Where `register` finds the registration token when --token is not given.
TOKEN_ENV = "CERTYARD_REGISTRATION_TOKEN"  # noqa: S105 (a variable's name)

STATUS_HINTS = {
    "New": "an administrator must approve this orchestrator",
    "Disapproved": "an administrator refused this orchestrator",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="certyard-orchestrator", description="Certyard orchestrator agent."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def config_dir_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--config-dir",
            type=Path,
            default=None,
            help="configuration directory (default: $CERTYARD_ORCHESTRATOR_HOME or "
            "~/.config/certyard-orchestrator)",
        )

    register = commands.add_parser(
        "register",
        help="register this agent with a platform",
        description="Register this agent with a platform, using a registration token given "
        f"by --token - (standard input), --token-file PATH, ${TOKEN_ENV} or --token VALUE.",
    )
    register.add_argument("--url", required=True, help="the platform's base URL")
    token_source = register.add_mutually_exclusive_group()
    token_source.add_argument(
        "--token",
        default=None,
        help="the one-time registration token from an admin; '-' reads it from standard "
        "input (without echo at a terminal). Without --token or --token-file it is read "
        f"from ${TOKEN_ENV}. Prefer any of those to a value here: a command line is visible "
        "to every user of the machine (ps). The token is never printed",
    )
    token_source.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="read the registration token from this file (its first line); keep the file "
        "readable by you alone, and delete it once registered",
    )
    register.add_argument("--name", default=None, help="orchestrator name (default: host name)")
    register.add_argument(
        "--client-machine", default=None, help="machine name reported (default: host name)"
    )
    register.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a client parameter for registration handlers (repeatable)",
    )
    register.add_argument(
        "--store-root",
        action="append",
        default=[],
        metavar="PATH",
        help="a folder stores may be in (repeatable); the agent reads nothing outside them",
    )
    register.add_argument(
        "--max-file-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="the largest file the agent reads (default: 16 MiB)",
    )
    config_dir_option(register)
    tls = register.add_mutually_exclusive_group()
    tls.add_argument("--ca-bundle", type=Path, help="CA bundle that signs the platform's TLS cert")
    tls.add_argument("--insecure", action="store_true", help="do not verify the platform's TLS")

    run = commands.add_parser("run", help="run jobs until stopped (SIGTERM/SIGINT)")
    config_dir_option(run)
    run.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO",
    )
    run.add_argument("--poll-wait", type=int, default=20, help="long-poll seconds (default: 20)")

    status = commands.add_parser("status", help="show the saved registration")
    config_dir_option(status)

    roots = commands.add_parser(
        "roots",
        help="show or change the folders stores may be in, and the file size limit",
        description="Show or change the folders stores may be in and the largest file the "
        "agent reads. A running agent picks a change up within a few seconds, without a "
        "restart, and reports it to the platform.",
    )
    roots.add_argument(
        "--add", action="append", default=[], metavar="PATH", help="allow a folder (repeatable)"
    )
    roots.add_argument(
        "--remove", action="append", default=[], metavar="PATH", help="forbid it again"
    )
    roots.add_argument(
        "--max-file-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="the largest file the agent reads",
    )
    config_dir_option(roots)

    doctor = commands.add_parser(
        "doctor",
        help="check the configuration, the platform, the identity and the roots",
        description="Check that this agent can work: its configuration and key (modes "
        "included), its client certificate, the platform (reached, and the agent's key "
        "accepted: a real session is opened), its store roots, what TLS scans may reach, "
        "and its store types. Exit 0 when nothing failed (warnings allowed), 1 otherwise.",
    )
    config_dir_option(doctor)

    scan_allow = commands.add_parser(
        "scan-allow",
        help="show or change what TLS scan stores may connect to",
        description="Show or change the networks, host-name patterns and ports this agent "
        "may scan for TLS certificates (TLS stores). Nothing is allowed until you add "
        "something: the platform can never widen it. A name the store lists is scanned "
        "when it matches a pattern, or when every address it resolves to is in an allowed "
        "network. A running agent applies a change to its next job.",
    )
    scan_allow.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="TARGET",
        help="allow a network (10.0.0.0/8, 192.0.2.7) or a host-name pattern "
        "(*.example.com) (repeatable)",
    )
    scan_allow.add_argument(
        "--remove", action="append", default=[], metavar="TARGET", help="forbid it again"
    )
    scan_allow.add_argument(
        "--ports", default=None, metavar="PORTS", help="the ports allowed: 443,8443,9000-9010"
    )
    config_dir_option(scan_allow)

    secret_command = commands.add_parser(
        "secret-command",
        help="show or set the commands that resolve ref+agent:command:<name>:<arg> secrets",
        description="Name a command that prints a secret, for store passwords and other "
        "secrets the platform holds only as a reference (ref+agent:command:<name>:<arg>): "
        "the agent runs it without a shell, with <arg> appended, and reads the first line "
        "it prints, e.g. --name pass --command 'pass show'. Without options: list them. "
        "Only this machine sets these: the platform can never make the agent run a command.",
    )
    secret_command.add_argument("--name", metavar="NAME", help="the command's name")
    secret_command.add_argument(
        "--command", dest="secret_command", metavar="COMMAND", help="the command and its arguments"
    )
    secret_command.add_argument("--remove", action="store_true", help="forget the command")
    config_dir_option(secret_command)

    reload = commands.add_parser(
        "reload",
        help="show or set the command run after a write to a store",
        description="Set the command the agent runs (without a shell, at most 60 s) after it "
        "changed the store at --store-path, e.g. --command 'systemctl reload nginx'; "
        "--remove forgets it. Without options: list them. Only this machine sets these: "
        "the platform can never make the agent run a command.",
    )
    reload.add_argument("--store-path", default=None, metavar="PATH")
    action = reload.add_mutually_exclusive_group()
    # Not dest "command": that names the subcommand.
    action.add_argument("--command", dest="reload_command", default=None, metavar="COMMAND")
    action.add_argument("--remove", action="store_true")
    config_dir_option(reload)

    extensions = commands.add_parser(
        "extensions",
        help="list the store types this agent finds, and their problems",
        description="List the store types this agent offers: the built-ins and every "
        "certyard.store_types entry point installed beside it, loaded as `run` loads them, "
        "with its package, version, operations and problems. Exits 1 when one is broken.",
    )
    extensions.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _client_parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE, got {pair!r}")
        parameters[key] = value
    return parameters


def _pem_text(value: Any) -> str | None:
    """A PEM answer field as text: the platform may send one string or a list of them."""
    if not value:
        return None
    if isinstance(value, list):
        return "".join(item if item.endswith("\n") else item + "\n" for item in value)
    return str(value)


def _registration_token(option: str | None, token_file: Path | None = None) -> str:
    """The registration token: --token VALUE, --token - (standard input), --token-file PATH
    or $TOKEN_ENV. Errors never quote what was read: it may be the token."""
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not text"
            raise ValueError(
                f"cannot read the registration token from {token_file}: {reason}"
            ) from None
        token = lines[0] if lines else ""
        if not token.strip():
            raise ValueError(f"the token file {token_file} is empty")
        return token.strip()
    if option == "-":
        if sys.stdin is not None and sys.stdin.isatty():
            token = getpass.getpass("registration token: ")
        else:
            token = sys.stdin.readline() if sys.stdin is not None else ""
    elif option is not None:
        token = option
    else:
        token = os.environ.get(TOKEN_ENV, "")
    if not token.strip():
        raise ValueError(
            f"a registration token is needed: --token - (standard input), ${TOKEN_ENV}, "
            "or --token VALUE"
        )
    return token.strip()


def _store_roots_problem(roots: list[str], max_file_bytes: int | None) -> str | None:
    """Why ``register --store-root``/``--max-file-size`` would be refused; None when fine."""
    for path in roots:
        if not os.path.isdir(store_root_normalised(path)):
            return f"{path} is not a folder of this machine (a store root must exist)"
    if len(set(roots)) > MAX_STORE_ROOTS:
        return f"at most {MAX_STORE_ROOTS} store roots"
    if max_file_bytes is not None and max_file_bytes < 1:
        return "the file size limit must be at least 1 byte"
    return None


def _register(args: argparse.Namespace) -> int:
    config_dir = args.config_dir or default_config_dir()
    try:
        parameters = _client_parameters(args.param)
        token = _registration_token(args.token, args.token_file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    hostname = socket.gethostname()
    name = args.name or hostname
    verify_tls: bool | str = True
    if args.insecure:
        verify_tls = False
    elif args.ca_bundle:
        if not args.ca_bundle.is_file():
            print(f"error: CA bundle {args.ca_bundle} does not exist", file=sys.stderr)
            return EXIT_REFUSED
        verify_tls = str(args.ca_bundle.resolve())

    # Checked before the platform is asked: a refusal after it would have spent the token.
    if problem := _store_roots_problem(args.store_root, args.max_file_size):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_REFUSED

    key = generate_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    with PlatformClient(args.url, verify_tls=verify_tls) as client:
        answer = client.register(
            token=token,
            name=name,
            client_machine=args.client_machine or hostname,
            capabilities=capabilities(load_store_types()),
            client_parameters=parameters,
            csr=csr.public_bytes(serialization.Encoding.PEM).decode(),
        )
    try:
        config = AgentConfig(
            config_dir=config_dir,
            platform_url=args.url,
            orchestrator_id=str(answer["orchestrator_id"]),
            name=name,
            client_machine=args.client_machine or hostname,
            verify_tls=verify_tls,
        )
        status = str(answer.get("status", "unknown"))
    except KeyError:
        print("error: the platform's answer has no orchestrator_id", file=sys.stderr)
        return EXIT_UNAVAILABLE
    save_registration(
        config,
        private_key=key,
        certificate=_pem_text(answer.get("certificate")),
        ca_chain=_pem_text(answer.get("ca_chain")),
    )
    config = guards_update(config, add=args.store_root, max_file_bytes=args.max_file_size)
    hint = STATUS_HINTS.get(status)
    print(
        f"registered as {config.orchestrator_id}; status {status}" + (f": {hint}" if hint else "")
    )
    print(f"configuration saved in {config_dir}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO; the agent logs what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    config_dir = args.config_dir or default_config_dir()
    config = load_config(config_dir)
    ensure_config_dir(config_dir)
    store_types = load_store_types()
    with PlatformClient(
        config.platform_url,
        verify_tls=config.verify_tls,
        orchestrator_id=config.orchestrator_id,
        private_key=config.private_key(),
    ) as client:
        logging.getLogger(__name__).info(
            "orchestrator %s (%s) polling %s",
            config.orchestrator_id,
            config.name,
            config.platform_url,
        )
        return Runner(
            client,
            store_types,
            poll_wait=args.poll_wait,
            state_root=config_dir / "state",
            renewer=CertificateRenewer(client, config),
            identity_keys=lambda: _identity_keys(config),
            reload_commands=lambda: _reload_commands(config),
            secret_context=lambda: SecretContext(commands=_secret_commands(config)),
            # `roots` may change them while the agent runs: followed, and reported.
            guards=GuardsWatch(config_dir, Guards.of(config)).current,
        ).run()


def _reload_commands(config: AgentConfig) -> dict[str, tuple[str, ...]]:
    """The reload commands as saved now (``reload`` may change them while the agent runs);
    the ones the agent started with if the file cannot be read."""
    try:
        return load_config(config.config_dir).reload_commands
    except ConfigError as exc:
        logging.getLogger(__name__).warning("cannot read the reload commands: %s", exc)
        return config.reload_commands


def _secret_commands(config: AgentConfig) -> dict[str, tuple[str, ...]]:
    """The secret commands as saved now (``secret-command`` may change them while the agent
    runs); the ones it started with if the file cannot be read."""
    try:
        return load_config(config.config_dir).secret_commands
    except ConfigError as exc:
        logging.getLogger(__name__).warning("cannot read the secret commands: %s", exc)
        return config.secret_commands


def _identity_keys(config: AgentConfig) -> list[ec.EllipticCurvePrivateKey]:
    """The agent's keys, read at each use (a renewal replaces ``key.pem``): the current
    one and a renewal's pending one, to open a private key sealed to either."""
    keys = [config.private_key()]
    pending = config.pending_key()
    if pending is not None:
        keys.append(pending)
    return keys


def _status(args: argparse.Namespace) -> int:
    config = load_config(args.config_dir or default_config_dir())
    print(f"orchestrator_id: {config.orchestrator_id}")
    print(f"name:            {config.name}")
    print(f"client_machine:  {config.client_machine}")
    print(f"platform_url:    {config.platform_url}")
    print(f"verify_tls:      {config.verify_tls}")
    print(f"config_dir:      {config.config_dir}")
    _print_guards(config)
    if config.cert_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(config.cert_path.read_bytes())
            expires = f"{cert.not_valid_after_utc:%Y-%m-%d}"
            print(f"certificate:     {cert.subject.rfc4514_string()}, expires {expires}")
        except ValueError:
            print(f"certificate:     {config.cert_path} (unreadable)")
    else:
        print("certificate:     none issued")
    return EXIT_OK


def _print_guards(config: AgentConfig) -> None:
    roots = ", ".join(config.store_roots) or "none: no store can be read (add one with `roots`)"
    print(f"store_roots:     {roots}")
    print(f"max_file_size:   {config.max_file_bytes} bytes")
    _print_scan_allowance(config)


def _roots(args: argparse.Namespace) -> int:
    config = load_config(args.config_dir or default_config_dir())
    changed = False
    if args.add or args.remove or args.max_file_size is not None:
        before = Guards.of(config)
        config = guards_update(
            config, add=args.add, remove=args.remove, max_file_bytes=args.max_file_size
        )
        changed = Guards.of(config) != before
    _print_guards(config)
    if changed:
        print(
            "saved: a running agent picks this up within a few seconds, without a restart, "
            "and reports it to the platform"
        )
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    findings = doctor_findings(args.config_dir or default_config_dir())
    for finding in findings:
        print(f"{finding.level:<5} {finding.topic}: {finding.text}")
    failures = sum(finding.level == FAILURE for finding in findings)
    if failures:
        print(f"{failures} problem(s) to fix", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _scan_allow(args: argparse.Namespace) -> int:
    config = load_config(args.config_dir or default_config_dir())
    if args.add or args.remove or args.ports is not None:
        config = scan_allowance_update(config, add=args.add, remove=args.remove, ports=args.ports)
        print("saved: a running agent applies it to its next job, without a restart")
    _print_scan_allowance(config)
    return EXIT_OK


def _print_scan_allowance(config: AgentConfig) -> None:
    targets = (
        ", ".join(config.scan_targets) or "none: no TLS scan runs (add some with `scan-allow`)"
    )
    print(f"scan_targets:    {targets}")
    print(f"scan_ports:      {config.scan_ports or 'none'}")


def _secret_command(args: argparse.Namespace) -> int:
    config = load_config(args.config_dir or default_config_dir())
    if args.secret_command is not None or args.remove:
        if not args.name:
            print("error: --name is needed with --command or --remove", file=sys.stderr)
            return EXIT_REFUSED
        config = secret_command_update(
            config, name=args.name, command=None if args.remove else args.secret_command
        )
    if not config.secret_commands:
        print("secret commands: none")
    for name, argv in sorted(config.secret_commands.items()):
        print(f"{name}: {shlex.join(argv)}")
    return EXIT_OK


def _reload(args: argparse.Namespace) -> int:
    config = load_config(args.config_dir or default_config_dir())
    if args.reload_command is not None or args.remove:
        if not args.store_path:
            print("error: --store-path is needed with --command or --remove", file=sys.stderr)
            return EXIT_REFUSED
        config = reload_command_update(
            config,
            store_path=args.store_path,
            command=None if args.remove else args.reload_command,
        )
    if not config.reload_commands:
        print("reload commands: none")
    for path, argv in sorted(config.reload_commands.items()):
        print(f"{path}: {shlex.join(argv)}")
    return EXIT_OK


def _extensions(args: argparse.Namespace) -> int:
    """Exit 1 (the problems printed) when a store type is broken, else 0."""
    reports = store_types_report()
    broken = [report for report in reports if report.problems]
    if args.json:
        print(json.dumps({"store_types": [report.to_json() for report in reports]}, indent=2))
        return EXIT_UNAVAILABLE if broken else EXIT_OK
    for report in reports:
        state = "refused" if report.refused else ("problems" if report.problems else "ok")
        package = f"{report.distribution} {report.version}".strip() or "no package"
        print(f"{report.name:<16} {state:<8} {report.target} ({package}, {report.group})")
        for problem in report.problems:
            print(f"    {problem}")
    if broken:
        print(f"{len(broken)} store type(s) with problems", file=sys.stderr)
    return EXIT_UNAVAILABLE if broken else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    command = {
        "register": _register,
        "run": _run,
        "status": _status,
        "roots": _roots,
        "scan-allow": _scan_allow,
        "doctor": _doctor,
        "secret-command": _secret_command,
        "reload": _reload,
        "extensions": _extensions,
    }[args.command]
    try:
        return command(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except PlatformUnavailable as exc:
        print(f"error: cannot reach the platform: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except PlatformError as exc:
        print(f"error: the platform refused the request: {exc.message}", file=sys.stderr)
        for field, problems in exc.fields.items():
            print(f"  {field}: {problems}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:  # e.g. an unreadable CA bundle or configuration directory
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
