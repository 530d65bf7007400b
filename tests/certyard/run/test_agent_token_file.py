"""`certyard-orchestrator register --token-file PATH` (issue 17): the README's other way to
hand the agent its registration token off the command line; never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrators.agent.cli import _parser, _registration_token, main

TOKEN = "cyreg_test-token-value-4b1d"


def test_the_token_is_the_files_first_line(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\nnothing else counts\n")
    assert _registration_token(None, path) == TOKEN


@pytest.mark.parametrize("content", [None, "", "\n  \n"])
def test_a_missing_or_empty_file_is_refused_without_quoting_it(
    tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    code = main(["register", "--url", "http://127.0.0.1:9", "--token-file", str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert str(path) in err and ("empty" in err or "cannot read" in err)


def test_a_file_that_is_no_text_is_refused_without_quoting_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe" + TOKEN.encode())
    assert main(["register", "--url", "http://127.0.0.1:9", "--token-file", str(path)]) == 2
    assert TOKEN not in capsys.readouterr().err


def test_token_and_token_file_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["register", "--url", "u", "--token", "-", "--token-file", "x"])
