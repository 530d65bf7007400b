"""X.509 certificates without Django: PEM framing, a lenient DER reader, parsing, display.

A library package, not a Django app: it imports only the standard library and
``cryptography``, so any app (inventory, enrollment, pki, console) may use it.
Modules, one kind of code each: ``oids`` (tables), ``pem``, ``der`` (the reader),
``names`` (distinguished names), ``extensions`` (decoders), ``parse`` (the fields the
inventory keeps), ``display`` (the certificate page's words), ``text``, ``errors``.
"""

from certyard.x509.display import CertificateDetails, certificate_details, certificate_file_stem
from certyard.x509.errors import CertificateParseError
from certyard.x509.parse import ParsedCertificate, certificate_parse, sha256_hex
from certyard.x509.pem import der_to_pem, pem_blocks_to_der, pem_to_der
from certyard.x509.text import text_is_storable

__all__ = [
    "CertificateDetails",
    "CertificateParseError",
    "ParsedCertificate",
    "certificate_details",
    "certificate_file_stem",
    "certificate_parse",
    "der_to_pem",
    "pem_blocks_to_der",
    "pem_to_der",
    "sha256_hex",
    "text_is_storable",
]
