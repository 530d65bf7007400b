"""Certyard's built-in handlers, one module each, declared as entry points in pyproject.toml.

- ``email``: :class:`~handlers.builtin.email.EmailNotification` ("certyard.email")
- ``webhook``: :class:`~handlers.builtin.webhook.SignedWebhook` ("certyard.webhook")
- ``script``: :class:`~handlers.builtin.script.ScriptHandler` ("certyard.script")
- ``registration_rules``: :class:`~handlers.builtin.registration_rules.RuleBasedApproval`
  ("certyard.registration_rules")
- ``metadata``: :class:`~handlers.builtin.metadata.CertificateFields`
  ("certyard.certificate_fields") and :class:`~handlers.builtin.metadata.CryptoStrength`
  ("certyard.crypto_strength")
- ``enrollment``: :class:`~handlers.builtin.enrollment.EnrollmentRules`
  ("certyard.enrollment_rules") and :class:`~handlers.builtin.enrollment.AutoRenew`
  ("certyard.auto_renew")
- ``acme``: :class:`~handlers.builtin.acme.AcmeGateway` ("certyard.acme"), a CA gateway
- ``cfssl``: :class:`~handlers.builtin.cfssl.CfsslGateway` ("certyard.cfssl"), a CA gateway

They use only the public contracts of :mod:`handlers.base` and :mod:`handlers.gateways`,
as a third party's would.
"""
