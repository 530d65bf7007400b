"""The ``certyard`` pytest plugin: loaded by pytest wherever Certyard is installed.

It is registered as the ``pytest11`` entry point ``certyard`` of Certyard's own package,
so a project with Certyard (and pytest-django) installed gets it without a line of
configuration:

- **Settings.** When the project does not configure Django itself (no
  ``DJANGO_SETTINGS_MODULE`` environment variable, ``--ds`` option or
  ``DJANGO_SETTINGS_MODULE`` ini setting), it sets ``DJANGO_SETTINGS_MODULE`` to
  ``certyard.settings`` and, unless ``CERTYARD_DATA_DIR`` is set, a temporary data
  directory (removed at the end), before pytest-django reads them. A project that
  configures Django is left alone. ``-p no:certyard`` turns the plugin off.
- **Fixtures.** ``certyard_platform``, ``certyard_register`` and ``certyard_invoke``
  (below); the builders are in :mod:`certyard.testing`.

Nothing here imports Django at load time: the plugin is loaded before Django is set up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Generator
from typing import Any

import pytest

SETTINGS_VARIABLE = "DJANGO_SETTINGS_MODULE"
DATA_DIR_VARIABLE = "CERTYARD_DATA_DIR"
DEFAULT_SETTINGS = "certyard.settings"

# The temporary data directory this process made, removed at the end.
_made_data_dir: str | None = None


def _configured(config: pytest.Config, args: list[str]) -> bool:
    """Whether the project says which Django settings to use (pytest-django's sources)."""
    if os.environ.get(SETTINGS_VARIABLE):
        return True
    if any(arg == "--ds" or arg.startswith("--ds=") for arg in args):
        return True
    try:
        return bool(config.getini(SETTINGS_VARIABLE))
    except ValueError:  # pytest-django is not installed: no such ini setting
        return False


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    # A wrapper runs before every plain implementation, pytest-django's (which reads the
    # settings and sets Django up) included.
    global _made_data_dir
    if not _configured(early_config, args):
        os.environ[SETTINGS_VARIABLE] = DEFAULT_SETTINGS
        if not os.environ.get(DATA_DIR_VARIABLE):
            # The secret key and any file the platform writes go there, never into the
            # installed package's folder; the test database itself is pytest-django's.
            _made_data_dir = tempfile.mkdtemp(prefix="certyard-test-")
            os.environ[DATA_DIR_VARIABLE] = _made_data_dir
    return (yield)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if _made_data_dir is None:
        return []
    return [f"certyard: {SETTINGS_VARIABLE}={DEFAULT_SETTINGS}, data directory {_made_data_dir}"]


def pytest_unconfigure(config: pytest.Config) -> None:
    global _made_data_dir
    if _made_data_dir is not None:
        shutil.rmtree(_made_data_dir, ignore_errors=True)
        _made_data_dir = None


@pytest.fixture
def certyard_platform() -> Any:
    """A :class:`~certyard.testing.RecordingPlatform`: the platform facade, recording.

    ``certyard_invoke`` hands this one to the handlers it runs, so a test reads what they
    asked here: ``certyard_platform.scheduled_jobs``, ``.metadata_set``, ``.approvals``,
    ``.mails``, ``.actions``.
    """
    from certyard.testing.fakes import RecordingPlatform

    return RecordingPlatform()


@pytest.fixture
def certyard_register(db: None) -> Callable[..., Any]:
    """Register a handler in the test database, as Django admin does.

    ``certyard_register(name_or_class, *, name=None, options=None, parameters=None,
    **values)`` returns the saved :class:`~certyard.workflows.models.HandlerRegistration`:
    the class by entry-point name or class (declared as an entry point of an installed
    package), the parameter values checked as the admin form checks them
    (``ParameterError`` otherwise), a generator's declared fields created; ``options``
    sets the registration's other fields (``events``, ``order``, ``job_types``,
    ``store_types``, ``enabled``, ``timeout_seconds``, ``max_attempts``, ...).

    Example::

        registration = certyard_register(ExpiryAuditLog, path=str(tmp_path / "log.jsonl"))
    """
    from certyard.testing.invoking import handler_register

    return handler_register


@pytest.fixture
def certyard_invoke(db: None, certyard_platform: Any) -> Callable[..., Any]:
    """Run a registration's handler through the platform's single door, recording a run.

    ``certyard_invoke(registration, context, *, platform=None, apply_actions=False)``
    returns an :class:`~certyard.testing.InvokeResult` (``outcome``, ``ok``, ``result``,
    ``run``, ``actions``, ``message``, ``error``). The context says what runs: an
    ``EventContext``, a ``JobCompleteContext``, a ``RegistrationRequest``, one or a list
    of ``CertificateInfo``, a ``GatewayEnrollment`` or ``GatewayRevocation`` (build them
    with :mod:`certyard.testing`'s builders). Event and job complete handlers get
    ``certyard_platform`` (or ``platform``): their requests are recorded there and on the
    run, and carried out only with ``apply_actions=True``.

    Example::

        result = certyard_invoke(registration, expiring_event(make_certificate(days=5), 7))
        assert result.ok, result.error
        assert result.run.message == "logged www.example.com (7 days)"
    """
    from certyard.testing.invoking import handler_invoke

    def invoke(
        registration: Any, context: Any, *, platform: Any = None, apply_actions: bool = False
    ) -> Any:
        return handler_invoke(
            registration,
            context,
            platform=platform if platform is not None else certyard_platform,
            apply_actions=apply_actions,
        )

    return invoke
