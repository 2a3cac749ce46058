"""Django integration: a `django.tasks` backend and `manage.py conveyor` commands.

    INSTALLED_APPS = [..., "conveyor.contrib.django"]
    TASKS = {"default": {"BACKEND": "conveyor.contrib.django.ConveyorBackend"}}

Works with Django 6's `django.tasks` and with the `django-tasks` backport.
See docs/django.md.
"""

from conveyor.contrib.django.backend import RUNNER, ConveyorBackend, conveyor_priority

__all__ = ["RUNNER", "ConveyorBackend", "conveyor_priority"]
