from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "certyard.console"
    label = "console"
