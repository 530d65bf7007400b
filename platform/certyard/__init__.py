"""Certyard: the platform (Django project and its apps)."""

__version__ = "0.1.0"
