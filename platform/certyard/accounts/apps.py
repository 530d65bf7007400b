from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """People's API tokens (django-rest-knox, stored as a hash); imports no other app."""

    name = "certyard.accounts"
    label = "accounts"
    verbose_name = "Accounts"
