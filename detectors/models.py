"""A trained detector: the weights of one training job, what it was trained on and how it scored."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """One YOLO model of a project (v1, v2, ...): dataset, parameters, metrics, weights on disk; one may be current."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField(help_text="v1, v2, ... within the project")
    name = models.CharField(max_length=200, blank=True)
    job = models.ForeignKey("gpu_tasks.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    export_definition = models.ForeignKey(
        "datasets.ExportDefinition", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    dataset = models.JSONField(default=dict, help_text="the export parameters and counts it was trained on")
    classes = models.JSONField(default=list, help_text="[{index, class_id, name}]: the model's class outputs")
    params = models.JSONField(default=dict, help_text="base model, epochs, image size, batch, patience")
    metrics = models.JSONField(default=dict, help_text="validation of the best weights: mAP50, mAP50-95, P, R")
    history = models.JSONField(default=list, help_text="losses and validation metrics per epoch")
    gsd_m = models.FloatField(help_text="the ground resolution it was trained at (metres per pixel)")
    imgsz = models.PositiveIntegerField()
    weights = models.CharField(max_length=500, help_text="best.pt, relative to DATA_DIR")
    stopped_early = models.BooleanField(default=False, help_text="cancelled: the best weights of the epochs run")
    is_current = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="uniq_model_version_number"),
            models.UniqueConstraint(fields=["project"], condition=Q(is_current=True), name="one_current_model"),
        ]

    def __str__(self) -> str:
        return f"v{self.number}" + (f" {self.name}" if self.name else "")
