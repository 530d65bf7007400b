from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "certyard.inventory"
    label = "inventory"
