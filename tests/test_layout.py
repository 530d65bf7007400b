"""The layout rules of docs/architecture.md that import-linter cannot see, checked.

Which module may import which is import-linter's job (pyproject.toml, tests/test_architecture.py);
here: the platform folder, the foreign keys between the apps, and the third-party packages
the plain libraries may use.
"""

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


# The platform's apps from the bottom up: an app imports only apps listed before it (the
# "platform-layers" contract lists them top down), and its models' foreign keys point only
# into those apps (docs/architecture.md, Layers).
APP_ORDER = [
    "workflows",
    "accounts",
    "pki",
    "fleet",
    "inventory",
    "jobs",
    "blueprints",
    "enrollment",
    "deployment",
    "console",
]
# Plain library packages under certyard/: not Django apps, so not in the order.
LIBRARIES = ["api", "run", "testing", "x509"]


def test_every_platform_app_has_a_place_in_the_order() -> None:
    package = ROOT / "platform" / "certyard"
    apps = {path.parent.name for path in package.glob("*/apps.py")}
    assert apps == set(APP_ORDER)
    packages = {path.parent.name for path in package.glob("*/__init__.py")}
    assert packages == set(APP_ORDER) | set(LIBRARIES), "a package is neither app nor library"


def test_the_x509_library_imports_only_the_standard_library_and_cryptography() -> None:
    folder = ROOT / "platform" / "certyard" / "x509"
    imported = _imported_modules(folder) - set(sys.stdlib_module_names) - {"__future__"}
    assert imported <= {"cryptography", "certyard"}
    assert _certyard_apps_imported(folder) <= {"x509"}, "x509 imports a certyard app"


def test_the_run_library_needs_neither_django_nor_an_app() -> None:
    # `make run`'s supervisor and demo material: any app's command may use them.
    folder = ROOT / "platform" / "certyard" / "run"
    imported = _imported_modules(folder) - set(sys.stdlib_module_names) - {"__future__"}
    assert imported <= {"cryptography"}


def test_the_api_infrastructure_imports_no_app() -> None:
    # certyard/api/ (errors, schema, permissions…) sits under every app; the apps' routes
    # are composed in certyard/urls.py, never there.
    assert not _certyard_apps_imported(ROOT / "platform" / "certyard" / "api") & set(APP_ORDER)


def test_every_app_with_an_api_owns_its_routes() -> None:
    package = ROOT / "platform" / "certyard"
    for views in package.glob("*/api/views.py"):
        assert (views.parent / "urls.py").exists(), f"{views.parent} has no urls.py"


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
