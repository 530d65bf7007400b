"""What the handler tests share: events as the platform would hand them over."""

from __future__ import annotations

from typing import Any

from handlers.base import EventContext


def expiring_event(**overrides: Any) -> EventContext:
    """A ``certificate.expiring`` event; any field can be replaced."""
    fields: dict[str, Any] = {
        "event_id": 42,
        "kind": "certificate.expiring",
        "occurred_at": "2025-03-01T08:00:00+00:00",
        "subject_type": "certificate",
        "subject_id": "ab" * 32,
        "subject_label": "www.example.com",
        "data": {
            "days": 12,
            "days_left": 12,
            "not_after": "2025-03-13T00:00:00+00:00",
            "store": "web-1:/etc/ssl/certs",
            "alias": "www.pem",
        },
    }
    fields.update(overrides)
    return EventContext(**fields)
