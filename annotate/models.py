"""Domain models: Project, Membership, ObjectClass, Scene, Annotation, Detection."""

from django.conf import settings
from django.contrib.gis.db import models
from django.contrib.gis.db.models.functions import Centroid, GeoHash, Transform
from django.contrib.postgres.indexes import GistIndex
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce


class Role(models.TextChoices):
    """A member's role in a project; what each may do is in annotate.permissions."""

    MANAGER = "manager", "Manager"
    REVIEWER = "reviewer", "Reviewer"
    ANNOTATOR = "annotator", "Annotator"
    VIEWER = "viewer", "Viewer"


class Project(models.Model):
    """A team's workspace: its members, classes and scenes."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    last_class = models.ForeignKey(
        "ObjectClass", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the class this member last drew with, preselected on their next visit",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class ObjectClass(models.Model):
    """A class of object in a project; `index` is the stable id used by exports (YOLO, COCO), `position` its place
    in lists (a manager reorders classes without changing what an exported label means)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="classes")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#ff0000", help_text="#rrggbb")
    index = models.PositiveIntegerField()
    position = models.PositiveIntegerField(default=0, help_text="place in the project's class lists, 0 first")

    class Meta:
        ordering = ["project", "position", "index"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="uniq_class_name"),
            models.UniqueConstraint(fields=["project", "index"], name="uniq_class_index"),
        ]

    def __str__(self) -> str:
        return self.name


class SceneStatus(models.TextChoices):
    """Where a scene is in its ingest."""

    UPLOADED = "uploaded", "Uploaded"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Scene(models.Model):
    """An uploaded raster, stored as a COG; its footprint and metadata are filled in by ingest."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scenes")
    name = models.CharField(max_length=255)
    original_name = models.CharField(max_length=255, blank=True)
    upload_path = models.CharField(max_length=500, blank=True, help_text="the uploaded file, under DATA_DIR")
    cog_path = models.CharField(max_length=500, blank=True, help_text="the COG, under DATA_DIR")
    # A Polygon, or a MultiPolygon split at 180 degrees for a scene across the antimeridian (RFC 7946), so
    # that it is never read as a band 359 degrees wide.
    footprint = models.GeometryField(
        srid=4326, null=True, blank=True, help_text="Polygon; MultiPolygon split at the antimeridian"
    )
    crs = models.TextField(blank=True, help_text="the scene's CRS as EPSG:n or WKT")
    geotransform = models.JSONField(null=True, blank=True, help_text="GDAL order: x0, dx, rx, y0, ry, dy")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    band_count = models.PositiveSmallIntegerField(null=True, blank=True)
    dtype = models.CharField(max_length=16, blank=True)
    gsd_m = models.FloatField(null=True, blank=True, help_text="ground resolution, metres per pixel")
    rgb_bands = models.JSONField(null=True, blank=True, help_text="three 1-based band indexes of the COG")
    stretch = models.JSONField(null=True, blank=True, help_text="per COG band [low, high] display range in use")
    stretch_auto = models.JSONField(
        null=True, blank=True, help_text="per COG band [low, high] measured at ingest (a manager's stretch replaces it)"
    )
    nodata = models.FloatField(
        null=True, blank=True, help_text="a fill value shown as no data, set by a manager (undeclared in the file)"
    )
    warnings = models.JSONField(
        default=list, blank=True, help_text="[{code, message}] about how the scene displays, with what to do"
    )
    min_zoom = models.PositiveSmallIntegerField(null=True, blank=True)
    max_zoom = models.PositiveSmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=SceneStatus.choices, default=SceneStatus.UPLOADED)
    error = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "status"])]

    def __str__(self) -> str:
        return self.name


class Annotation(models.Model):
    """An example polygon drawn by a person; examples drive the visual search."""

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="annotations")
    object_class = models.ForeignKey(ObjectClass, on_delete=models.PROTECT, related_name="annotations")
    geometry = models.PolygonField(srid=4326)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class DetectionSource(models.TextChoices):
    """What produced a detection."""

    SEARCH = "search", "Visual search"
    REFINE = "refine", "SAM2 refinement"
    YOLO = "yolo", "YOLO detector"
    PROBE = "probe", "Probe on the embeddings"
    MANUAL = "manual", "Drawn by a reviewer"
    IMPORT = "import", "Imported labels"


class Proposer(models.TextChoices):
    """Which proposer a detection came from; kept when refinement changes its source to `refine`."""

    SEARCH = "search", "Prototype search"
    PROBE = "probe", "Probe"
    YOLO = "yolo", "YOLO model"


class DetectionStatus(models.TextChoices):
    """A detection's review state."""

    PROPOSED = "proposed", "Proposed"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


# The score queue's ascending key (best score first; no score counts as 0). review.selectors writes the same
# expression in SQL so the planner matches it to the det_queue_score index.
QUEUE_SCORE_KEY = Coalesce(F("score"), Value(0.0)) * -1


class Detection(models.Model):
    """A candidate object; reviewers accept, reject or change it. `version` guards concurrent edits."""

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="detections")
    object_class = models.ForeignKey(ObjectClass, on_delete=models.PROTECT, related_name="detections")
    geometry = models.PolygonField(srid=4326)
    bbox = models.PolygonField(srid=4326, help_text="axis-aligned box of the geometry in EPSG:4326")
    # Refinement prompts SAM2 with this box, never with the last outline, so refining twice gives the same
    # polygon instead of growing it by the context margin each time.
    prompt_box = models.PolygonField(
        srid=4326, null=True, blank=True, help_text="the box SAM2 is prompted with (the proposer's original box)"
    )
    score = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    source = models.CharField(max_length=16, choices=DetectionSource.choices)
    status = models.CharField(max_length=16, choices=DetectionStatus.choices, default=DetectionStatus.PROPOSED)
    version = models.PositiveIntegerField(default=1)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey(
        "gpu_tasks.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="detections"
    )
    model_key = models.CharField(max_length=64, blank=True, help_text="vector space of the search that found it")
    # The proposer and, for a YOLO proposal, the model version: what each proposer's accuracy is measured on and
    # what its next run replaces. Blank for objects a person drew or imported.
    proposer = models.CharField(max_length=16, choices=Proposer.choices, blank=True)
    model_version = models.ForeignKey(
        "detectors.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="detections"
    )
    # What each stage said about it (a YOLO box's own class and confidence, the embedding verification's class
    # scores, a probe's kind), so a reviewer and the accuracy page can tell them apart.
    proposer_scores = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Z-order key of the centroid (a geohash interleaves longitude and latitude bits): the spatial review queue
    # walks it so each next object is near the last. Computed by the database, so every writer keeps it true.
    spatial_key = models.GeneratedField(
        expression=GeoHash(Centroid("geometry"), precision=12),
        output_field=models.CharField(max_length=12),
        db_persist=True,
    )
    # The outline in web-map metres, kept by the database: vector tiles are cut in EPSG:3857, and reprojecting
    # every polygon of a far-out tile per request was ~40% of its time (233 -> 143 ms per 12k-polygon tile).
    geometry_3857 = models.GeneratedField(
        expression=Transform("geometry", 3857),
        output_field=models.PolygonField(srid=3857, spatial_index=False),
        db_persist=True,
    )

    class Meta:
        ordering = ["-score", "id"]
        indexes = [
            models.Index(fields=["scene", "status"]),
            models.Index(fields=["scene", "object_class"]),
            # The review queue's keyset scans (review.selectors.review_queue): proposed rows only, in queue order,
            # so next/previous is one index probe wherever the reviewer is in a 50k-detection queue.
            models.Index(
                F("scene"), QUEUE_SCORE_KEY, F("id"), name="det_queue_score", condition=Q(status="proposed")
            ),
            models.Index(
                F("scene"), F("spatial_key"), F("id"), name="det_queue_spatial", condition=Q(status="proposed")
            ),
            GistIndex(fields=["geometry_3857"], name="det_geometry_3857"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=0) & Q(score__lte=1)), name="detection_score_0_1"
            )
        ]
