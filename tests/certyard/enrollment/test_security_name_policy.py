"""Issue 14, findings 4 and 6: the name policy checks every name, and names are bounded in
bytes as cryptography counts them.

Finding 4: with a template allowing only ``good.test``, CSRs with CN ``www.bank.test ``,
``www.bank.test@x`` or ``intranet`` were issued, O/C/emailAddress were copied unchecked,
duplicate SANs were accepted, and the auto-approval rule read only the SANs.
Finding 6: a non-ASCII name within the character limits but over the byte limits was a
500 (PFX enrollment, CA creation), and the failed enrollment was not recorded.

Everything goes through the real API, console and workflow runner.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, IssuedCertificate
from certyard.workflows.models import Event, HandlerRun
from tests import certs
from tests.certyard.conftest import error_of

pytestmark = pytest.mark.django_db
State = EnrollmentRequest.State
ENROLL = "/api/v1/enrollments/"
PFX = "/api/v1/enrollments/pfx/"


def csr(*sans: str, cn: str | None = None, **attributes: str) -> str:
    """A CSR for a new key: ``cn`` and other subject attributes by short name, DNS SANs."""
    oids = {
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "C": NameOID.COUNTRY_NAME,
        "emailAddress": NameOID.EMAIL_ADDRESS,
    }
    extra = [x509.NameAttribute(oids[short], value) for short, value in attributes.items()]
    return certs.csr(cn, *sans, subject_extra=extra)


@pytest.fixture
def ca() -> CertificateAuthority:
    return pki_services.ca_create(name="Root", path_length=0)


@pytest.fixture
def good(ca: CertificateAuthority) -> Template:
    return Template.objects.create(name="good", ca=ca, allowed_domains=["good.test"])


def refused(api: APIClient, url: str, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Post, expect a 4xx JSON refusal recorded as a failed request with its reason and
    nothing issued; the error and the recorded request (as the API shows it)."""
    before = IssuedCertificate.objects.count()
    response = api.post(url, body, format="json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    error = error_of(response)
    recorded = api.get(f"{ENROLL}{error['enrollment_id']}/").json()
    assert recorded["state"] == "failed"
    assert recorded["failure_reason"] == error["message"]
    assert recorded["certificate"] is None and not recorded["certificate_pem"]
    assert IssuedCertificate.objects.count() == before
    return error, recorded


# --- Finding 4: every name is checked --------------------------------------------------------


@pytest.mark.parametrize(
    ("common_name", "reason"),
    [
        ("www.bank.test ", "starts or ends with white space"),
        ("www.bank.test@x", "is not a DNS name"),
        ("intranet", "is a single-label name"),
    ],
    ids=["trailing-space", "at-sign", "single-label"],
)
def test_a_common_name_that_is_no_allowed_dns_name_is_refused(
    admin_api: APIClient, good: Template, common_name: str, reason: str
) -> None:
    error, _ = refused(
        admin_api, ENROLL, {"template": "good", "csr": csr("a.good.test", cn=common_name)}
    )
    assert reason in error["message"]
    assert repr(common_name) in error["message"]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("O", "Bank of Examples Ltd"), ("C", "GB"), ("emailAddress", "ceo@bank.test")],
)
def test_subject_attributes_the_template_does_not_name_are_refused(
    admin_api: APIClient, good: Template, attribute: str, value: str
) -> None:
    body = {"template": "good", "csr": csr("a.good.test", cn="a.good.test", **{attribute: value})}
    error, _ = refused(admin_api, ENROLL, body)
    assert f"does not allow the subject attribute {attribute} ({value!r})" in error["message"]


@pytest.mark.parametrize(
    "sans",
    [("a.good.test",) * 5, ("a.good.test", "b.good.test", "A.Good.Test")],
    ids=["five-times", "case-differs"],
)
def test_duplicate_sans_are_refused(
    admin_api: APIClient, good: Template, sans: tuple[str, ...]
) -> None:
    error, _ = refused(admin_api, ENROLL, {"template": "good", "csr": csr(*sans)})
    assert "more than once" in error["message"]


def test_the_common_name_becomes_one_of_the_names(admin_api: APIClient, good: Template) -> None:
    response = admin_api.post(
        ENROLL, {"template": "good", "csr": csr("b.good.test", cn="a.good.test")}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == "issued"
    assert body["sans"] == ["DNS:a.good.test", "DNS:b.good.test"]
    certificate = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["a.good.test", "b.good.test"]


def test_allowed_required_and_fixed_attributes(admin_api: APIClient, good: Template) -> None:
    good.subject_attributes = {
        "O": {"rule": "required"},
        "OU": {"rule": "allowed"},
        "C": {"rule": "fixed", "value": "DE"},
    }
    good.save()
    response = admin_api.post(
        ENROLL,
        {"template": "good", "csr": csr(cn="a.good.test", O="Good Ltd", OU="Web")},
        format="json",
    )
    assert response.status_code == 201, response.content
    certificate = x509.load_pem_x509_certificate(response.json()["certificate_pem"].encode())
    # The fixed C is written although the CSR did not ask for it.
    assert certificate.subject.rfc4514_string() == "CN=a.good.test,OU=Web,O=Good Ltd,C=DE"

    missing, _ = refused(admin_api, ENROLL, {"template": "good", "csr": csr(cn="a.good.test")})
    assert "requires the subject field O" in missing["message"]
    other = csr(cn="a.good.test", O="Good Ltd", C="GB")
    differs, _ = refused(admin_api, ENROLL, {"template": "good", "csr": other})
    assert "fixes C to 'DE'; the request asks for 'GB'" in differs["message"]


def test_a_template_may_allow_a_free_text_common_name(admin_api: APIClient, good: Template) -> None:
    good.allow_non_dns_common_name = True
    good.extended_key_usage = ["client_auth"]
    good.save()
    person = admin_api.post(
        ENROLL, {"template": "good", "csr": csr(cn="Alice Example")}, format="json"
    )
    assert person.status_code == 201, person.content
    assert person.json()["sans"] == []
    # A CN that reads as a host name is still held to the domains.
    error, _ = refused(admin_api, ENROLL, {"template": "good", "csr": csr(cn="www.bank.test")})
    assert "outside the domains" in error["message"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"common_name": "intranet", "sans": []}, "single-label"),
        ({"common_name": "www.bank.test", "sans": ["a.good.test"]}, "outside the domains"),
        ({"common_name": "a.good.test", "sans": ["b.good.test"] * 5}, "more than once"),
    ],
    ids=["single-label", "cn-outside", "duplicates"],
)
def test_pfx_enrollment_goes_through_the_same_checks(
    admin_api: APIClient, good: Template, body: dict[str, Any], reason: str
) -> None:
    request = {"template": "good", "password": "long enough", **body}
    error, recorded = refused(admin_api, PFX, request)
    assert reason in error["message"]
    assert recorded["method"] == "pfx"


def _run_pending_handlers(capture: Any) -> list[HandlerRun]:
    from certyard.workflows.runner import event_runs_execute

    runs: list[HandlerRun] = []
    for event in Event.objects.filter(kind="enrollment.pending").order_by("pk"):
        with capture(execute=True):
            event_runs_execute(event.pk)
        runs += list(HandlerRun.objects.filter(event=event))
    return runs


@pytest.fixture
def approve_good_test(good: Template) -> None:
    from certyard.workflows.models import HandlerRegistration
    from certyard.workflows.services import registration_save

    # The template allows both domains; the rule approves only good.test on its own.
    good.allowed_domains = ["good.test", "bank.test"]
    good.require_approval = True
    good.save()
    registration_save(
        registration=HandlerRegistration(
            name="auto good.test",
            handler="certyard.enrollment_rules",
            events=["enrollment.pending"],
        ),
        values={"allowed_domains": ["good.test"], "comment": "good.test only"},
    )


def test_the_approval_rule_judges_the_common_name_too(
    admin_api: APIClient, approve_good_test: None, django_capture_on_commit_callbacks: Any
) -> None:
    response = admin_api.post(
        ENROLL, {"template": "good", "csr": csr("a.good.test", cn="www.bank.test")}, format="json"
    )
    assert response.status_code == 201, response.content
    event = Event.objects.get(kind="enrollment.pending")
    assert event.data["common_name"] == "www.bank.test"
    (run,) = _run_pending_handlers(django_capture_on_commit_callbacks)
    assert run.state == "succeeded"
    assert "www.bank.test is outside ['good.test']" in run.message
    request = EnrollmentRequest.objects.get(pk=response.json()["id"])
    assert request.state == State.PENDING and request.certificate_id is None
    assert IssuedCertificate.objects.count() == 0


def test_the_approval_rule_reads_the_cn_of_an_event_that_does_not_name_it(
    good: Template, approve_good_test: None, django_capture_on_commit_callbacks: Any
) -> None:
    """A request left pending by an older version: its SANs lack its CN, and its event
    carries only the subject."""
    from certyard.workflows.services import event_emit

    request = EnrollmentRequest.objects.create(
        template=good,
        template_name="good",
        state=State.PENDING,
        csr_pem=csr("a.good.test", cn="www.bank.test"),
        subject="CN=www.bank.test",
        sans=["DNS:a.good.test"],
        key_algorithm="EC-P256",
    )
    event_emit(
        kind="enrollment.pending",
        subject_type="enrollment",
        subject_id=str(request.pk),
        subject_label=request.subject,
        data={
            "enrollment_id": str(request.pk),
            "template": "good",
            "type": "new",
            "subject": "CN=www.bank.test",
            "sans": ["DNS:a.good.test"],
            "requested_by": "",
        },
    )
    (run,) = _run_pending_handlers(django_capture_on_commit_callbacks)
    assert "left for an approver" in run.message
    request.refresh_from_db()
    assert request.state == State.PENDING
    assert IssuedCertificate.objects.count() == 0


def test_template_subject_attribute_rules_are_checked_by_the_admin_form(
    ca: CertificateAuthority,
) -> None:
    from certyard.enrollment.admin import TemplateForm

    def form(rules: str) -> TemplateForm:
        data = {
            "name": "client",
            "ca": str(ca.pk),
            "validity_days": "90",
            "allowed_key_types": "EC-P256",
            "max_sans": "10",
            "product_parameters": "{}",
            "subject_attributes": rules,
        }
        return TemplateForm(data=data)

    fine = form("O: required\nOU: allowed\nC: fixed DE\n")
    assert fine.is_valid(), fine.errors
    assert fine.cleaned_data["subject_attributes"] == {
        "O": {"rule": "required"},
        "OU": {"rule": "allowed"},
        "C": {"rule": "fixed", "value": "DE"},
    }
    for rules, message in [
        ("serialNumber: allowed", "serialNumber: not a subject attribute"),
        ("O: maybe", "the rule is allowed, required or fixed, not 'maybe'"),
        ("C: fixed Germany", "two-letter code"),
        ("O: fixed " + "é" * 40, "80 bytes in UTF-8"),
        ("CN: fixed a.good.test", "cannot be fixed"),
        ("O: required Acme", "only a fixed attribute has a value"),
        ("just words", "Line 1: write ATTRIBUTE"),
    ]:
        bad = form(rules)
        assert not bad.is_valid()
        assert message in " ".join(bad.errors.get("subject_attributes", [])), (rules, bad.errors)


# --- Finding 6: bounds in UTF-8 bytes --------------------------------------------------------


def test_pfx_with_a_non_ascii_common_name_over_64_bytes_is_refused_and_recorded(
    admin_api: APIClient, good: Template
) -> None:
    body = {"template": "good", "common_name": "é" * 40, "password": "long enough"}
    error, recorded = refused(admin_api, PFX, body)
    assert "common_name" in error["fields"]
    assert "80 bytes in UTF-8 (40 characters)" in error["message"]
    assert recorded["method"] == "pfx"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"country": "ÿå"}, "country"),
        ({"common_name": "é" * 40}, "common_name"),
        ({"organization": "é" * 40}, "organization"),
        ({"name": "é" * 40}, "common_name"),  # the name is the CN when none is given
    ],
    ids=["country", "common-name", "organization", "name-as-common-name"],
)
def test_ca_create_with_non_ascii_names_over_their_bytes_is_a_4xx(
    admin_api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = admin_api.post("/api/v1/cas/", {"name": "Bytes CA", **body}, format="json")
    assert response.status_code == 400, response.content[:500]
    error = error_of(response)
    assert field in error["fields"], error
    assert not CertificateAuthority.objects.exists()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"country": "ÿå"}, "country"),
        ({"common_name": "é" * 40}, "common_name"),
        ({"organization": "é" * 40}, "organization"),
    ],
)
def test_ca_create_service_refuses_names_over_their_bytes(
    values: dict[str, str], field: str
) -> None:
    from certyard.errors import ServiceError

    with pytest.raises(ServiceError) as caught:
        pki_services.ca_create(name="Bytes CA", **values)
    assert field in caught.value.fields
    assert not CertificateAuthority.objects.exists()


@pytest.fixture
def web(superuser: Any) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def _field_errors(page: str) -> str:
    import re

    return " ".join(re.findall(r'<p class="field-error" role="alert">([^<]+)</p>', page))


def test_console_ca_form_shows_byte_limits_as_field_errors(web: Client) -> None:
    base = {"name": "Bytes CA", "key_algorithm": "EC-P256", "validity_days": "365"}
    for values, message in [
        ({"common_name": "é" * 40}, "80 bytes in UTF-8"),
        ({"organization": "é" * 40}, "80 bytes in UTF-8"),
        ({"country": "ÿå"}, "Two letters"),
    ]:
        response = web.post(reverse("console:ca-create"), {**base, **values})
        assert response.status_code == 200
        assert message in _field_errors(response.content.decode())
    assert not CertificateAuthority.objects.exists()


def test_console_pfx_form_with_a_non_ascii_common_name_is_a_recorded_form_error(
    web: Client, good: Template
) -> None:
    response = web.post(
        reverse("console:enroll"),
        {
            "template": "good",
            "method": "pfx",
            "common_name": "é" * 40,
            "sans": "",
            "key_algorithm": "EC-P256",
            "password": "pkcs12-secret-1",
            "password_confirm": "pkcs12-secret-1",
        },
    )
    assert response.status_code == 200
    assert "80 bytes in UTF-8" in response.content.decode()
    failed = EnrollmentRequest.objects.get()
    assert failed.state == State.FAILED and "80 bytes in UTF-8" in failed.failure_reason
    assert IssuedCertificate.objects.count() == 0
