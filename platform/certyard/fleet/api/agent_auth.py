"""How an agent authenticates: a bearer session token opened by proof of its key.

Every app's agent views build on :class:`AgentView` (and read bodies with
:func:`valid_body`), from here: the agent API's base belongs to the app that owns the
agent's identity, not to one of its view modules.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from certyard.api.errors import ApiError
from certyard.fleet.models import Orchestrator
from certyard.fleet.services import orchestrator_from_session_token, orchestrator_seen


class OrchestratorSessionAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Orchestrator, str] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header")
        token = header[1].decode(errors="replace")
        orchestrator = orchestrator_from_session_token(token)
        if orchestrator is None:
            raise exceptions.AuthenticationFailed(
                "the session is invalid or expired; open a new one with a signed assertion"
            )
        orchestrator_seen(orchestrator=orchestrator)
        return orchestrator, token

    def authenticate_header(self, request: Request) -> str:
        # Makes a request without a session a 401 naming the scheme, not a 403.
        return f'{self.keyword} realm="certyard-orchestrator"'


class IsOrchestrator(permissions.BasePermission):
    message = "this endpoint is for orchestrators with an open session"

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.user, Orchestrator)


class OrchestratorSessionScheme(OpenApiAuthenticationExtension):
    """Describes the agent's bearer session in the OpenAPI schema."""

    target_class = OrchestratorSessionAuthentication
    name = "orchestratorSession"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A session token from POST /api/orchestrator/v1/session, opened with an "
                "assertion signed by the orchestrator's registered key."
            ),
        }


# The base of an agent API view: an open session of an orchestrator, required. (A comment,
# not a docstring: drf-spectacular would describe every agent operation with it.)
class AgentView(APIView):
    authentication_classes = [OrchestratorSessionAuthentication]
    permission_classes = [IsOrchestrator]


def valid_body(serializer_class: type, request: Request) -> dict[str, Any]:
    """The request's JSON object, checked by ``serializer_class``: its validated data."""
    if not isinstance(request.data, dict):
        raise ApiError("the body must be a JSON object")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
