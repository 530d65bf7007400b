"""No traps in enrollment (issue 17): key usages follow the key type, the orchestrators'
identity CA is never a template issuer, a repeated submission (same idempotency key)
issues once, and a refused request keeps the subject it was refused for."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from certyard.enrollment import services
from certyard.enrollment.admin import TemplateForm
from certyard.enrollment.models import EnrollmentRequest, Template
from certyard.errors import ServiceError
from certyard.inventory.models import Certificate
from certyard.pki import crypto
from certyard.pki import services as pki_services
from certyard.pki.models import CertificateAuthority, IssuedCertificate, KeyAlgorithm
from tests.certs import csr_for, private_key

pytestmark = pytest.mark.django_db
State = EnrollmentRequest.State

KEY_OF = {
    KeyAlgorithm.RSA_2048: "rsa",
    KeyAlgorithm.EC_P256: "ec",
    KeyAlgorithm.EC_P384: "ec384",
    KeyAlgorithm.ED25519: "ed25519",
}


@pytest.fixture
def ca() -> CertificateAuthority:
    return pki_services.ca_create(name="Traps Root", key_algorithm=KeyAlgorithm.EC_P256)


@pytest.fixture
def requester(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("carol", password="pw")


def _template(ca: CertificateAuthority, **fields: Any) -> Template:
    fields = {"name": "web", "ca": ca, "allowed_domains": ["example.test"], **fields}
    return Template.objects.create(**fields)


def _key_usage(request: EnrollmentRequest) -> x509.KeyUsage:
    certificate = x509.load_pem_x509_certificate(request.certificate_pem.encode())
    return certificate.extensions.get_extension_for_class(x509.KeyUsage).value


# --- Key usages by key type ---------------------------------------------------------------


def test_the_default_template_puts_no_key_encipherment_on_an_ec_certificate(
    ca: CertificateAuthority,
) -> None:
    template = _template(ca, allowed_key_types=list(KEY_OF))
    assert "key_encipherment" in template.key_usage  # the default, for RSA keys
    ec_request = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("ec.example.test", key=private_key("ec"))
    )
    rsa_request = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("rsa.example.test", key=private_key("rsa"))
    )
    ec_usage, rsa_usage = _key_usage(ec_request), _key_usage(rsa_request)
    assert ec_usage.digital_signature and not ec_usage.key_encipherment
    assert rsa_usage.digital_signature and rsa_usage.key_encipherment


@pytest.mark.parametrize("algorithm", list(KEY_OF))
def test_no_template_can_put_key_encipherment_on_an_ec_certificate_nor_key_agreement_on_rsa(
    ca: CertificateAuthority, algorithm: str
) -> None:
    """Every template that passes its checks, with every key usage it may name, issues a
    certificate whose key usages its key can use: no keyEncipherment or dataEncipherment
    for EC or Ed25519 keys, no keyAgreement for RSA or Ed25519 keys."""
    applicable = crypto.KEY_USAGES_BY_KIND[crypto.key_kind(algorithm)]
    every = list(crypto.KEY_USAGES)
    combinations = [every, ["digital_signature", "key_encipherment", "key_agreement"]]
    combinations += [["digital_signature", name] for name in every]
    for number, usages in enumerate(combinations):
        template = Template(
            name=f"t{number}", ca=ca, allowed_domains=["example.test"], key_usage=usages
        )
        template.allowed_key_types = [algorithm]
        try:
            template.full_clean()
        except ValidationError:
            continue  # refused templates issue nothing
        template.save()
        request = services.enrollment_submit_csr(
            template_name=template.name,
            csr_pem=csr_for(f"h{number}.example.test", key=private_key(KEY_OF[algorithm])),  # type: ignore[arg-type]
        )
        assert request.state == State.ISSUED, request.failure_reason
        usage = _key_usage(request)
        present = {name for name in crypto.KEY_USAGES if _bit(usage, name)}
        assert present <= applicable, (algorithm, usages, present)
        if crypto.key_kind(algorithm) == "EC":
            assert not usage.key_encipherment and not usage.data_encipherment
        if crypto.key_kind(algorithm) == "RSA":
            assert not usage.key_agreement


def _bit(usage: x509.KeyUsage, name: str) -> bool:
    if name in ("encipher_only", "decipher_only") and not usage.key_agreement:
        return False  # cryptography refuses to read them then: they are not set
    return bool(getattr(usage, name))


def test_a_template_whose_key_usages_fit_none_of_its_key_types_is_refused(
    ca: CertificateAuthority,
) -> None:
    template = Template(
        name="encrypt-only",
        ca=ca,
        key_usage=["key_encipherment"],
        allowed_key_types=[KeyAlgorithm.RSA_2048, KeyAlgorithm.EC_P256],
    )
    errors = services.template_errors(template)
    assert "EC-P256" in errors["key_usage"] and "RSA-2048" not in errors["key_usage"]
    with pytest.raises(ValidationError) as refused:
        template.full_clean()
    assert "key_usage" in refused.value.message_dict


def test_the_ca_drops_inapplicable_bits_whoever_asks(ca: CertificateAuthority) -> None:
    ec_key = private_key("ec").public_key()
    issued = pki_services.certificate_issue(
        ca=ca,
        public_key=ec_key,  # type: ignore[arg-type]
        profile=crypto.Profile(
            subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x.example.test")]),
            validity=dt.timedelta(days=1),
            key_usage=("digital_signature", "key_encipherment", "data_encipherment"),
        ),
    )
    usage = issued.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.data_encipherment
    assert crypto.key_usages_for(["key_agreement", "encipher_only"], "RSA-2048") == ()
    assert crypto.key_usages_for(["key_agreement", "encipher_only"], "EC-P256") == (
        "key_agreement",
        "encipher_only",
    )
    assert crypto.key_usages_for(["digital_signature", "key_agreement"], "Ed25519") == (
        "digital_signature",
    )


# --- The identity CA ----------------------------------------------------------------------


def test_the_identity_ca_is_not_a_template_issuer(ca: CertificateAuthority) -> None:
    identity = pki_services.orchestrator_ca_get_or_create()
    # Not offered: the form's choices (Django admin, any ModelForm) leave it out.
    form = TemplateForm()
    offered = set(form.fields["ca"].queryset)
    assert ca in offered and identity not in offered
    # Not accepted: Template.clean() (and the service every form and API shares) refuses it.
    template = Template(name="servers", ca=identity)
    assert "orchestrators" in services.template_errors(template)["ca"]
    with pytest.raises(ValidationError) as refused:
        template.full_clean()
    assert "ca" in refused.value.message_dict
    posted = TemplateForm(
        data={
            "name": "servers",
            "ca": str(identity.pk),
            "validity_days": "90",
            "max_sans": "100",
            "allowed_key_types": "EC-P256",
            "product_parameters": "{}",
        }
    )
    assert not posted.is_valid() and "ca" in posted.errors
    with pytest.raises(ServiceError):
        services.template_save(template)


def test_a_template_saved_with_the_identity_ca_before_the_rule_issues_nothing(
    requester: Any,
) -> None:
    identity = pki_services.orchestrator_ca_get_or_create()
    Template.objects.create(name="legacy", ca=identity, allowed_domains=["example.test"])
    issued_before = IssuedCertificate.objects.filter(ca=identity).count()
    with pytest.raises(services.EnrollmentRefused) as refused:
        services.enrollment_submit_csr(
            template_name="legacy", csr_pem=csr_for("www.example.test"), actor=requester
        )
    assert "issues for no template" in refused.value.message
    batch = services.enrollments_submit_csr_batch(
        template_name="legacy", csr_pems=[csr_for("a.example.test")], actor=requester
    )
    assert [r.state for r in batch] == [State.FAILED]
    assert "issues for no template" in batch[0].failure_reason
    assert IssuedCertificate.objects.filter(ca=identity).count() == issued_before


# --- A refused request names its subject ----------------------------------------------------


def test_a_refused_request_records_the_subject_and_names_it_was_refused_for(
    ca: CertificateAuthority,
) -> None:
    _template(ca)
    with pytest.raises(services.EnrollmentRefused) as refused:
        services.enrollment_submit_csr(
            template_name="web", csr_pem=csr_for("outside.example.org", "www.example.org")
        )
    request = EnrollmentRequest.objects.get(pk=refused.value.details["enrollment_id"])
    assert request.state == State.FAILED and "outside.example.org" in request.failure_reason
    assert request.subject == "CN=outside.example.org"
    assert request.sans == ["DNS:outside.example.org", "DNS:www.example.org"]

    with pytest.raises(services.EnrollmentRefused):
        services.enrollment_submit_pfx(
            template_name="web",
            common_name="pfx.example.org",
            key_algorithm="Ed25519",  # not allowed by the template
            password="long-enough-1",
        )
    pfx = EnrollmentRequest.objects.filter(method="pfx").get()
    assert pfx.state == State.FAILED and pfx.subject == "CN=pfx.example.org"


# --- Idempotency ----------------------------------------------------------------------------


def test_the_same_idempotency_key_answers_with_the_first_request(
    ca: CertificateAuthority, requester: Any, django_user_model: Any
) -> None:
    _template(ca)
    first = services.enrollment_submit_csr(
        template_name="web",
        csr_pem=csr_for("a.example.test"),
        actor=requester,
        idempotency_key="k1",
    )
    again = services.enrollment_submit_csr(
        template_name="web",
        csr_pem=csr_for("b.example.test"),
        actor=requester,
        idempotency_key="k1",
    )
    assert again.pk == first.pk and again.replayed and not first.replayed
    assert (
        EnrollmentRequest.objects.count() == 1
        and Certificate.objects.filter(common_name__endswith="example.test").count() == 1
    )
    # Another person's same key is theirs: a request of its own.
    other = django_user_model.objects.create_superuser("dave", password="pw")
    theirs = services.enrollment_submit_csr(
        template_name="web", csr_pem=csr_for("c.example.test"), actor=other, idempotency_key="k1"
    )
    assert theirs.pk != first.pk and theirs.state == State.ISSUED
    # A key reused for another kind of request is refused, and bad keys are refused.
    with pytest.raises(ServiceError) as reused:
        services.enrollment_submit_pfx(
            template_name="web",
            common_name="d.example.test",
            password="long-enough-1",
            actor=requester,
            idempotency_key="k1",
        )
    assert reused.value.code == "idempotency_key_reused"
    for bad in (" spaced ", "x" * 101, "tab\there", "é"):
        with pytest.raises(ServiceError) as invalid:
            services.enrollment_submit_csr(
                template_name="web",
                csr_pem=csr_for("e.example.test"),
                actor=requester,
                idempotency_key=bad,
            )
        assert invalid.value.code == "invalid_idempotency_key"


def test_a_repeated_pfx_submission_issues_once_and_hands_the_file_over_once(
    ca: CertificateAuthority, requester: Any
) -> None:
    _template(ca)
    arguments = {
        "template_name": "web",
        "common_name": "pfx.example.test",
        "password": "long-enough-1",
        "actor": requester,
        "idempotency_key": "double-click",
    }
    first = services.enrollment_submit_pfx(**arguments, keep_for=requester)
    second = services.enrollment_submit_pfx(**arguments, keep_for=requester)
    assert first.pfx is not None and second.pfx is None
    assert second.request.pk == first.request.pk and second.request.replayed
    assert EnrollmentRequest.objects.count() == 1
    assert IssuedCertificate.objects.filter(common_name="pfx.example.test").count() == 1
    taken = services.pfx_hand_over_take(request=first.request, owner=requester)
    assert taken == first.pfx
    assert services.pfx_hand_over_take(request=first.request, owner=requester) is None


def test_a_refused_request_is_refused_again_under_its_key(
    ca: CertificateAuthority, requester: Any
) -> None:
    _template(ca)
    for _ in range(2):
        with pytest.raises(services.EnrollmentRefused) as refused:
            services.enrollment_submit_csr(
                template_name="web",
                csr_pem=csr_for("www.example.org"),
                actor=requester,
                idempotency_key="refused-once",
            )
        assert "outside the domains" in refused.value.message
    assert EnrollmentRequest.objects.count() == 1


def test_the_api_takes_an_idempotency_key_header(ca: CertificateAuthority, requester: Any) -> None:
    _template(ca)
    api = APIClient()
    api.force_authenticate(requester)
    body = {"template": "web", "csr": csr_for("api.example.test")}
    first = api.post("/api/v1/enrollments/", body, format="json", HTTP_IDEMPOTENCY_KEY="api-1")
    again = api.post("/api/v1/enrollments/", body, format="json", HTTP_IDEMPOTENCY_KEY="api-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    fresh = api.post("/api/v1/enrollments/", body, format="json")
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]

    pfx = {"template": "web", "common_name": "p.example.test", "password": "long-enough-1"}
    made = api.post("/api/v1/enrollments/pfx/", pfx, format="json", HTTP_IDEMPOTENCY_KEY="api-2")
    repeat = api.post("/api/v1/enrollments/pfx/", pfx, format="json", HTTP_IDEMPOTENCY_KEY="api-2")
    assert made.status_code == 201 and made.json()["pkcs12"]
    assert repeat.status_code == 200 and repeat.json()["pkcs12"] is None
    assert repeat.json()["enrollment"]["id"] == made.json()["enrollment"]["id"]

    bad = api.post("/api/v1/enrollments/", body, format="json", HTTP_IDEMPOTENCY_KEY="x" * 101)
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"].keys() == {"idempotency_key"}
    reused = api.post("/api/v1/enrollments/pfx/", pfx, format="json", HTTP_IDEMPOTENCY_KEY="api-1")
    assert reused.status_code == 409


def test_keys_are_unique_per_requester_in_the_database(ca: CertificateAuthority) -> None:
    """The constraint, not only the look-up, keeps a key to one request (racing twins)."""
    request = EnrollmentRequest.objects.create(
        template_name="web", state=State.FAILED, requested_by=None, idempotency_key="k"
    )
    EnrollmentRequest.objects.create(  # no requester: not constrained
        template_name="web", state=State.FAILED, requested_by=None, idempotency_key="k"
    )
    user = get_user_model().objects.create_user("erin", password="pw")
    request.requested_by = user
    request.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        EnrollmentRequest.objects.create(
            template_name="web", state=State.FAILED, requested_by=user, idempotency_key="k"
        )
