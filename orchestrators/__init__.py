"""Certyard's orchestrator agent: runs on managed machines and talks to the platform over HTTP."""

__version__ = "0.1.0"
