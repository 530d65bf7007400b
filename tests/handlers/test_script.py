"""The script handler running real Python and shell scripts in real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from handlers.base import HandlerError
from handlers.builtin.script import (
    CONTEXT_FILE,
    OUTPUT_LIMIT,
    ScriptHandler,
    powershell_wrapper,
)
from handlers.parameters import ParameterError, parameters_check
from tests.handlers.support import expiring_event

AWKWARD_ARGUMENT = """two words "quoted" 'single' ; echo injected $(id) `id` $HOME *"""


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The platform's scripts directory (CERTYARD_SCRIPTS_DIR), empty."""
    directory = tmp_path / "scripts"
    directory.mkdir()
    monkeypatch.setenv("CERTYARD_SCRIPTS_DIR", str(directory))
    return directory


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def handler(**config: Any) -> ScriptHandler:
    """A handler with its configuration checked as the platform checks it."""
    checked = parameters_check(ScriptHandler.parameters, config)
    ScriptHandler.config_check(checked)
    return ScriptHandler(checked)


def is_gone(pid: int) -> bool:
    """Whether a process has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until_gone(pids: list[int], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(is_gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


PYTHON_REPORT = """
    import json, os, sys
    event = json.load(sys.stdin)
    print(json.dumps({
        "argv": sys.argv[1:],
        "event": event,
        "environment": dict(os.environ),
        "cwd": os.getcwd(),
    }))
    with open(os.environ["CERTYARD_CONTEXT_OUT"], "w") as out:
        json.dump({"suppress_email": True, "ticket": "PKI-7"}, out)
"""


def test_a_python_script_gets_the_event_its_arguments_and_a_minimal_environment(
    scripts: Path,
) -> None:
    write(scripts, "report.py", PYTHON_REPORT)
    event = expiring_event()

    result = handler(
        interpreter="python",
        script="report.py",
        arguments=[AWKWARD_ARGUMENT, "--label={subject_label}", "{days} days {unknown}"],
    ).handle(event)

    report = json.loads(result.output["stdout"])
    assert report["argv"] == [AWKWARD_ARGUMENT, "--label=www.example.com", "12 days {unknown}"]
    assert report["event"] == json.loads(json.dumps(event.as_json()))
    environment = report["environment"]
    work = report["cwd"]
    assert environment["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert environment["HOME"] == environment["TMPDIR"] == work
    assert environment["LANG"] == "C.UTF-8"
    assert environment["CERTYARD_EVENT_KIND"] == "certificate.expiring"
    assert environment["CERTYARD_EVENT_ID"] == "42"
    assert environment["CERTYARD_CONTEXT_OUT"] == str(Path(work) / CONTEXT_FILE)
    assert "CERTYARD_SCRIPTS_DIR" not in environment and "DJANGO_SETTINGS_MODULE" not in environment
    assert not Path(work).exists(), "the working directory is removed after the run"
    assert result.context_updates == {"suppress_email": True, "ticket": "PKI-7"}
    assert result.output["exit_code"] == 0 and result.output["stderr"] == ""
    assert result.output["duration"] >= 0
    assert "report.py finished" in result.message and "suppress_email" in result.message


def test_a_shell_script_receives_each_argument_whole_and_can_update_the_context(
    scripts: Path,
) -> None:
    write(
        scripts,
        "notify.sh",
        """
        printf '%s\\n' "$#" "$1" "$2"
        cat > "$HOME/event.json"
        grep -q '"kind": "certificate.expiring"' "$HOME/event.json" || exit 9
        echo '{"suppress_email": true}' > "$CERTYARD_CONTEXT_OUT"
        echo done >&2
        """,
    )

    result = handler(
        interpreter="shell", script="notify.sh", arguments=[AWKWARD_ARGUMENT, "{alias}"]
    ).handle(expiring_event())

    assert result.output["stdout"].splitlines() == ["2", AWKWARD_ARGUMENT, "www.pem"]
    assert result.output["stderr"] == "done\n"
    assert result.context_updates == {"suppress_email": True}


@pytest.mark.parametrize(
    ("interpreter", "name", "text"),
    [
        ("python", "fail.py", "import sys\nprint('partial')\nsys.exit('boom: no ticket')\n"),
        ("shell", "fail.sh", "echo partial\necho 'boom: no ticket' >&2\nexit 3\n"),
    ],
)
def test_a_non_zero_exit_fails_with_the_code_and_the_end_of_stderr(
    scripts: Path, interpreter: str, name: str, text: str
) -> None:
    write(scripts, name, text)

    with pytest.raises(HandlerError) as caught:
        handler(interpreter=interpreter, script=name).handle(expiring_event())

    error = caught.value
    code = 1 if interpreter == "python" else 3
    assert f"exited with code {code}" in error.message
    assert "boom: no ticket" in error.message
    assert not error.permanent
    assert error.output["exit_code"] == code
    assert error.output["stdout"] == "partial\n"
    assert "boom: no ticket" in error.output["stderr"]


def test_a_hanging_script_is_killed_with_everything_it_started(
    scripts: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    write(
        scripts,
        "hang.sh",
        """
        sleep 300 &
        echo $! >> "$1"
        ( sleep 300 ) &
        echo $! >> "$1"
        echo $$ >> "$1"
        echo started
        sleep 300
        """,
    )

    started = time.monotonic()
    with pytest.raises(HandlerError) as caught:
        handler(
            interpreter="shell", script="hang.sh", arguments=[str(pids)], timeout_seconds=1
        ).handle(expiring_event())

    assert time.monotonic() - started < 10
    assert "timed out after 1 s" in caught.value.message
    assert caught.value.output["stdout"] == "started\n"
    recorded = [int(line) for line in pids.read_text().split()]
    assert len(recorded) == 3
    assert wait_until_gone(recorded), "a process of the script outlived the timeout"


def test_background_processes_do_not_outlive_a_successful_script(
    scripts: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    write(scripts, "leave.sh", 'sleep 300 > /dev/null 2>&1 &\necho $! > "$1"\n')

    handler(interpreter="shell", script="leave.sh", arguments=[str(pids)]).handle(expiring_event())

    assert wait_until_gone([int(pids.read_text())])


def test_only_the_last_64_kib_of_output_is_kept(scripts: Path) -> None:
    write(
        scripts,
        "loud.py",
        """
        import sys
        for number in range(40000):
            print(f"line {number:05d}")
            print(f"err {number:05d}", file=sys.stderr)
        """,
    )

    result = handler(interpreter="python", script="loud.py").handle(expiring_event())

    assert len(result.output["stdout"]) == OUTPUT_LIMIT
    assert result.output["stdout"].endswith("line 39999\n")
    assert len(result.output["stderr"]) == OUTPUT_LIMIT
    assert result.output["stderr"].endswith("err 39999\n")


def test_a_script_that_ignores_standard_input_is_fine(scripts: Path) -> None:
    write(scripts, "quiet.sh", "exit 0\n")
    event = expiring_event(data={"blob": "x" * 1_000_000})

    result = handler(interpreter="shell", script="quiet.sh").handle(event)

    assert result.output["exit_code"] == 0
    assert result.context_updates == {}


@pytest.mark.parametrize(
    ("written", "problem"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object")],
)
def test_context_updates_that_are_not_a_json_object_are_an_error(
    scripts: Path, written: str, problem: str
) -> None:
    write(scripts, "bad.sh", f"printf '%s' '{written}' > \"$CERTYARD_CONTEXT_OUT\"\necho ok\n")

    with pytest.raises(HandlerError) as caught:
        handler(interpreter="shell", script="bad.sh").handle(expiring_event())

    assert problem in caught.value.message
    assert caught.value.output["stdout"] == "ok\n"


def test_scripts_outside_the_directory_are_refused(scripts: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "outside.sh", "echo escaped\n")
    write(scripts, "inside.sh", "echo inside\n")
    (scripts / "sub").mkdir()
    write(scripts / "sub", "nested.sh", "echo nested\n")
    (scripts / "link-out.sh").symlink_to(outside)
    (scripts / "link-in.sh").symlink_to(scripts / "inside.sh")

    for name in ["../outside.sh", str(outside), "link-out.sh", "sub/../../outside.sh"]:
        with pytest.raises(ParameterError) as caught:
            handler(interpreter="shell", script=name)
        assert "outside the scripts directory" in caught.value.errors["script"], name
    for name in ["missing.sh", "sub", "."]:
        with pytest.raises(ParameterError) as caught:
            handler(interpreter="shell", script=name)
        assert "script" in caught.value.errors, name

    for name, said in [("link-in.sh", "inside"), ("sub/nested.sh", "nested")]:
        result = handler(interpreter="shell", script=name).handle(expiring_event())
        assert result.output["stdout"] == f"{said}\n"


def test_a_script_moved_out_after_the_check_is_refused_when_it_runs(
    scripts: Path, tmp_path: Path
) -> None:
    write(scripts, "moving.sh", "echo hi\n")
    checked = handler(interpreter="shell", script="moving.sh")
    (scripts / "moving.sh").unlink()
    (scripts / "moving.sh").symlink_to(write(tmp_path, "elsewhere.sh", "echo escaped\n"))

    with pytest.raises(HandlerError) as caught:
        checked.handle(expiring_event())

    assert caught.value.permanent
    assert "outside the scripts directory" in caught.value.message


def test_without_a_scripts_directory_nothing_runs(
    scripts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(scripts, "ok.sh", "echo hi\n")
    monkeypatch.delenv("CERTYARD_SCRIPTS_DIR")

    with pytest.raises(ParameterError) as caught:
        handler(interpreter="shell", script="ok.sh")
    assert "CERTYARD_SCRIPTS_DIR is not set" in caught.value.errors["script"]

    with pytest.raises(HandlerError) as failed:
        ScriptHandler({"interpreter": "shell", "script": "ok.sh"}).handle(expiring_event())
    assert failed.value.permanent
    assert "CERTYARD_SCRIPTS_DIR is not set" in failed.value.message


def test_an_interpreter_that_is_not_installed_is_refused(scripts: Path) -> None:
    if shutil.which("pwsh"):
        pytest.skip("pwsh is installed here")
    write(scripts, "renew.ps1", "Write-Output hi\n")

    with pytest.raises(ParameterError) as caught:
        handler(interpreter="powershell", script="renew.ps1")

    assert "pwsh" in caught.value.errors["interpreter"]


def test_arguments_may_not_hold_nul_characters(scripts: Path) -> None:
    write(scripts, "ok.sh", "echo hi\n")
    with pytest.raises(ParameterError) as caught:
        handler(interpreter="shell", script="ok.sh", arguments=["a\x00b"])
    assert "NUL" in caught.value.errors["arguments"]


def test_the_powershell_wrapper_reads_the_event_dot_sources_and_writes_updates() -> None:
    wrapper = powershell_wrapper("/srv/scripts/it's \u2018here\u2019.ps1")

    lines = wrapper.splitlines()
    assert (
        "$context = [Console]::In.ReadToEnd() | ConvertFrom-Json -AsHashtable -ErrorAction Stop"
        in lines
    )
    # Single quotes (and the typographic ones PowerShell also accepts) are doubled.
    assert "    . '/srv/scripts/it''s \u2018\u2018here\u2019\u2019.ps1' @args" in lines
    assert "$context['updates']" in wrapper
    assert "ConvertTo-Json -InputObject $context['updates']" in wrapper
    assert "Set-Content -LiteralPath $env:CERTYARD_CONTEXT_OUT" in wrapper
    assert wrapper.index("ReadToEnd") < wrapper.index(". '/srv") < wrapper.index("ConvertTo-Json")
    assert "finally" in wrapper


def test_a_powershell_script_sees_context_and_returns_updates(scripts: Path) -> None:
    if shutil.which("pwsh") is None:
        pytest.skip("PowerShell (pwsh) is not installed on this machine")
    write(
        scripts,
        "renew.ps1",
        """
        Write-Output "$($context.kind) $($context.data.days) $($args[0])"
        $context.updates = @{ suppress_email = $true }
        """,
    )

    result = handler(
        interpreter="powershell", script="renew.ps1", arguments=[AWKWARD_ARGUMENT]
    ).handle(expiring_event())

    assert result.output["stdout"].strip() == f"certificate.expiring 12 {AWKWARD_ARGUMENT}"
    assert result.context_updates == {"suppress_email": True}


def test_the_python_interpreter_is_the_platforms_own(scripts: Path) -> None:
    write(scripts, "which.py", "import sys\nprint(sys.executable)\n")

    result = handler(interpreter="python", script="which.py").handle(expiring_event())

    assert os.path.realpath(result.output["stdout"].strip()) == os.path.realpath(sys.executable)
