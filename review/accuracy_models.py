"""Accuracy areas: reviewed ground a manager declares exhaustively labelled, the measure every proposer is judged by."""

from django.conf import settings
from django.contrib.gis.db import models


class AccuracyArea(models.Model):
    """Every object of `class_ids` (all classes when empty) inside it has been accepted or drawn."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="+")
    scene = models.ForeignKey("annotate.Scene", on_delete=models.CASCADE, related_name="accuracy_areas")
    geometry = models.PolygonField(srid=4326)
    class_ids = models.JSONField(default=list, blank=True, help_text="the classes it is complete for; [] = all")
    cell = models.ForeignKey("review.WorkCell", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             help_text="the work cell it was marked from, if any")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "scene"])]

    def __str__(self) -> str:
        return f"accuracy area {self.pk} of scene {self.scene_id}"
