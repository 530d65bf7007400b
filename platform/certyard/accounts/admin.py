"""Django admin for people's API tokens: what each is for and when it was used, never the
digest nor the value. Tokens are made in the console, where the value is shown once."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from certyard.accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "token_key", "created", "expiry", "last_used_at"]
    list_filter = ["created", "expiry"]
    search_fields = ["name", "token_key", "user__username"]
    list_select_related = ["user"]
    # ``digest`` is in no list: not shown, not searchable, not editable.
    fields = ["name", "user", "token_key", "created", "expiry", "last_used_at"]
    readonly_fields = ["user", "token_key", "created", "expiry", "last_used_at"]
    ordering = ["-created"]

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("digest")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token made here could not be shown once; see the console
