"""Test your Certyard extension: builders, a recording platform, and pytest fixtures.

Installed with the platform (``pip install "certyard[testing]"`` adds pytest and
pytest-django); pytest loads the plugin (:mod:`certyard.testing.plugin`) by itself, and
it configures Django with Certyard's settings and a temporary data directory when your
project does not configure Django.

- **Builders** (no database needed): :func:`make_certificate` (a real X.509 certificate
  and key), :func:`certificate_info` (what a metadata generator gets, from the
  inventory's own parser), :func:`event_context`, :func:`expiring_event`,
  :func:`registration_request`, :func:`job_complete_context`, :func:`gateway_enrollment`
  (real CSRs; :func:`key_of` returns their keys), and :func:`handler_make` (a handler
  instance, its values checked as the platform checks them).
- **Fakes**: :class:`RecordingPlatform`, the platform facade that records what a handler
  asks (``scheduled_jobs``, ``metadata_set``, ``mails``, ...).
- **Fixtures** (pytest-django's database): ``certyard_platform``, ``certyard_register``
  (a registration saved as Django admin saves it) and ``certyard_invoke`` (run it through
  the platform's single door, recording a run; returns an :class:`InvokeResult`).

Example::

    from certyard.testing import expiring_event, make_certificate

    def test_the_warning_is_logged(certyard_register, certyard_invoke, tmp_path):
        registration = certyard_register("example.expiry_audit_log", path=str(tmp_path / "a"))
        result = certyard_invoke(registration, expiring_event(make_certificate(days=5), 7))
        assert result.ok, result.error
"""

from certyard.testing.builders import (
    IssuedCertificate,
    certificate_info,
    event_context,
    expiring_event,
    gateway_enrollment,
    handler_make,
    job_complete_context,
    key_of,
    make_certificate,
    registration_request,
)
from certyard.testing.fakes import InvokeResult, RecordingPlatform, SentMail

__all__ = [
    "InvokeResult",
    "IssuedCertificate",
    "RecordingPlatform",
    "SentMail",
    "certificate_info",
    "event_context",
    "expiring_event",
    "gateway_enrollment",
    "handler_make",
    "job_complete_context",
    "key_of",
    "make_certificate",
    "registration_request",
]
