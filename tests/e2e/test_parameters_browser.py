"""Mapping and JSON parameters in Django admin, in a real browser, arriving typed in a run.

An administrator registers ``test.typed_config`` (tests/plugins: a MAPPING ``labels`` and a
JSON ``policy`` with a JSON Schema) through the two-step admin form. Wrong values are
refused beside their own fields (the mapping's line, the schema's failing place), right
ones are saved, shown back as lines and indented JSON, and — when a real agent registers
and the platform's django-q2 worker runs the handler — arrive in ``self.config`` as a dict
and a decoded JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import LivePlatform, wait_for
from tests.e2e.test_console_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_mapping_and_json_parameters_are_checked_per_field_and_arrive_typed(
    live_platform: LivePlatform,
    agent_factory,
    browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    record = tmp_path / "typed-config.jsonl"
    context = browser.new_context(base_url=live_platform.url)
    page = context.new_page()
    # What the browser refused to run (the Content-Security-Policy) or could not load.
    refused: list[str] = []
    page.on(
        "console",
        lambda message: refused.append(message.text) if message.type == "error" else None,
    )

    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", live_platform.admin_username)
    page.fill("input[name=password]", live_platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Handler registrations").click()
    page.get_by_role("link", name="Add handler registration").click()
    page.select_option("select[name=handler]", "test.typed_config")
    page.get_by_role("button", name="Continue").click()

    # The mapping is a textarea of key=value lines, the JSON a monospace one with the
    # class's default indented.
    labels = page.locator("textarea[name=param_labels]")
    policy = page.locator("textarea[name=param_policy]")
    expect(labels).to_be_visible()
    expect(policy).to_have_value('{\n  "retries": 3\n}')
    font = policy.evaluate("element => getComputedStyle(element).fontFamily")
    assert "mono" in font.lower(), font
    labels_row = page.locator(".form-row.field-param_labels")
    policy_row = page.locator(".form-row.field-param_policy")
    expect(labels_row).to_contain_text("One key=value per line")
    expect(policy_row).to_contain_text("JSON, checked against the JSON Schema the class declares.")

    page.fill("input[name=name]", "typed browser")
    page.check('input[name=events][value="orchestrator.registered"]')
    page.fill("input[name=param_path]", str(record))
    labels.fill("# who owns it\nteam=ops\ncost centre 4711\n")
    policy.fill('{\n  "retries": 11,\n  "notify": ["ops@example.test"]\n}')
    page.get_by_role("button", name="Save", exact=True).click()

    # Each refusal beside its own field: the mapping's line, the schema's failing place.
    expect(page.locator(".errornote")).to_be_visible()
    expect(labels_row.locator(".errorlist")).to_have_text(
        "Line 3: 'cost centre 4711' has no '=' (write key=value)."
    )
    expect(policy_row.locator(".errorlist")).to_have_text(
        "At $.retries: 11 is greater than the maximum of 10."
    )
    # What was typed stays, to be fixed rather than typed again.
    expect(labels).to_have_value("# who owns it\nteam=ops\ncost centre 4711\n")
    page.screenshot(path=str(tmp_path / "parameters-refused.png"), full_page=True)

    # JSON that does not parse is named by line and column.
    labels.fill("# who owns it\nteam=ops\ncost_centre = 4711\n")
    policy.fill('{\n  "retries": 2,\n}')
    page.get_by_role("button", name="Save", exact=True).click()
    expect(labels_row.locator(".errorlist")).to_have_count(0)
    expect(policy_row.locator(".errorlist")).to_contain_text("(line 3, column 1)")

    policy.fill('{"retries": 2, "notify": ["ops@example.test"]}')
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")

    # Shown back as it is stored: lines and indented JSON.
    page.locator("#result_list").get_by_role("link", name="typed browser").click()
    expect(labels).to_have_value("team=ops\ncost_centre=4711")
    expect(policy).to_have_value(
        '{\n  "retries": 2,\n  "notify": [\n    "ops@example.test"\n  ]\n}'
    )
    expect(page.locator("input[name=timeout_seconds]")).to_have_value("30")

    # A real agent registers: the worker runs the handler, which records self.config.
    agent_factory("typed-agent")

    def first_line() -> str | None:
        # The handler opens the file, then writes: a whole line only once it ends in \n.
        text = record.read_text() if record.exists() else ""
        return text.partition("\n")[0] if "\n" in text else None

    line = wait_for(
        first_line,
        timeout=90,
        what=f"the handler to record its config\n{live_platform.log()[-3000:]}",
    )
    recorded = json.loads(line)
    assert recorded["kind"] == "orchestrator.registered"
    assert recorded["labels"] == {"team": "ops", "cost_centre": "4711"}
    assert recorded["policy"] == {"retries": 2, "notify": ["ops@example.test"]}
    assert recorded["types"] == {"labels": "dict", "policy": "dict"}

    # The API gives them typed; the console's registration page shows them readably.
    with live_platform.api() as api:
        listed = api.get("handler-registrations/").json()["results"]
    (registration,) = [r for r in listed if r["name"] == "typed browser"]
    assert registration["parameters"]["labels"] == {"team": "ops", "cost_centre": "4711"}
    assert registration["parameters"]["policy"]["retries"] == 2
    page.goto(f"/handlers/{registration['id']}/")
    parameters = page.get_by_test_id("registration-parameters")
    expect(parameters.get_by_test_id("parameter-entry").first).to_have_text("team = ops")
    expect(parameters.get_by_test_id("parameter-json")).to_contain_text('"retries": 2')
    page.screenshot(path=str(tmp_path / "console-parameters.png"), full_page=True)
    assert refused == [], f"the browser refused something: {refused}"
    context.close()
