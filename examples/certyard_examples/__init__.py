"""Example Certyard extensions, one of every kind (see docs/extending.md).

- ``registration``: :class:`~certyard_examples.registration.NameAndEnvironment`
  ("example.agent_identity"), a registration handler.
- ``audit_log``: :class:`~certyard_examples.audit_log.ExpiryAuditLog`
  ("example.expiry_audit_log"), an event handler.
- ``team_metadata``: :class:`~certyard_examples.team_metadata.TeamFromDnsSuffix`
  ("example.team_from_dns"), a metadata generator.
- ``inventory_retry``: :class:`~certyard_examples.inventory_retry.RetryFailedInventory`
  ("example.retry_failed_inventory"), a job complete handler.
- ``manifest_store``: :class:`~certyard_examples.manifest_store.ManifestStore`
  (store type ``MANIFEST``), a store-type extension for the agent.
"""
