"""The Job model: every long-running unit of work has one; the UI reads it, never Celery."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class JobKind(models.TextChoices):
    """What a job does."""

    INGEST = "ingest", "Scene ingest"
    SEARCH = "search", "Visual search"
    REFINE = "refine", "SAM2 refinement"
    TRAIN = "train", "YOLO training"
    PREDICT = "predict", "YOLO prediction"
    EXPORT = "export", "Export"


class JobStatus(models.TextChoices):
    """A job's life cycle."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def finished(cls) -> set[str]:
        """Statuses a job does not leave."""
        return {cls.SUCCEEDED, cls.FAILED, cls.CANCELLED}


class Job(models.Model):
    """A unit of background work with progress 0..1, a message for people and an error when it fails."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="jobs")
    scene = models.ForeignKey("annotate.Scene", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at"]
        indexes = [models.Index(fields=["project", "status"]), models.Index(fields=["scene", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"
