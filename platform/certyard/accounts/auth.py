"""DRF authentication with a person's API token: ``Authorization: Token cyd_…``."""

import binascii
from hmac import compare_digest
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.settings import CONSTANTS
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request

from certyard.accounts.lockout import token_failure_record, token_failures_retry_after
from certyard.accounts.models import ApiToken
from certyard.accounts.services import api_token_touch
from certyard.precompiled import PrecompiledQuery
from certyard.security import client_address

# The tokens sharing a presented token's key, with their users: on every API request.
_tokens_by_key = PrecompiledQuery(
    lambda key: ApiToken.objects.filter(token_key=key).select_related("user"), key=str
)


class ApiTokenAuthentication(TokenAuthentication):
    """knox's token authentication, recording when each token was last used.

    A missing ``Authorization`` header is answered 401 with ``WWW-Authenticate: Token``
    (DRF takes that from the first authentication class); an unknown, revoked or expired
    token is refused 401 as well (knox deletes an expired token when it sees it).

    An address that presented too many refused tokens (``CERTYARD_TOKEN_FAILURE_LIMIT``
    within ``CERTYARD_LOGIN_COOLOFF_MINUTES``) is answered 429 with ``Retry-After`` for
    every token it sends until then, valid or not, so guessing cannot go on; the count is
    in the shared cache, the same in every web process.
    """

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.authenticate_header(request).lower().encode():
            return None  # no token: nothing to count (session auth may follow)
        address = client_address(request)
        if (wait := token_failures_retry_after(address)) is not None:
            raise exceptions.Throttled(
                wait=wait,
                detail="Too many refused API tokens from your address; try again later.",
            )
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            token_failure_record(address)
            raise

    def authenticate_credentials(self, token: bytes) -> tuple[Any, ApiToken]:
        """One indexed query: the tokens sharing the presented one's key (with their
        user), then the digest compared in constant time.

        knox's own version also loads every token of the user on every request to delete
        the expired ones; here the presented token is deleted when it has expired, and
        the user's other expired ones when the token's use is recorded (once a minute).
        """
        refused = exceptions.AuthenticationFailed("Invalid token.")
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            # knox would fail with a server error on a header that is not UTF-8.
            raise refused from None
        for auth_token in _tokens_by_key(key=text[: CONSTANTS.TOKEN_KEY_LENGTH]):
            try:
                digest = hash_token(text)
            except (TypeError, binascii.Error):
                raise refused from None
            if not compare_digest(digest, auth_token.digest):
                continue
            if auth_token.is_expired:
                auth_token.delete()
                raise refused
            user, auth_token = self.validate_user(auth_token)
            break
        else:
            raise refused
        api_token_touch(token=auth_token)
        # The services a view calls get the user only: the token it came with rides along
        # (a fresh user object each request), so jobs record which token asked for them.
        user.api_token = auth_token
        return user, auth_token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes people's API tokens in the OpenAPI schema (as ``tokenAuth``, as before)."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                'A person\'s API token, sent as "Token cyd_…"; create one in the console '
                "(API tokens), where its value is shown once."
            ),
        }
