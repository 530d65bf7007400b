"""Django model permissions, read included: a user sees only what they may view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import DjangoModelPermissions

if TYPE_CHECKING:  # rest_framework.views imports this module (DEFAULT_PERMISSION_CLASSES)
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ModelPermissions(DjangoModelPermissions):
    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


def require_permissions(request: Request, view: APIView, *perms: str) -> None:
    """Refuse (403) unless the user has every one of ``perms``: for an action whose
    permission is not the model's own (approve, import, ping…)."""
    if not all(request.user.has_perm(perm) for perm in perms):
        view.permission_denied(request, message="you may not do this")
