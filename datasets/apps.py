"""Training sets in and out: dataset exports (YOLO, COCO, GeoJSON, GeoPackage) and label imports."""

from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    """The datasets app: stands above review, gpu_tasks and annotate (it runs jobs and reads reviewed objects)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "datasets"
    verbose_name = "Datasets (exports and imports)"
