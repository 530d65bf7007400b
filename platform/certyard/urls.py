from functools import cache
from pathlib import Path

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter
from rest_framework.urlpatterns import format_suffix_patterns

from certyard.api.errors import error_body
from certyard.fleet.api import urls as fleet_api
from certyard.health import healthz
from certyard.inventory.api import urls as inventory_api
from certyard.jobs.api import urls as jobs_api

# The apps' API routes are composed here, not in certyard.api: that package is the
# infrastructure every app imports (errors, schema, permissions), so it imports no app.

# /api/v1/'s index (DRF's browsable root) lists the fleet, inventory and jobs resources,
# as it always has; their own routes answer ``.json`` suffixes for the same reason.
_api_index = DefaultRouter(trailing_slash=True)
for _router in (fleet_api.router, inventory_api.router, jobs_api.router):
    _api_index.registry.extend(_router.registry)

api_v1_urlpatterns = [
    path("", include("certyard.jobs.api.urls")),
    path("", include("certyard.fleet.api.urls")),
    path("", include("certyard.inventory.api.urls")),
    *format_suffix_patterns([path("", _api_index.get_api_root_view(), name="api-root")]),
    path("", include("certyard.blueprints.api.urls")),
    path("", include("certyard.workflows.api.urls")),
    path("", include("certyard.pki.api.urls")),
    path("", include("certyard.enrollment.api.urls")),
    path("", include("certyard.deployment.api.urls")),
]

# One namespace for the agent API, whichever app answers the call.
agent_api_urlpatterns = (
    [
        path("", include("certyard.fleet.api.agent_urls")),
        path("", include("certyard.jobs.api.agent_urls")),
        path("", include("certyard.inventory.api.agent_urls")),
        path("", include("certyard.deployment.api.agent_urls")),
    ],
    "agent-api",
)


@cache
def _favicon_bytes() -> bytes | None:
    found = finders.find("certyard/favicon.ico")
    return Path(found).read_bytes() if found else None


@require_safe
async def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``: what a browser asks for on pages that name no icon (Django admin,
    the API's browsable pages, Swagger UI, a JSON error). The console's pages link the SVG;
    this is the same mark, rendered at 16, 32 and 48 px. Answered for anyone, logged in or
    not, so no page ends in a 404 for its icon."""
    icon = _favicon_bytes()
    if icon is None:  # a deployment that left the static files out
        raise Http404("no favicon")
    response = HttpResponse(icon, content_type="image/vnd.microsoft.icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("pki/", include("certyard.pki.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1_urlpatterns)),
    path("api/orchestrator/v1/", include(agent_api_urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script at ?script, not inline (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    # Last: its hundred-odd patterns share the empty prefix, so Django tries every one of
    # them before a pattern after it (a fifth of a small request's time, profiled).
    path("", include("certyard.console.urls")),
]


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Refused before any view ran (a body over the size limit, a bad Host header)."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("bad_request", "the request was refused before it was read"), status=400
        )
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("permission_denied", "you may not do this"), status=403)
    return defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    """API clients get JSON, people get the page."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "no such endpoint or object"), status=404)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("server_error", "the platform failed to handle this request"), status=500
        )
    return defaults.server_error(request)
