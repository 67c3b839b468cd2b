"""The Job model: every long-running unit of work has one; the UI reads it, never Celery."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField


class JobKind(models.TextChoices):
    """What a job does."""

    INGEST = "ingest", "Scene ingest"
    EMBED = "embed", "Scene embedding"
    SEARCH = "search", "Visual search"
    REFINE = "refine", "SAM2 refinement"
    REQUERY = "requery", "Update proposals"
    TRAIN = "train", "YOLO training"
    PREDICT = "predict", "YOLO proposals"
    PROBE = "probe", "Probe proposals"
    EXPORT = "export", "Dataset export"
    IMPORT = "import", "Label import"


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
    # Written with every progress report; a running job whose heartbeat is old lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="how many times a worker started it")
    # Who runs it: with the heartbeat, how a dead worker is told from a slow one (a pid is checked on its own host).
    worker_host = models.CharField(max_length=255, blank=True)
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    auto_retries = models.PositiveSmallIntegerField(
        default=0, help_text="how many times it was re-queued by itself after its worker died"
    )

    class Meta:
        ordering = ["-queued_at"]
        indexes = [models.Index(fields=["project", "status"]), models.Index(fields=["scene", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"


class PatchGrid(models.Model):
    """A scene's patch-token grid (float16 on disk), keyed by scene, model, band mapping, stretch and scale."""

    scene = models.ForeignKey("annotate.Scene", on_delete=models.CASCADE, related_name="patch_grids")
    key = models.CharField(max_length=64, help_text="digest of model, preprocessing, scale and tiling")
    space_key = models.CharField(max_length=64, help_text="vectors with the same space key are comparable")
    model_id = models.CharField(max_length=255)
    path = models.CharField(max_length=500, help_text="the grid directory, under DATA_DIR")
    grid_h = models.PositiveIntegerField()
    grid_w = models.PositiveIntegerField()
    dim = models.PositiveIntegerField()
    cell_px = models.FloatField(help_text="native pixels per grid cell")
    scale = models.FloatField()
    embedder = models.JSONField(help_text="model id, revision, architecture, patch size, normalisation")
    preprocessing = models.JSONField(help_text="RGB bands and per-band stretch the tiles were read with")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scene", "key"], name="uniq_patch_grid")]

    def __str__(self) -> str:
        return f"grid {self.grid_h}x{self.grid_w}x{self.dim} of scene {self.scene_id} ({self.model_id})"


# Dimensions of the backbones people use (DINOv2/v3 S, B, L, g). pgvector indexes need a fixed
# dimension, so each gets a partial HNSW index on `(vector::vector(N)) vector_cosine_ops WHERE dim = N`,
# created by raw SQL in migration 0002 (Django wraps an OpClass expression in parentheses PostgreSQL
# refuses). Queries must use the same cast to use them: see gpu_tasks.object_index.
INDEXED_DIMS = (384, 768, 1024, 1536)


class ObjectEmbedding(models.Model):
    """The embedding of one example polygon or detection in one vector space (for prototypes and "find similar")."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="+")
    scene = models.ForeignKey("annotate.Scene", on_delete=models.CASCADE, related_name="+")
    annotation = models.ForeignKey(
        "annotate.Annotation", null=True, blank=True, on_delete=models.CASCADE, related_name="embeddings"
    )
    detection = models.ForeignKey(
        "annotate.Detection", null=True, blank=True, on_delete=models.CASCADE, related_name="embeddings"
    )
    space_key = models.CharField(max_length=64)
    dim = models.PositiveIntegerField()
    vector = VectorField()
    # The geometry the vector was pooled from, so a reshaped object is re-embedded.
    geometry_digest = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(annotation__isnull=True) ^ Q(detection__isnull=True), name="objemb_one_owner"
            ),
            models.UniqueConstraint(fields=["annotation", "space_key"], name="uniq_objemb_annotation"),
            models.UniqueConstraint(fields=["detection", "space_key"], name="uniq_objemb_detection"),
        ]
        indexes = [models.Index(fields=["project", "space_key"])]

    def __str__(self) -> str:
        owner = f"annotation {self.annotation_id}" if self.annotation_id else f"detection {self.detection_id}"
        return f"{owner} in {self.space_key}"
