from django.apps import AppConfig


class DetectorsConfig(AppConfig):
    """The detector loop: YOLO training on reviewed labels, YOLO and probe proposals, model versions."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "detectors"
