"""Registering a handler in Django admin, in a real browser, and seeing it run for real.

An administrator adds the built-in signed webhook through the two-step admin form (a bad
URL is refused beside its field), approves an orchestrator in the console, and the
platform's own django-q2 worker POSTs the event to a receiver this test runs; the run then
shows in the console and in admin.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from handlers.builtin.webhook import signature_verify
from tests.e2e.conftest import LivePlatform, orchestrator_named, wait_for
from tests.e2e.test_console_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SECRET = "browser-webhook-secret-3e9d1c"


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records every POST and answers 204."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    deliveries: list[Delivery] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            deliveries.append(Delivery(self.path, dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield Receiver(f"http://{host}:{port}/hooks/certyard", deliveries)
    finally:
        server.shutdown()
        server.server_close()


def test_admin_registers_a_webhook_and_sees_it_run_on_an_approval(
    live_platform: LivePlatform,
    agent_factory,
    browser,  # noqa: F811
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    # An orchestrator waiting for approval (registered, not running: approval needs no agent).
    agent_factory("hook-agent")
    with live_platform.api() as api:
        orchestrator = orchestrator_named(api, "hook-agent")
    assert orchestrator["status"] == "new"

    context = browser.new_context(base_url=live_platform.url)
    page = context.new_page()
    offsite: list[str] = []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(live_platform.url) else offsite.append(request.url)
        ),
    )
    # What the browser refused to run (the Content-Security-Policy) or could not load.
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            refused.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )

    # Log into Django admin.
    page.goto("/admin/login/?next=/admin/")
    page.fill("input[name=username]", live_platform.admin_username)
    page.fill("input[name=password]", live_platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Handler registrations")).to_be_visible()

    # Step one: choose the class.
    page.get_by_role("link", name="Handler registrations").click()
    page.get_by_role("link", name="Add handler registration").click()
    webhook_option = page.locator('select[name=handler] option[value="certyard.webhook"]')
    expect(webhook_option).to_have_text(
        "Signed webhook — certyard.webhook (certyard 0.1.0)", use_inner_text=True
    )
    expect(
        page.locator('[data-testid=handler-class-row][data-name="certyard.webhook"]')
    ).to_have_attribute("data-status", "ok")
    page.screenshot(path=str(tmp_path / "choose-class.png"), full_page=True)
    page.select_option("select[name=handler]", "certyard.webhook")
    page.get_by_role("button", name="Continue").click()

    # Step two: its form, with its description and one field per declared parameter.
    expect(page.get_by_test_id("handler-doc")).to_contain_text("POSTs the event as JSON")
    page.fill("input[name=name]", "browser webhook")
    page.check('input[name=events][value="orchestrator.approved"]')
    page.fill("textarea[name=orchestrators]", orchestrator["id"])
    page.fill("input[name=param_url]", receiver.url.replace("http://", "ftp://"))
    page.fill("input[name=param_secret]", SECRET)
    expect(page.locator("input[name=param_attempts]")).to_have_value("3")
    page.get_by_role("button", name="Save", exact=True).click()

    # A URL the class does not accept: refused, with the reason beside the field.
    url_row = page.locator(".form-row.field-param_url")
    expect(url_row.locator(".errorlist")).to_have_text("Must be an http:// or https:// URL.")
    expect(page.locator(".errornote")).to_be_visible()
    assert SECRET not in page.content()
    page.screenshot(path=str(tmp_path / "webhook-refused.png"), full_page=True)

    # Fixed (the secret is typed again: it is never sent back), it is saved.
    page.fill("input[name=param_url]", receiver.url)
    page.fill("input[name=param_secret]", SECRET)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    row = page.locator("#result_list tr", has_text="browser webhook")
    expect(row.locator(".field-class_status")).to_have_text("ok")
    expect(row.locator(".field-last_run")).to_have_text("never")

    # Approving the orchestrator in the console emits the event the registration matches.
    page.goto(f"/orchestrators/{orchestrator['id']}/")
    page.locator("[data-action=approve]").click()
    expect(page.get_by_test_id("orchestrator-status")).to_have_attribute("data-status", "approved")

    # The worker POSTs it to the receiver, signed with the secret.
    delivery = wait_for(
        lambda: receiver.deliveries[0] if receiver.deliveries else None,
        timeout=90,
        what=f"the webhook to be delivered\n{live_platform.log()[-3000:]}",
    )
    headers = {name.lower(): value for name, value in delivery.headers.items()}
    assert delivery.path == "/hooks/certyard"
    assert headers["x-certyard-event"] == "orchestrator.approved"
    assert signature_verify(
        SECRET, headers["x-certyard-timestamp"], delivery.body, headers["x-certyard-signature"]
    )
    event = json.loads(delivery.body)
    assert event["subject_type"] == "orchestrator"
    assert event["subject_id"] == orchestrator["id"]

    # The console's runs page shows the run, succeeded.
    def run_row_succeeded() -> bool:
        page.goto("/handler-runs/")
        run_row = page.locator('[data-testid=run-row][data-registration="browser webhook"]')
        return run_row.count() == 1 and run_row.get_attribute("data-state") == "succeeded"

    wait_for(run_row_succeeded, timeout=30, what="the run to be recorded as succeeded")
    expect(page.get_by_role("link", name="Handler runs", exact=True)).to_have_attribute(
        "aria-current", "page"
    )
    page.locator('[data-testid=run-row][data-registration="browser webhook"] a').first.click()
    expect(page.get_by_test_id("run-state")).to_have_attribute("data-state", "succeeded")
    expect(page.get_by_test_id("run-message")).to_contain_text(
        f"delivered to {receiver.url.rsplit('/hooks', 1)[0]}: 204"
    )
    expect(page.get_by_test_id("run-output")).to_contain_text('"status_code": 204')
    page.screenshot(path=str(tmp_path / "run-detail.png"), full_page=True)

    # The orchestrator's page lists it in its Handler runs section (loaded by htmx).
    page.goto(f"/orchestrators/{orchestrator['id']}/")
    section = page.get_by_test_id("subject-handler-runs")
    expect(
        section.locator('[data-testid=run-row][data-registration="browser webhook"]')
    ).to_have_attribute("data-state", "succeeded")

    # And admin's Handler runs, from the registration's page.
    page.goto("/admin/workflows/handlerregistration/")
    page.get_by_role("link", name="browser webhook").click()
    expect(page.get_by_test_id("handler-doc")).to_be_visible()
    assert SECRET not in page.content()
    page.get_by_test_id("registration-runs-link").click()
    run_in_admin = page.locator("#result_list tbody tr", has_text="browser webhook")
    expect(run_in_admin).to_have_count(1)
    expect(run_in_admin.locator(".field-state")).to_have_text("Succeeded")
    page.screenshot(path=str(tmp_path / "admin-runs.png"), full_page=True)

    # Only the approval it subscribed to was delivered.
    assert [d.headers.get("X-Certyard-Event") for d in receiver.deliveries] == [
        "orchestrator.approved"
    ]
    assert offsite == [], f"a page loaded something from elsewhere: {offsite}"
    assert refused == [], f"the browser refused something: {refused}"
    context.close()
