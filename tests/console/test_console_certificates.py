"""Certificates: search and filters, paging without COUNT, detail and PEM downloads."""

import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from certyard.console import views
from certyard.inventory.ingest import inventory_submit
from certyard.inventory.models import Certificate
from tests.console.conftest import nonconformant_pem


def _listed(page: str) -> list[str]:
    return re.findall(r'data-testid="certificate-row" data-cn="([^"]*)"', page)


def _search(client: Client, **params: str) -> str:
    response = client.get(reverse("console:certificate-list"), params)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_search_form_has_stable_names(admin_web: Client) -> None:
    page = _search(admin_web)
    assert re.search(r'<label for="id_q">Search</label>\s*<input type="search" name="q"', page)
    assert ">Search</button>" in page


@pytest.mark.django_db
def test_search_by_common_name_finds_it(admin_web: Client, inventory) -> None:
    page = _search(admin_web, q="month.example")
    assert _listed(page) == ["month.example.test"]
    detail = reverse(
        "console:certificate-detail", args=[inventory.certificate("month.example.test").pk]
    )
    assert f'href="{detail}"' in page


@pytest.mark.django_db
def test_search_by_garbage_shows_the_no_match_state(admin_web: Client, inventory) -> None:
    page = _search(admin_web, q="zz-nothing-like-this-zz")
    assert _listed(page) == []
    assert 'data-testid="no-match"' in page
    assert 'data-testid="inventory-empty"' not in page


@pytest.mark.django_db
def test_an_empty_inventory_has_its_own_empty_state(admin_web: Client) -> None:
    page = _search(admin_web)
    assert 'data-testid="inventory-empty"' in page
    assert 'data-testid="no-match"' not in page


@pytest.mark.django_db
def test_search_by_san_fingerprint_serial_and_issuer(admin_web: Client, inventory) -> None:
    leaf = inventory.certificate("soon.example.test")
    assert _listed(_search(admin_web, q="www.soon.example")) == ["soon.example.test"]
    assert _listed(_search(admin_web, q=leaf.sha256[:16].upper())) == ["soon.example.test"]
    assert _listed(_search(admin_web, q=leaf.serial_number)) == ["soon.example.test"]
    assert len(_listed(_search(admin_web, q="Certyard Test Root CA"))) == 6


@pytest.mark.django_db
def test_list_shows_expiry_badges_issuer_and_key(admin_web: Client, inventory) -> None:
    page = _search(admin_web)
    # Soonest expiry first.
    assert _listed(page)[:3] == ["expired.example.test", "soon.example.test", "month.example.test"]
    rows = dict(
        re.findall(r'data-testid="certificate-row" data-cn="([^"]*)">(.*?)</tr>', page, re.S)
    )
    assert "Expired</span>" in rows["expired.example.test"]
    assert "&lt; 7 days</span>" in rows["soon.example.test"]
    assert "&lt; 30 days</span>" in rows["month.example.test"]
    # Further out: no expiry badge, only its status (issue 17).
    assert "days</span>" not in rows["quarter.example.test"]
    assert 'data-testid="certificate-status" data-status="valid"' in rows["quarter.example.test"]
    assert 'data-status="expired"' in rows["expired.example.test"]
    assert 'data-status="expiring"' in rows["month.example.test"]
    assert "Certyard Test Root CA" in rows["quarter.example.test"]  # issuer's CN
    assert "RSA 2048" in rows["later.example.test"]
    assert "EC 256" in rows["month.example.test"]
    assert "DNS:month.example.test" in rows["month.example.test"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"expiry": "expired"}, {"expired.example.test"}),
        ({"expiry": "7"}, {"soon.example.test"}),
        ({"expiry": "30"}, {"soon.example.test", "month.example.test"}),
        ({"key": "RSA"}, {"later.example.test"}),
        ({"q": "example.test", "expiry": "90"}, {"soon", "month", "quarter"}),
    ],
)
def test_filters(admin_web: Client, inventory, params: dict, expected: set) -> None:
    listed = set(_listed(_search(admin_web, **params)))
    if all("." not in name for name in expected):
        expected = {f"{name}.example.test" for name in expected}
    assert listed == expected


@pytest.mark.django_db
def test_store_filter(admin_web: Client, inventory) -> None:
    page = _search(admin_web, store=str(inventory.store.pk))
    assert len(_listed(page)) == 6
    assert f'<option value="{inventory.store.pk}" selected>' in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"expiry": "12"},
        {"expiry": "soon"},
        {"store": "not-a-uuid"},
        {"store": "00000000-0000-0000-0000-000000000000"},
        {"key": "DSA"},
        {"page": "abc"},
        {"page": "0"},
        {"page": "99999999999"},
        {"q": "x" * 500},
    ],
)
def test_bad_filter_values_give_a_form_error(admin_web: Client, inventory, params: dict) -> None:
    page = _search(admin_web, **params)
    assert 'data-testid="filter-errors"' in page
    assert _listed(page) == []


@pytest.mark.django_db
def test_paging_keeps_filters_and_never_counts(
    admin_web: Client, inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "CERTIFICATES_PER_PAGE", 2)
    # Everything issued by the test CA: the five leaves and the CA itself.
    with CaptureQueriesContext(connection) as queries:
        first = _search(admin_web, q="Test Root")
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    certificate_queries = [
        q["sql"] for q in queries.captured_queries if 'FROM "inventory_certificate"' in q["sql"]
    ]
    assert len(certificate_queries) == 1
    assert "LIMIT 3" in certificate_queries[0]

    assert _listed(first) == ["expired.example.test", "soon.example.test"]
    assert 'rel="prev"' not in first
    next_link = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "q=Test+Root" in next_link and "page=2" in next_link

    second = admin_web.get(reverse("console:certificate-list") + next_link).content.decode()
    assert _listed(second) == ["month.example.test", "quarter.example.test"]
    assert 'rel="prev"' in second and 'rel="next"' in second

    third = _search(admin_web, q="Test Root", page="3")
    assert len(_listed(third)) == 2
    assert 'rel="next"' not in third

    past_the_end = _search(admin_web, q="Test Root", page="9")
    assert 'data-testid="no-more"' in past_the_end


@pytest.mark.django_db
def test_detail_page(admin_web: Client, inventory) -> None:
    leaf = inventory.certificate("month.example.test")

    response = admin_web.get(reverse("console:certificate-detail", args=[leaf.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    for text in [
        leaf.subject,
        leaf.issuer,
        leaf.serial_number,
        leaf.sha256,
        leaf.sha1,
        "ecdsa-with-SHA256",
        "Download PEM",
    ]:
        assert text in page, text
    sans = re.search(r'data-testid="sans">(.*?)</dl>', page, re.S).group(1)
    assert re.search(r"<dt>DNS names</dt><dd>.*www\.month\.example\.test.*</dd>", sans, re.S), sans
    assert 'data-testid="parse-warnings"' not in page  # a conformant certificate
    chain = re.search(r'data-testid="chain">(.*?)</ol>', page, re.S).group(1)
    assert "month.example.test" in chain and "Certyard Test Root CA" in chain
    locations = re.findall(r'data-testid="location-row">(.*?)</tr>', page, re.S)
    assert len(locations) == 1
    assert "/etc/ssl/certs" in locations[0] and "approved-agent.example.test" in locations[0]
    assert "<td>month.example.test</td>" in locations[0]  # the alias


@pytest.mark.django_db
def test_pem_download_is_the_certificate(admin_web: Client, inventory) -> None:
    leaf = inventory.certificate("soon.example.test")

    response = admin_web.get(reverse("console:certificate-download", args=[leaf.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response["Content-Disposition"] == 'attachment; filename="soon.example.test.pem"'
    downloaded = x509.load_pem_x509_certificate(response.content)
    assert (
        downloaded.fingerprint(hashes.SHA256()).hex()
        == inventory.leaves["soon.example.test"].sha256
    )


@pytest.mark.django_db
def test_chain_download_holds_leaf_then_issuer(admin_web: Client, inventory) -> None:
    leaf = inventory.certificate("soon.example.test")

    response = admin_web.get(reverse("console:certificate-download-chain", args=[leaf.pk]))

    assert response["Content-Disposition"] == 'attachment; filename="soon.example.test-chain.pem"'
    fingerprints = [
        c.fingerprint(hashes.SHA256()).hex()
        for c in x509.load_pem_x509_certificates(response.content)
    ]
    assert fingerprints == [inventory.leaves["soon.example.test"].sha256, inventory.ca.sha256]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        "console:certificate-detail",
        "console:certificate-download",
        "console:certificate-download-chain",
    ],
)
def test_unknown_certificate_is_a_404_page(admin_web: Client, name: str) -> None:
    response = admin_web.get(reverse(name, args=[987654]))
    assert response.status_code == 404
    assert "Not found" in response.content.decode()


@pytest.mark.django_db
def test_download_filename_survives_a_hostile_common_name(
    admin_web: Client,
    store,
    pki,
) -> None:
    leaf = pki.leaf('evil"\r\nSet-Cookie: x=1; *.example.test', days_left=10)
    inventory_submit(
        store=store, entries=[{"alias": "evil", "private_key": False, "certificates": [leaf.pem]}]
    )
    certificate = Certificate.objects.get(sha256=leaf.sha256)

    response = admin_web.get(reverse("console:certificate-download", args=[certificate.pk]))

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert response["Content-Disposition"] == (
        'attachment; filename="evil_Set-Cookie_x_1_.example.test.pem"'
    )


# --- Non-conformant certificates ----------------------------------------------------------


@pytest.fixture
def odd_certificates(inventory, pki) -> dict[str, Certificate]:
    """Two non-conformant leaves beside the inventory: a bad version, and a bad version with
    an unreadable expiry."""
    version = pki.leaf("odd-version.example.test", days_left=50, sans=("odd-version.example.test",))
    dateless = pki.leaf("no-expiry.example.test", days_left=50)
    outcome = inventory_submit(
        store=inventory.store,
        entries=[
            *(
                {"alias": cn, "private_key": False, "certificates": [issued.pem]}
                for cn, issued in inventory.leaves.items()
            ),
            {"alias": "root-ca", "private_key": False, "certificates": [inventory.ca.pem]},
            {"alias": "odd", "private_key": False, "certificates": [nonconformant_pem(version)]},
            {
                "alias": "dateless",
                "private_key": False,
                "certificates": [nonconformant_pem(dateless, unreadable_validity=True)],
            },
        ],
    )
    assert not outcome.rejected
    return {
        "odd": Certificate.objects.get(common_name="odd-version.example.test"),
        "dateless": Certificate.objects.get(common_name="no-expiry.example.test"),
    }


@pytest.mark.django_db
def test_non_conformant_filter_and_badge(admin_web: Client, odd_certificates) -> None:
    everything = _search(admin_web)
    assert len(_listed(everything)) == 8
    assert _listed(everything)[-1] == "no-expiry.example.test"  # unknown validity last
    rows = dict(
        re.findall(r'data-testid="certificate-row" data-cn="([^"]*)">(.*?)</tr>', everything, re.S)
    )
    assert 'data-testid="nonconformant-badge"' in rows["odd-version.example.test"]
    assert 'data-testid="nonconformant-badge"' not in rows["soon.example.test"]
    assert ">unknown</span>" in rows["no-expiry.example.test"]

    only = _search(admin_web, nonconformant="on")
    assert set(_listed(only)) == {"odd-version.example.test", "no-expiry.example.test"}
    assert re.search(r'<input type="checkbox" name="nonconformant"[^>]*checked', only)


@pytest.mark.django_db
def test_detail_of_a_non_conformant_certificate_lists_its_warnings(
    admin_web: Client, odd_certificates
) -> None:
    certificate = odd_certificates["dateless"]

    response = admin_web.get(reverse("console:certificate-detail", args=[certificate.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    notice = re.search(r'data-testid="parse-warnings">(.*?)</section>', page, re.S).group(1)
    assert "Non-conformant certificate" in notice
    assert "version 6 is not a valid X.509 version" in notice
    assert "notAfter" in notice
    not_after = re.search(r'data-testid="not-after">(.*?)</dd>', page, re.S).group(1)
    assert "unknown" in not_after
    assert re.search(r"<dt>Version</dt><dd><span class=\"muted\">unknown", page)


@pytest.mark.django_db
def test_detail_shows_the_extensions(admin_web: Client, inventory) -> None:
    ca = inventory.certificate("soon.example.test").issuer_certificate

    page = admin_web.get(reverse("console:certificate-detail", args=[ca.pk])).content.decode()

    extensions = re.search(r'data-testid="extensions">(.*?)</dl>', page, re.S).group(1)
    for label in [
        "Key usage",
        "Extended key usage",
        "Basic constraints",
        "Certificate policies",
        "Authority information access",
        "CRL distribution points",
        "Other extensions",
    ]:
        assert f"<dt>{label}</dt>" in extensions, label
    assert "CA" in re.search(r"<dt>Basic constraints</dt><dd>(.*?)</dd>", extensions).group(1)


@pytest.mark.django_db
def test_dashboard_counts_certificates_of_unknown_validity(
    admin_web: Client, odd_certificates
) -> None:
    page = admin_web.get(reverse("console:dashboard")).content.decode()
    tile = re.search(r'data-testid="count-unknown"[^>]*>\s*<span class="tile-number">(\d+)<', page)
    assert tile and tile.group(1) == "1"
