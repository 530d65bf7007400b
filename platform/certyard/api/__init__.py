"""Shared pieces of both REST APIs: error format, permissions, pagination."""
