"""The layout rules of docs/architecture.md, checked."""

import ast
import platform
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_platform_is_the_standard_library_module() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(platform.__file__).resolve().parent == stdlib
    assert callable(platform.python_version)


def test_platform_folder_is_not_a_package() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not list((ROOT / "tests").rglob("platform/")), "never name a test folder 'platform'"
    assert str(ROOT / "platform") in [str(Path(p).resolve()) for p in sys.path if p]


def _imported_modules(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_agent_and_handlers_never_import_django_or_the_platform() -> None:
    for folder in ("orchestrators", "handlers"):
        imported = _imported_modules(ROOT / folder)
        assert not imported & {"django", "rest_framework", "certyard"}, folder
