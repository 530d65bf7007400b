"""The built-in script handler ("certyard.script"): an administrator's script, run on the host."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from handlers.base import EventContext, EventHandler, HandlerResult
from handlers.builtin._common import event_fields, failure, setting, substitute
from handlers.parameters import Parameter, ParameterError, ParameterType

SCRIPTS_DIR_VARIABLE = "CERTYARD_SCRIPTS_DIR"
OUTPUT_LIMIT = 64 * 1024
CONTEXT_FILE = "context-updates.json"
CONTEXT_LIMIT = 1024 * 1024
WRAPPER_FILE = "certyard-wrapper.ps1"
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
SHELL = "/bin/sh"
# After the script ends, how long its output pipes may stay open (a process that left its
# process group can hold them) before the run stops waiting for them.
_PIPE_GRACE_SECONDS = 2.0
_STDERR_IN_MESSAGE = 500
# PowerShell reads these as single quotes too, so each must be doubled inside '...'.
_POWERSHELL_QUOTES = "'\u2018\u2019\u201a\u201b"


class ScriptConfigError(ValueError):
    """The scripts directory, the script or the interpreter cannot be used."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def scripts_directory() -> Path:
    """The folder administrators' scripts must be in, from ``CERTYARD_SCRIPTS_DIR``."""
    configured = os.environ.get(SCRIPTS_DIR_VARIABLE, "").strip()
    if not configured:
        raise ScriptConfigError(
            "script",
            f"{SCRIPTS_DIR_VARIABLE} is not set on the platform host, so no script may run; "
            "set it to the folder that holds the allowed scripts",
        )
    directory = Path(configured).resolve()
    if not directory.is_dir():
        raise ScriptConfigError(
            "script", f"the scripts directory {directory} ({SCRIPTS_DIR_VARIABLE}) is missing"
        )
    return directory


def script_path(name: str) -> Path:
    """The script's real path, after refusing anything that is not a file of the folder.

    Links are resolved first, so a link inside the folder that points out of it, ``..`` and
    an absolute path are all refused alike.
    """
    directory = scripts_directory()
    if not name or "\x00" in name:
        raise ScriptConfigError("script", "name a file of the scripts directory")
    resolved = (directory / name).resolve()
    if not resolved.is_relative_to(directory) or resolved == directory:
        raise ScriptConfigError("script", f"{name!r} is outside the scripts directory {directory}")
    if not resolved.is_file():
        raise ScriptConfigError(
            "script", f"{name!r} is not a file in the scripts directory {directory}"
        )
    return resolved


def interpreter_command(interpreter: str) -> list[str]:
    """The command that runs a script with ``interpreter`` (the script's path follows)."""
    if interpreter == "python":
        if not (sys.executable and os.access(sys.executable, os.X_OK)):
            raise ScriptConfigError("interpreter", "the platform's Python cannot be found")
        return [sys.executable]
    if interpreter == "shell":
        if not os.access(SHELL, os.X_OK):
            raise ScriptConfigError("interpreter", f"{SHELL} is not installed on this host")
        return [SHELL]
    if interpreter == "powershell":
        # An absolute path: the script's own PATH is the minimal one, where pwsh may be absent.
        found = shutil.which("pwsh")
        if not found:
            raise ScriptConfigError(
                "interpreter", "PowerShell (pwsh) is not installed on this host (not on PATH)"
            )
        return [found, "-NoProfile", "-NonInteractive", "-File"]
    raise ScriptConfigError("interpreter", f"unknown interpreter {interpreter!r}")


def _powershell_literal(text: str) -> str:
    for quote in _POWERSHELL_QUOTES:
        text = text.replace(quote, quote * 2)
    return f"'{text}'"


def powershell_wrapper(script_path: str | os.PathLike[str]) -> str:
    """The ``.ps1`` that runs an administrator's PowerShell script with ``$context``.

    It reads the event JSON from standard input into the hashtable ``$context``,
    dot-sources the script (so it sees ``$context`` and receives the arguments), and writes
    ``$context.updates``, if the script set it, as JSON to ``$env:CERTYARD_CONTEXT_OUT``.
    """
    literal = _powershell_literal(os.fspath(script_path))
    return f"""\
# Written by Certyard for one run of the script handler; deleted after it.
# $context: the event as a hashtable (kind, subject_label, data, context, ...).
# Set $context.updates to a hashtable to pass context updates to later handlers.
$context = [Console]::In.ReadToEnd() | ConvertFrom-Json -AsHashtable -ErrorAction Stop
try {{
    . {literal} @args
}}
finally {{
    if ($context -is [hashtable] -and $null -ne $context['updates']) {{
        ConvertTo-Json -InputObject $context['updates'] -Depth 32 -Compress |
            Set-Content -LiteralPath $env:CERTYARD_CONTEXT_OUT -Encoding utf8NoBOM
    }}
}}
"""


def _collect_tail(stream: IO[bytes], sink: list[bytes]) -> None:
    """Read a pipe to its end, keeping only its last OUTPUT_LIMIT bytes in memory."""
    kept = bytearray()
    while chunk := stream.read1(65536):  # type: ignore[attr-defined]
        kept += chunk
        if len(kept) > 2 * OUTPUT_LIMIT:
            del kept[:-OUTPUT_LIMIT]
    sink.append(bytes(kept[-OUTPUT_LIMIT:]))


def _feed(stream: IO[bytes], data: bytes) -> None:
    """Write standard input; a script that does not read it is no error."""
    with contextlib.suppress(OSError):  # BrokenPipeError included
        stream.write(data)
    with contextlib.suppress(OSError):
        stream.close()


def _kill_group(process_group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process_group, signal.SIGKILL)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class ScriptHandler(EventHandler):
    """Runs one of the platform's allowed scripts for the event (Python, shell or PowerShell).

    Scripts live in the folder the platform's administrator set in ``CERTYARD_SCRIPTS_DIR``;
    only a file of that folder can be chosen (links are followed, and must stay inside).

    Parameters:

    - **interpreter**: ``python`` (the platform's own Python), ``shell`` (``/bin/sh``) or
      ``powershell`` (``pwsh``, if installed).
    - **script**: the file's name in the scripts folder, e.g. ``renew_notify.py``.
    - **arguments**: one argument per line, passed as is (no shell: spaces, quotes and ``;``
      stay inside their argument). ``{name}`` is replaced by a field of the event:
      ``{kind}``, ``{subject_label}``, ``{subject_id}``, ``{days}``, ``{not_after}``, ...
    - **timeout_seconds**: the script and everything it started are killed after this.

    What the script gets: the event as JSON on standard input (PowerShell: the hashtable
    ``$context``); a fresh empty working folder, which is also ``HOME`` and ``TMPDIR``;
    ``CERTYARD_EVENT_KIND``, ``CERTYARD_EVENT_ID``, ``LANG=C.UTF-8`` and
    ``PATH=/usr/local/bin:/usr/bin:/bin``, nothing else of the platform's environment.

    What it gives back: exit code 0 is success, anything else a failure showing the end of
    its standard error. The last 64 KiB of standard output and error are kept on the run.
    To pass context updates to the handlers that run after it (e.g.
    ``{"suppress_email": true}``), write a JSON object to the file named by
    ``CERTYARD_CONTEXT_OUT`` (PowerShell: set ``$context.updates``). Processes the script
    leaves running in the background are stopped when it ends.

    Example: interpreter ``python``, script ``open_ticket.py``, arguments
    ``--queue=PKI`` and ``{subject_label}``.
    """

    label = "Run a script"
    parameters = (
        Parameter(
            "interpreter",
            ParameterType.CHOICE,
            help="What runs the script.",
            required=True,
            choices=("python", "shell", "powershell"),
        ),
        Parameter(
            "script",
            ParameterType.STRING,
            help="The script's file name in the platform's scripts folder (CERTYARD_SCRIPTS_DIR).",
            required=True,
        ),
        Parameter(
            "arguments",
            ParameterType.LIST,
            help="One argument per line; {name} is replaced by a field of the event.",
        ),
        Parameter(
            "timeout_seconds",
            ParameterType.INTEGER,
            help=(
                "The script is killed after this many seconds; keep it below the "
                "registration's timeout, which ends the run."
            ),
            default=25,
            minimum=1,
            maximum=3600,
        ),
    )

    @classmethod
    def config_check(cls, config: Mapping[str, Any]) -> None:
        errors: dict[str, str] = {}
        try:
            script_path(str(config.get("script") or ""))
        except ScriptConfigError as exc:
            errors[exc.parameter] = exc.message
        try:
            interpreter_command(str(config.get("interpreter") or ""))
        except ScriptConfigError as exc:
            errors.setdefault(exc.parameter, exc.message)
        if any("\x00" in argument for argument in config.get("arguments") or []):
            errors["arguments"] = "an argument must not contain a NUL character"
        if errors:
            raise ParameterError(errors)

    def handle(self, event: EventContext) -> HandlerResult:
        timeout = int(setting(self, "timeout_seconds"))
        interpreter = str(setting(self, "interpreter") or "")
        try:
            path = script_path(str(setting(self, "script") or ""))
            command = interpreter_command(interpreter)
        except ScriptConfigError as exc:
            raise failure(exc.message, permanent=True) from exc
        fields = event_fields(event)
        arguments = [substitute(item, fields) for item in setting(self, "arguments") or []]
        if any("\x00" in argument for argument in arguments):
            raise failure("an argument holds a NUL character after substitution", permanent=True)
        stdin = json.dumps(event.as_json(), ensure_ascii=False).encode("utf-8")

        with tempfile.TemporaryDirectory(prefix="certyard-script-") as work:
            context_out = Path(work) / CONTEXT_FILE
            target = path
            if interpreter == "powershell":
                target = Path(work) / WRAPPER_FILE
                target.write_text(powershell_wrapper(path), encoding="utf-8")
            environment = {
                "PATH": MINIMAL_PATH,
                "HOME": work,
                "TMPDIR": work,
                "LANG": "C.UTF-8",
                "CERTYARD_EVENT_KIND": event.kind,
                "CERTYARD_EVENT_ID": str(event.event_id),
                "CERTYARD_CONTEXT_OUT": str(context_out),
            }
            started = time.monotonic()
            exit_code, timed_out, stdout, stderr = self._run(
                [*command, str(target), *arguments], work, environment, stdin, timeout
            )
            duration = round(time.monotonic() - started, 3)
            output: dict[str, Any] = {
                "exit_code": exit_code,
                "stdout": _text(stdout),
                "stderr": _text(stderr),
                "duration": duration,
            }
            if timed_out:
                raise failure(f"the script timed out after {timeout} s", output=output)
            if exit_code != 0:
                raise failure(self._exit_message(exit_code, output["stderr"]), output=output)
            updates = self._context_updates(context_out, output)

        message = f"{path.name} finished in {duration:.1f} s"
        if updates:
            message += f"; context updates: {', '.join(sorted(updates))}"
        return HandlerResult(message=message, output=output, context_updates=updates)

    @staticmethod
    def _run(
        argv: list[str], work: str, environment: dict[str, str], stdin: bytes, timeout: int
    ) -> tuple[int, bool, bytes, bytes]:
        """Run to the end or the timeout: (exit code, timed out, stdout tail, stderr tail).

        Not ``subprocess.run``: on a timeout it kills the child alone and then waits for
        its output pipes, which a grandchild still holds; here the whole process group
        goes, and the output is kept to its last 64 KiB while it is read.
        """
        try:
            process = subprocess.Popen(
                argv,
                cwd=work,
                env=environment,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise failure(f"the interpreter could not be started: {exc}", permanent=True) from exc
        assert process.stdin and process.stdout and process.stderr
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        threads = [
            threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True),
            threading.Thread(target=_collect_tail, args=(process.stdout, stdout), daemon=True),
            threading.Thread(target=_collect_tail, args=(process.stderr, stderr), daemon=True),
        ]
        for thread in threads:
            thread.start()
        timed_out = False
        try:
            exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process.pid)
            exit_code = process.wait()
        finally:
            # Nothing the script started outlives it (its group id is its own pid).
            _kill_group(process.pid)
        deadline = time.monotonic() + _PIPE_GRACE_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # A reader still running means a process that left the group holds the pipe: its
        # thread ends when that process does; the run does not wait for it.
        for pipe, reader in ((process.stdout, threads[1]), (process.stderr, threads[2])):
            if not reader.is_alive():
                pipe.close()
        return exit_code, timed_out, b"".join(stdout), b"".join(stderr)

    @staticmethod
    def _exit_message(exit_code: int, stderr: str) -> str:
        if exit_code < 0:
            try:
                name = signal.Signals(-exit_code).name
            except ValueError:
                name = f"signal {-exit_code}"
            problem = f"the script was killed by {name}"
        else:
            problem = f"the script exited with code {exit_code}"
        tail = stderr.strip()[-_STDERR_IN_MESSAGE:]
        return f"{problem}: {tail}" if tail else f"{problem} (no error output)"

    @staticmethod
    def _context_updates(context_out: Path, output: dict[str, Any]) -> dict[str, Any]:
        """The JSON object the script left in CERTYARD_CONTEXT_OUT, or {} if it left none."""
        if not context_out.is_file():
            return {}
        if context_out.stat().st_size > CONTEXT_LIMIT:
            raise failure(
                f"the context updates the script wrote are larger than {CONTEXT_LIMIT} bytes",
                output=output,
            )
        text = context_out.read_text(encoding="utf-8-sig", errors="replace").strip()
        if not text:
            return {}
        try:
            updates = json.loads(text)
        except ValueError as exc:
            raise failure(
                f"the context updates the script wrote (CERTYARD_CONTEXT_OUT) are not valid "
                f"JSON: {exc}",
                output=output,
            ) from exc
        if not isinstance(updates, dict):
            raise failure(
                "the context updates the script wrote (CERTYARD_CONTEXT_OUT) must be a JSON "
                f"object, not {type(updates).__name__}",
                output=output,
            )
        return updates
