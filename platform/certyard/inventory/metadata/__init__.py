"""Certificate metadata: the fields an organisation defines and their values per certificate.

``services`` writes fields and values (checked against each field's rule),
``generators`` runs the metadata generator handlers (new certificates, backfills),
``selectors`` reads. The services are re-exported here, so
``from certyard.inventory.metadata import metadata_values_set`` keeps working.
"""

from certyard.inventory.metadata.services import (
    HANDLER_SOURCE,
    METADATA_FIELD_ATTRIBUTES,
    FieldRule,
    MetadataValueError,
    certificate_metadata_update,
    field_rule,
    field_rules,
    metadata_field_create,
    metadata_field_delete,
    metadata_field_update,
    metadata_rows_clear,
    metadata_rows_write,
    metadata_set_for_handler,
    metadata_value_canonical,
    metadata_values_check,
    metadata_values_set,
    user_source,
)

__all__ = [
    "HANDLER_SOURCE",
    "METADATA_FIELD_ATTRIBUTES",
    "FieldRule",
    "MetadataValueError",
    "certificate_metadata_update",
    "field_rule",
    "field_rules",
    "metadata_field_create",
    "metadata_field_delete",
    "metadata_field_update",
    "metadata_rows_clear",
    "metadata_rows_write",
    "metadata_set_for_handler",
    "metadata_value_canonical",
    "metadata_values_check",
    "metadata_values_set",
    "user_source",
]
