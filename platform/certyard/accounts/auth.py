"""DRF authentication with a person's API token: ``Authorization: Token cyd_…``."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from rest_framework import exceptions

from certyard.accounts.models import ApiToken
from certyard.accounts.services import api_token_touch


class ApiTokenAuthentication(TokenAuthentication):
    """knox's token authentication, recording when each token was last used.

    A missing ``Authorization`` header is answered 401 with ``WWW-Authenticate: Token``
    (DRF takes that from the first authentication class); an unknown, revoked or expired
    token is refused 401 as well (knox deletes an expired token when it sees it).
    """

    def authenticate_credentials(self, token: bytes) -> tuple[Any, ApiToken]:
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            # knox would fail with a server error on a header that is not UTF-8.
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        user, auth_token = super().authenticate_credentials(token)
        api_token_touch(token=auth_token)
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
