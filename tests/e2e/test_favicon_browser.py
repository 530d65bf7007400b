"""No page of a fresh platform ends in a 404 for its icon: Chromium on the live platform
visits every page of the console's navigation, Django admin and the API's pages, and
fetches the icon each page leads a browser to (its icon link, else /favicon.ico)."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest

from tests.e2e.conftest import LivePlatform
from tests.e2e.test_console_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Pages outside the console's navigation that a person opens from it; none names an icon.
OTHER_PAGES = ["/admin/", "/api/docs/", "/api/v1/", "/no-such-page/"]


def test_every_page_of_a_fresh_platform_finds_its_icon(
    live_platform: LivePlatform,
    browser,  # noqa: F811 - the fixture imported above
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(base_url=live_platform.url)
    page = context.new_page()
    not_found: list[str] = []
    page.on(
        "response",
        lambda response: not_found.append(response.url) if response.status == 404 else None,
    )

    page.goto("/favicon.ico")  # before logging in: anyone gets it
    icon = context.request.get("/favicon.ico")
    assert icon.status == 200
    assert icon.headers["content-type"] == "image/vnd.microsoft.icon"
    assert icon.body()[:4] == b"\x00\x00\x01\x00"

    page.goto("/")
    page.fill("input[name=username]", live_platform.admin_username)
    page.fill("input[name=password]", live_platform.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    navigation = page.eval_on_selector_all(
        "nav[aria-label=Main] a", "links => links.map(link => link.getAttribute('href'))"
    )
    assert len(navigation) >= 10
    visited: list[str] = []
    icons: dict[str, int] = {}
    for address in [*dict.fromkeys(navigation), *OTHER_PAGES]:
        response = page.goto(address)
        assert response is not None
        if address != "/no-such-page/":
            assert response.status == 200, (address, response.status)
        page.wait_for_load_state("networkidle")
        visited.append(page.url)
        linked = page.eval_on_selector_all(
            "link[rel~=icon]", "links => links.map(link => link.href)"
        )
        for url in linked or [urljoin(page.url, "/favicon.ico")]:
            if url not in icons:
                icons[url] = context.request.get(url).status

    # The console's pages link the SVG; admin, Swagger UI, DRF and the 404 page do not.
    assert any(url.endswith("/favicon.svg") for url in icons)
    assert any(url.endswith("/favicon.ico") for url in icons)
    assert all(status == 200 for status in icons.values()), icons
    # The only 404 on the way is the page that does not exist, never an icon.
    assert [url for url in not_found if not url.endswith("/no-such-page/")] == [], not_found
    context.close()
