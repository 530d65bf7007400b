"""The one error the X.509 package raises for input that is no certificate."""


class CertificateParseError(ValueError):
    """The input is not a certificate we can read; the message says why."""
