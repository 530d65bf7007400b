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


def _imported_modules(folder: Path, allowed: frozenset[str] = frozenset()) -> set[str]:
    """The top-level packages the folder's modules import, leaving out ``allowed`` modules."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            names.update(m.split(".")[0] for m in modules if m not in allowed)
    return names


def test_agent_and_handlers_never_import_django_or_the_platform() -> None:
    assert not _imported_modules(ROOT / "orchestrators") & {"django", "rest_framework", "certyard"}
    # The email built-in sends through Django's configured email backend: the one piece
    # of Django a handler may use. Never models, settings or the platform.
    imported = _imported_modules(ROOT / "handlers", allowed=frozenset({"django.core.mail"}))
    assert not imported & {"django", "rest_framework", "certyard"}


# The platform's apps from the bottom up: an app imports only apps listed before it,
# and its models' foreign keys point only into those apps (docs/architecture.md, Layers).
APP_ORDER = [
    "workflows",
    "accounts",
    "pki",
    "fleet",
    "inventory",
    "jobs",
    "blueprints",
    "enrollment",
    "console",
]


def _certyard_apps_imported(folder: Path) -> set[str]:
    apps: set[str] = set()
    for path in folder.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "certyard" and len(parts) > 1:
                    apps.add(parts[1])
    return apps


def test_every_platform_app_has_a_place_in_the_order() -> None:
    package = ROOT / "platform" / "certyard"
    apps = {path.parent.name for path in package.glob("*/apps.py")}
    assert apps == set(APP_ORDER)


def test_apps_import_only_the_apps_below_them() -> None:
    package = ROOT / "platform" / "certyard"
    for position, app in enumerate(APP_ORDER):
        above = set(APP_ORDER[position + 1 :])
        assert not _certyard_apps_imported(package / app) & above, f"{app} imports an app above it"


def test_foreign_keys_point_only_into_the_same_app_or_below() -> None:
    from django.apps import apps as registry

    for position, app in enumerate(APP_ORDER):
        allowed = set(APP_ORDER[: position + 1])
        for model in registry.get_app_config(app).get_models():
            for field in model._meta.get_fields():
                target = getattr(field, "related_model", None)
                if field.is_relation and field.concrete and target is not None:
                    label = target._meta.app_label
                    where = f"{model.__name__}.{field.name}"
                    assert label not in APP_ORDER or label in allowed, f"{where} points up"
