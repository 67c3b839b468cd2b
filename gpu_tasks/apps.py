"""App config for jobs."""

from django.apps import AppConfig


class GpuTasksConfig(AppConfig):
    """Jobs app."""

    name = "gpu_tasks"
    default_auto_field = "django.db.models.BigAutoField"
