from django.apps import AppConfig


class FleetConfig(AppConfig):
    name = "certyard.fleet"
    label = "fleet"
