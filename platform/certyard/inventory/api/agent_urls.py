"""The inventory part of the agent API, included in /api/orchestrator/v1/ by ``certyard.urls``."""

from django.urls import path

from certyard.inventory.api import agent_views

urlpatterns = [
    path("store-types", agent_views.StoreTypesView.as_view(), name="store-types"),
]
