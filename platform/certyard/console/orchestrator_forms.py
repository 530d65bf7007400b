"""The console's orchestrator forms: its metadata, edited as one JSON object."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from certyard.errors import ServiceError
from certyard.fleet.services import (
    ORCHESTRATOR_METADATA_MAX_BYTES,
    ORCHESTRATOR_METADATA_MAX_KEYS,
    orchestrator_metadata_check,
)

# A JSON object of at most 8 KiB, pretty-printed: generous for the text a person edits.
_MAX_TEXT = ORCHESTRATOR_METADATA_MAX_BYTES * 4


class OrchestratorMetadataForm(forms.Form):
    """An orchestrator's metadata as a JSON object; ``cleaned_data["metadata"]`` is the
    checked dict (the service checks it again when it saves)."""

    metadata = forms.CharField(
        label="Metadata (JSON)",
        required=False,
        strip=True,
        max_length=_MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
        help_text=(
            'A JSON object, e.g. {"team": "web", "rack": 12, "pci": true}. Keys: a letter, '
            "then letters, digits, _, - or . (at most 64); values: text, a number or "
            f"true/false; at most {ORCHESTRATOR_METADATA_MAX_KEYS} keys. Empty removes all. "
            "A registration handler replaces it when the agent registers again."
        ),
    )

    @classmethod
    def for_metadata(cls, metadata: dict[str, Any] | None) -> OrchestratorMetadataForm:
        """The unbound form, showing ``metadata`` as the text to edit."""
        text = json.dumps(metadata or {}, indent=2, ensure_ascii=False) if metadata else ""
        return cls(initial={"metadata": text})

    def clean_metadata(self) -> dict[str, Any]:
        text = self.cleaned_data.get("metadata") or ""
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            column = getattr(exc, "colno", None)
            where = f" (line {line}, column {column})" if line else ""
            reason = getattr(exc, "msg", str(exc))
            raise forms.ValidationError(f"This is not valid JSON{where}: {reason}.") from None
        try:
            return orchestrator_metadata_check(value)
        except ServiceError as exc:
            raise forms.ValidationError(exc.fields.get("metadata") or [exc.message]) from None
