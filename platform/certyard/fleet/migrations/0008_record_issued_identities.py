"""Record the orchestrator certificates issued before the PKI kept a record of them, so
they can be revoked (and appear in the orchestrator CA's CRL) like the newer ones."""

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from django.db import migrations


def record(apps, schema_editor):
    Orchestrator = apps.get_model("fleet", "Orchestrator")
    CertificateAuthority = apps.get_model("pki", "CertificateAuthority")
    IssuedCertificate = apps.get_model("pki", "IssuedCertificate")
    ca = CertificateAuthority.objects.filter(purpose="orchestrators").first()
    if ca is None:
        return
    for pem in Orchestrator.objects.exclude(certificate_pem="").values_list(
        "certificate_pem", flat=True
    ):
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            continue
        sha256 = certificate.fingerprint(hashes.SHA256()).hex()
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        IssuedCertificate.objects.get_or_create(
            sha256=sha256,
            defaults={
                "ca": ca,
                "serial_number": format(certificate.serial_number, "x"),
                "subject": certificate.subject.rfc4514_string(),
                "common_name": str(names[0].value)[:255] if names else "",
                "not_before": certificate.not_valid_before_utc,
                "not_after": certificate.not_valid_after_utc,
                "certificate_pem": pem,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("fleet", "0007_orchestrator_metadata"), ("pki", "0002_issuing_cas")]
    operations = [migrations.RunPython(record, migrations.RunPython.noop)]
