"""Certyard's platform extension SDK: contracts in handlers.base, built-ins beside it."""
