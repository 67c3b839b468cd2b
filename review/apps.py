"""App config for review."""

from django.apps import AppConfig


class ReviewConfig(AppConfig):
    """Review app (decisions, audit trail and exports arrive with the review issue)."""

    name = "review"
    default_auto_field = "django.db.models.BigAutoField"
