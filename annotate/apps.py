"""App config for the domain core."""

from django.apps import AppConfig


class AnnotateConfig(AppConfig):
    """Domain core app."""

    name = "annotate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Registers the OpenAPI schema extensions (drf-spectacular finds them by import).
        from . import schema  # noqa: F401
