"""Input checks for the agent API (see orchestrators/protocol.py for the contract)."""

from rest_framework import serializers

from certyard.api.serializers import Serializer
from certyard.fleet.services import client_machine_problem
from orchestrators.protocol import MAX_REPORTED_STORE_ROOTS
from orchestrators.roots import MAX_STORE_PATH_BYTES

_MAX_CAPABILITIES = 200
_MAX_PARAMETERS = 100
MAX_STORE_ROOTS = MAX_REPORTED_STORE_ROOTS  # the protocol's bound (POST limits)


class RegisterSerializer(Serializer):
    token = serializers.CharField(max_length=200)
    name = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,199}\Z",
        error_messages={"invalid": "use letters, digits, '.', '_', '@' or '-' (up to 200)"},
    )
    client_machine = serializers.CharField(
        max_length=253,
        trim_whitespace=False,  # a name with spaces around it is refused, not mended
        help_text="The agent's host name (letters, digits, '-' and '_' in dot-separated "
        "labels of up to 63 characters) or IP address. A claim: rules that approve should "
        "also match what the platform verifies (token labels, source address).",
    )
    agent_version = serializers.CharField(max_length=50, allow_blank=True, default="")
    capabilities = serializers.ListField(
        child=serializers.RegexField(r"^[A-Za-z0-9_-]{1,40}\.[A-Za-z]{1,20}$"),
        max_length=_MAX_CAPABILITIES,
        default=list,
    )
    client_parameters = serializers.DictField(
        child=serializers.CharField(max_length=1000, allow_blank=True), default=dict
    )
    csr = serializers.CharField(max_length=20_000)

    def validate_client_machine(self, value: str) -> str:
        # It ends up in store paths, events, e-mails and the console: only a host name or an
        # address (no path, line break, space, markup or bidi character) is accepted.
        problem = client_machine_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_client_parameters(self, value: dict) -> dict:
        if len(value) > _MAX_PARAMETERS:
            raise serializers.ValidationError(f"at most {_MAX_PARAMETERS} parameters")
        key_field = serializers.CharField(max_length=100)  # refuses NUL and lone surrogates
        for key in value:
            key_field.run_validation(key)
        return value


class RegisterResponseSerializer(Serializer):
    orchestrator_id = serializers.UUIDField()
    status = serializers.CharField()
    certificate = serializers.CharField()
    ca_chain = serializers.ListField(child=serializers.CharField())


class SessionSerializer(Serializer):
    orchestrator_id = serializers.UUIDField()
    issued_at = serializers.IntegerField(min_value=0)
    nonce = serializers.CharField(min_length=8, max_length=100)
    signature = serializers.CharField(max_length=1000)


class CertificateTimesSerializer(Serializer):
    """When the agent's client certificate expires, and from when it should renew it."""

    certificate_not_after = serializers.DateTimeField(
        allow_null=True, help_text="When the orchestrator's current client certificate expires."
    )
    renew_after = serializers.DateTimeField(
        allow_null=True,
        help_text="From this time on the agent renews its certificate "
        "(POST certificate with a CSR for a new key).",
    )


class SessionResponseSerializer(CertificateTimesSerializer):
    token = serializers.CharField()
    expires_in = serializers.IntegerField()
    status = serializers.CharField()


class HeartbeatResponseSerializer(CertificateTimesSerializer):
    status = serializers.CharField()
    server_time = serializers.DateTimeField()


class CertificateRenewSerializer(Serializer):
    csr = serializers.CharField(
        max_length=20_000,
        help_text="PEM PKCS#10 request for the agent's new EC P-256 (or P-384) key; one for "
        "the current key is accepted too. Its subject is ignored.",
    )


class CertificateRenewResponseSerializer(Serializer):
    certificate = serializers.CharField(help_text="The new PEM client certificate.")
    ca_chain = serializers.ListField(child=serializers.CharField())
    not_after = serializers.DateTimeField()
    renew_after = serializers.DateTimeField(allow_null=True)


STORE_ROOT_PATTERN = r"^/(?!(?:.*/)?\.\.(?:/|$))[^\x00]*$"


class LimitsSerializer(Serializer):
    """What an agent may touch on its machine, as it reports it (POST limits)."""

    store_roots = serializers.ListField(
        # The pattern lets the schema say what it can: absolute, no '..', no NUL. The
        # limit is the file system's (PATH_MAX), in bytes: validate_store_roots counts
        # them, which no schema can (the schemathesis test names it beyond the schema).
        child=serializers.RegexField(
            STORE_ROOT_PATTERN,
            max_length=MAX_STORE_PATH_BYTES,
            trim_whitespace=False,
            allow_blank=False,
        ),
        max_length=MAX_STORE_ROOTS,
        allow_empty=True,
        help_text=f"The absolute folders stores may be in (at most {MAX_STORE_ROOTS}, each "
        f"at most {MAX_STORE_PATH_BYTES} bytes in UTF-8, no '..' component); empty when none "
        "is configured.",
    )
    max_file_bytes = serializers.IntegerField(
        min_value=1,
        max_value=2**63 - 1,
        help_text="The largest store file the agent reads, in bytes.",
    )

    def validate_store_roots(self, value: list[str]) -> list[str]:
        for root in value:
            if len(root.encode("utf-8", "surrogatepass")) > MAX_STORE_PATH_BYTES:
                raise serializers.ValidationError(
                    f"each root is at most {MAX_STORE_PATH_BYTES} bytes in UTF-8"
                )
        return value


class LimitsResponseSerializer(Serializer):
    store_roots = serializers.ListField(child=serializers.CharField())
    max_file_bytes = serializers.IntegerField()
    reported_at = serializers.DateTimeField()
