"""A subject's "Handler runs" section, as a tag: rendered with the page, no extra request."""

from typing import Any

from django import template

from certyard.console.run_views import SUBJECT_RUNS_SHOWN, with_subject_urls
from certyard.workflows import selectors

register = template.Library()


@register.inclusion_tag("console/runs/_subject_runs.html", takes_context=True)
def subject_runs(context: template.Context, subject_type: str, subject_id: Any) -> dict[str, Any]:
    """The newest runs about one orchestrator, certificate, store or job."""
    runs = selectors.runs_for_subject(
        subject_type=subject_type, subject_id=str(subject_id), limit=SUBJECT_RUNS_SHOWN
    )
    return {
        "runs": with_subject_urls(runs[:SUBJECT_RUNS_SHOWN]),
        "more": len(runs) > SUBJECT_RUNS_SHOWN,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "perms": context.get("perms"),
        "request": context.get("request"),
    }
