"""Work cells (a scene split into squares that reviewers are assigned) and queue leases (who is being served what)."""

from django.conf import settings
from django.contrib.gis.db import models


class CellStatus(models.TextChoices):
    """Where a cell's review stands."""

    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"


class WorkCell(models.Model):
    """One square of a scene's review grid; a detection belongs to the cell that covers its centroid."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="+")
    scene = models.ForeignKey("annotate.Scene", on_delete=models.CASCADE, related_name="work_cells")
    geometry = models.PolygonField(srid=4326)  # GiST-indexed (GeoDjango's default): the centroid lookups
    label = models.CharField(max_length=16, help_text='row letter(s) and column number, like "C3"')
    row = models.PositiveIntegerField()
    col = models.PositiveIntegerField()
    size_m = models.FloatField(help_text="side of the square in metres")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=CellStatus.choices, default=CellStatus.OPEN)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Live updates read max(updated_at) per scene as the cells' revision (review.cells.cells_revision).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["row", "col"]
        indexes = [models.Index(fields=["scene", "assignee"]), models.Index(fields=["scene", "updated_at"])]
        constraints = [models.UniqueConstraint(fields=["scene", "row", "col"], name="work_cell_scene_row_col")]

    def __str__(self) -> str:
        return f"cell {self.label} of scene {self.scene_id}"


class CellGap(models.Model):
    """A piece of a split scene's box that no cell covers (its objects are free for anyone), kept from the split so
    the queue need not union the cells on every request."""

    scene = models.ForeignKey("annotate.Scene", on_delete=models.CASCADE, related_name="+")
    geometry = models.PolygonField(srid=4326)

    def __str__(self) -> str:
        return f"gap of scene {self.scene_id}"


class QueueLease(models.Model):
    """A detection served to a reviewer by the queue, held for them until `expires_at` or their decision."""

    detection = models.OneToOneField(
        "annotate.Detection", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"])]

    def __str__(self) -> str:
        return f"detection {self.detection_id} leased to {self.user_id} until {self.expires_at:%H:%M:%S}"
