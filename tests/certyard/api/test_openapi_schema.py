"""The OpenAPI schema: generated without warnings, valid, and describing both APIs' auth."""

from pathlib import Path

import yaml
from django.core.management import call_command


def test_schema_is_valid_without_warnings_and_documents_agent_auth(tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"
    # --fail-on-warn turns any unresolved serializer, enum clash or authenticator into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())

    schemes = schema["components"]["securitySchemes"]
    assert schemes["orchestratorSession"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["orchestratorSession"]["description"],
    }
    next_job = schema["paths"]["/api/orchestrator/v1/jobs/next"]["get"]
    assert next_job["security"] == [{"orchestratorSession": []}]
    register = schema["paths"]["/api/orchestrator/v1/register"]["post"]
    assert register.get("security", [{}]) in ([{}], [])  # registration needs no session
    approve = schema["paths"]["/api/v1/orchestrators/{id}/approve/"]["post"]
    assert {"tokenAuth": []} in approve["security"]
