"""Polish: an icon on every page (``/favicon.ico`` answers), list labels with the right
numbers and plurals."""

import re
import struct
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group
from django.template import Context, Template
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from certyard.console import run_views
from certyard.console.pagination import slice_page
from certyard.workflows.models import HandlerRun

pytestmark = pytest.mark.django_db

ICON_LINK = re.compile(r'<link\b[^>]*\brel="(?:shortcut )?icon"[^>]*>', re.IGNORECASE)
HREF = re.compile(r'\bhref="([^"]+)"')


def _icon_entries(body: bytes) -> list[tuple[int, bytes]]:
    """The images of an ICO file: (width, first bytes of the image)."""
    reserved, kind, count = struct.unpack("<HHH", body[:6])
    assert (reserved, kind) == (0, 1), "not an ICO header"
    entries = []
    for i in range(count):
        width, _, _, _, _, _, size, offset = struct.unpack(
            "<BBBBHHII", body[6 + 16 * i : 22 + 16 * i]
        )
        assert offset + size <= len(body)
        entries.append((width or 256, body[offset : offset + 8]))
    return entries


def test_favicon_ico_answers_anyone_with_a_real_icon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/vnd.microsoft.icon"
    assert "max-age=" in response["Cache-Control"]
    entries = _icon_entries(response.content)
    assert sorted(width for width, _ in entries) == [16, 32, 48]
    assert all(start == b"\x89PNG\r\n\x1a\n" for _, start in entries)

    head = client.head("/favicon.ico")
    assert head.status_code == 200
    assert head.content == b""
    assert client.post("/favicon.ico").status_code == 405


def _console_pages_without_arguments() -> Iterator[str]:
    """Every page of the console's URLconf that needs no object: what a fresh platform has."""
    resolver = get_resolver()
    console = next(
        p for p in resolver.url_patterns if isinstance(p, URLResolver) and p.namespace == "console"
    )
    for pattern in console.url_patterns:
        if (
            isinstance(pattern, URLPattern)
            and pattern.name
            and not pattern.pattern.converters
            and pattern.pattern.regex.groups == 0
        ):
            yield pattern.name


def test_every_console_page_of_a_fresh_platform_has_an_icon_that_answers(
    admin_web: Client,
) -> None:
    names = list(_console_pages_without_arguments())
    assert {"dashboard", "certificate-list", "store-list", "job-list"} <= set(names)
    icons: set[str] = set()
    shown = 0
    for name in names:
        response = admin_web.get(reverse(f"console:{name}"))
        assert response.status_code != 404, name
        assert response.status_code < 500, name
        if response.status_code != 200 or "text/html" not in response["Content-Type"]:
            continue  # an action (POST only, 405) or a redirect
        page = response.content.decode()
        if "<html" not in page:
            continue  # an htmx fragment (the jobs list's rows): its page has the link
        links = ICON_LINK.findall(page)
        assert links, f"{name} names no icon: the browser would ask for /favicon.ico"
        icons.update(HREF.search(link).group(1) for link in links)
        shown += 1
    assert shown >= 10
    for href in icons:
        assert admin_web.get(href).status_code == 200, href


@pytest.mark.parametrize("url", ["/login/", "/admin/", "/api/v1/", "/api/docs/", "/no-such-page/"])
def test_pages_that_name_no_icon_get_the_favicon_from_its_default_address(
    admin_web: Client, url: str
) -> None:
    """A browser asks for /favicon.ico on pages without an icon link (Django admin, the
    API's pages, the 404 page): it answers, logged in or not."""
    page = admin_web.get(url)
    assert page.status_code in (200, 404)
    if not ICON_LINK.search(page.content.decode(errors="replace")):
        assert admin_web.get("/favicon.ico").status_code == 200
        assert Client().get("/favicon.ico").status_code == 200


# --- The pagination label ---------------------------------------------------------------


def _groups(count: int) -> None:
    Group.objects.bulk_create(Group(name=f"group-{n:03}") for n in range(count))


def _label(*, number: int, size: int, count_up_to: int | None = None) -> str:
    page = slice_page(
        Group.objects.order_by("name"), number=number, size=size, count_up_to=count_up_to
    )
    return page.label("certificate")


def test_one_page_says_how_many_with_the_right_plural() -> None:
    _groups(1)
    assert _label(number=1, size=16) == "1 certificate"
    Group.objects.create(name="group-900")
    assert _label(number=1, size=16) == "2 certificates"


def test_pages_name_their_rows_once_and_the_total_when_known() -> None:
    _groups(40)
    # Without a count, page 1 only knows there are more; the last page knows the total.
    assert _label(number=1, size=16) == "Certificates 1\u201316 of more than 16"
    assert _label(number=3, size=16) == "Certificates 33\u201340 of 40"
    # With a bounded count, every page knows it.
    assert _label(number=1, size=16, count_up_to=1000) == "Certificates 1\u201316 of 40"
    # Past the bound, it says so (never less than the rows already seen).
    assert _label(number=2, size=16, count_up_to=20) == "Certificates 17\u201332 of more than 32"
    # A page of one row, and the page past the end.
    Group.objects.create(name="group-zzz")
    assert _label(number=6, size=8) == "Certificate 41 of 41"
    assert _label(number=9, size=8) == ""


def test_the_page_label_tag_takes_an_irregular_plural() -> None:
    _groups(3)
    page = slice_page(Group.objects.order_by("name"), number=1, size=2)
    rendered = Template(
        '{% load console %}{% page_label page "entry" "entries" %}|{% page_label page "run" %}'
        "|{% page_label missing 'run' %}"
    ).render(Context({"page": page}))
    assert rendered == "Entries 1\u20132 of more than 2|Runs 1\u20132 of more than 2|"
    last = slice_page(Group.objects.order_by("name"), number=2, size=2)
    assert Template('{% load console %}{% page_label page "entry" "entries" %}').render(
        Context({"page": last})
    ) == ("Entry 3 of 3")


def test_the_handler_runs_list_labels_its_page(
    admin_web: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_views, "RUNS_PER_PAGE", 2)
    for n in range(3):
        HandlerRun.objects.create(
            registration_name=f"reg-{n}",
            handler="x.y:Z",
            kind="event",
            subject_type="job",
            subject_id=str(n),
        )
    first = admin_web.get(reverse("console:run-list")).content.decode()
    assert 'data-testid="page-label">Runs 1\u20132 of more than 2, newest first.<' in first
    last = admin_web.get(reverse("console:run-list"), {"page": 2}).content.decode()
    assert 'data-testid="page-label">Run 3 of 3, newest first.<' in last
    assert "runs runs" not in first.lower()
