"""A saved export: the choice of scenes, classes, statuses, sources, format and options, run again by anyone allowed."""

from django.conf import settings
from django.db import models


class ExportDefinition(models.Model):
    """What to export and how (validated by export_options); each run is a Job of kind export."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="export_definitions")
    name = models.CharField(max_length=200)
    format = models.CharField(max_length=32)
    params = models.JSONField(default=dict, help_text="the validated selection and options (export_options)")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="uniq_export_definition_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.format})"
