from __future__ import annotations

from django.apps import AppConfig


class ConveyorConfig(AppConfig):
    """Adds `manage.py conveyor worker|status|migrate`; add it to INSTALLED_APPS."""

    name = "conveyor.contrib.django"
    label = "conveyor"
    verbose_name = "conveyor"
