"""Built-in store-type extensions (see ``orchestrators.sdk``)."""
