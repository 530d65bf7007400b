"""The object identifiers certificates use, and the names people know them by.

Tables only, and the lookups over them: what each extension, name attribute, key
algorithm, key usage, policy and access method is called, in warnings and on pages.
"""

from __future__ import annotations

from cryptography import x509

OID_SAN = "2.5.29.17"
OID_IAN = "2.5.29.18"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_KEY_USAGE = "2.5.29.15"
OID_EKU = "2.5.29.37"
OID_POLICIES = "2.5.29.32"
OID_CRL_DP = "2.5.29.31"
OID_NAME_CONSTRAINTS = "2.5.29.30"
OID_INHIBIT_ANY_POLICY = "2.5.29.54"
OID_AIA = "1.3.6.1.5.5.7.1.1"
OID_SIA = "1.3.6.1.5.5.7.1.11"
OID_SCTS = "1.3.6.1.4.1.11129.2.4.2"
OID_UPN = "1.3.6.1.4.1.311.20.2.3"
OID_CPS = "1.3.6.1.5.5.7.2.1"
OID_USER_NOTICE = "1.3.6.1.5.5.7.2.2"
OID_COMMON_NAME = "2.5.4.3"
OID_COUNTRY = "2.5.4.6"

# How extensions are named in warnings.
EXTENSION_LABELS = {
    OID_SAN: "subject alternative name",
    OID_IAN: "issuer alternative name",
    OID_BASIC_CONSTRAINTS: "basicConstraints",
    OID_KEY_USAGE: "keyUsage",
    OID_EKU: "extendedKeyUsage",
    OID_POLICIES: "certificatePolicies",
    OID_CRL_DP: "cRLDistributionPoints",
    OID_NAME_CONSTRAINTS: "nameConstraints",
    OID_INHIBIT_ANY_POLICY: "inhibitAnyPolicy",
    OID_AIA: "authorityInfoAccess",
    OID_SIA: "subjectInfoAccess",
    OID_SCTS: "signed certificate timestamps",
}
# The attribute keys cryptography's rfc4514_string() uses; other types are dotted.
NAME_KEYS = {
    OID_COMMON_NAME: "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    OID_COUNTRY: "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
RSA_OIDS = frozenset({"1.2.840.113549.1.1.1", "1.2.840.113549.1.1.10"})
OID_EC = "1.2.840.10045.2.1"
OID_DSA = "1.2.840.10040.4.1"
OID_PRIME_FIELD = "1.2.840.10045.1.1"
KEY_ALGORITHMS = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.113549.1.1.10": "RSA",
    OID_EC: "EC",
    OID_DSA: "DSA",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
    "1.3.101.110": "X25519",
    "1.3.101.111": "X448",
    "1.2.840.10046.2.1": "DH",
    "1.2.840.113549.1.3.1": "DH",
    "1.2.643.2.2.19": "GOST R 34.10-2001",
    "1.2.643.2.2.20": "GOST R 34.10-94",
    "1.2.643.7.1.1.1.1": "GOST R 34.10-2012",
    "1.2.643.7.1.1.1.2": "GOST R 34.10-2012",
    "1.2.156.10197.1.301": "SM2",
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
}
FIXED_KEY_SIZES = {"Ed25519": 256, "Ed448": 456, "X25519": 256, "X448": 448}
# Signature algorithms whose AlgorithmIdentifier must have no parameters.
PARAMETERLESS_SIGNATURES = frozenset(
    {
        "1.2.840.10045.4.1",
        "1.2.840.10045.4.3.1",
        "1.2.840.10045.4.3.2",
        "1.2.840.10045.4.3.3",
        "1.2.840.10045.4.3.4",
        "1.2.840.10040.4.3",
        "2.16.840.1.101.3.4.3.1",
        "2.16.840.1.101.3.4.3.2",
        "1.3.101.112",
        "1.3.101.113",
    }
)
KEY_USAGES = (
    "Digital signature",
    "Non-repudiation",
    "Key encipherment",
    "Data encipherment",
    "Key agreement",
    "Certificate signing",
    "CRL signing",
    "Encipher only",
    "Decipher only",
)
EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "TLS Web Server Authentication",
    "1.3.6.1.5.5.7.3.2": "TLS Web Client Authentication",
    "1.3.6.1.5.5.7.3.3": "Code Signing",
    "1.3.6.1.5.5.7.3.4": "E-mail Protection",
    "1.3.6.1.5.5.7.3.5": "IPSec End System",
    "1.3.6.1.5.5.7.3.6": "IPSec Tunnel",
    "1.3.6.1.5.5.7.3.7": "IPSec User",
    "1.3.6.1.5.5.7.3.8": "Time Stamping",
    "1.3.6.1.5.5.7.3.9": "OCSP Signing",
    "1.3.6.1.5.5.7.3.17": "IPSec IKE",
    "2.5.29.37.0": "Any Extended Key Usage",
    "1.3.6.1.4.1.311.20.2.2": "Microsoft Smartcard Logon",
    "1.3.6.1.4.1.311.10.3.4": "Microsoft Encrypted File System",
    "1.3.6.1.5.2.3.5": "Kerberos KDC",
}
POLICY_NAMES = {
    "2.5.29.32.0": "anyPolicy",
    "2.23.140.1.1": "CA/B Forum Extended Validation",
    "2.23.140.1.2.1": "CA/B Forum Domain Validated",
    "2.23.140.1.2.2": "CA/B Forum Organization Validated",
    "2.23.140.1.2.3": "CA/B Forum Individual Validated",
}
ACCESS_METHODS = {
    "1.3.6.1.5.5.7.48.1": "OCSP",
    "1.3.6.1.5.5.7.48.2": "CA Issuers",
    "1.3.6.1.5.5.7.48.3": "Time Stamping",
    "1.3.6.1.5.5.7.48.5": "CA Repository",
}
SAN_GROUPS = {
    "DNS": "DNS names",
    "IP": "IP addresses",
    "email": "Email addresses",
    "URI": "URIs",
    "DirName": "Directory names",
    "othername": "Other names",
    "RID": "Registered IDs",
    "X400Address": "X.400 addresses",
    "EdiPartyName": "EDI party names",
}
# GeneralName's context tags, in the order RFC 5280 numbers them.
GENERAL_NAME_KINDS = (
    "othername",
    "email",
    "DNS",
    "X400Address",
    "DirName",
    "EdiPartyName",
    "URI",
    "IP",
    "RID",
)


def oid_label(oid: x509.ObjectIdentifier | str) -> str:
    """cryptography's name for an OID (``sha256WithRSAEncryption``), else its dotted form."""
    try:
        known = oid if isinstance(oid, x509.ObjectIdentifier) else x509.ObjectIdentifier(oid)
        name = known._name
        dotted = known.dotted_string
    except Exception:
        return str(oid)
    return dotted if not name or name == "Unknown OID" else name


def named_oid(dotted: str, names: dict[str, str]) -> str:
    name = names.get(dotted)
    return f"{name} ({dotted})" if name else dotted


def extension_label(dotted: str) -> str:
    return EXTENSION_LABELS.get(dotted) or oid_label(dotted)
