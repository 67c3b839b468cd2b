"""Review decisions: the append-only audit trail of every change to a detection."""

from django.conf import settings
from django.contrib.gis.db import models
from django.db.models import Q


class ReviewVerb(models.TextChoices):
    """What a review event did."""

    ACCEPT = "accept", "Accepted"
    REJECT = "reject", "Rejected"
    RELABEL = "relabel", "Changed class"
    RESHAPE = "reshape", "Changed shape"
    CREATE_MANUAL = "create_manual", "Drew a missed object"
    DELETE_MANUAL = "delete_manual", "Deleted a drawn object"
    UNDO = "undo", "Undid a decision"


class AppendOnlyError(Exception):
    """A review event may only be added, never changed or removed through the ORM."""


class ReviewEventQuerySet(models.QuerySet):
    """Refuses bulk updates and deletes (a scene's or project's deletion still cascades, below the queryset)."""

    def update(self, **kwargs):
        raise AppendOnlyError("Review events are append-only; record a new event (undo) instead.")

    def delete(self):
        raise AppendOnlyError("Review events are append-only; record a new event (undo) instead.")


class ReviewEvent(models.Model):
    """One change to a detection: who, when, what before and after. Append-only; undo is a new event."""

    # No database constraint: the trail outlives a deleted manual detection (and re-searched proposals).
    detection = models.ForeignKey(
        "annotate.Detection", on_delete=models.DO_NOTHING, db_constraint=False, related_name="review_events"
    )
    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="review_events")
    scene = models.ForeignKey("annotate.Scene", on_delete=models.CASCADE, related_name="review_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    verb = models.CharField(max_length=16, choices=ReviewVerb.choices)
    status_before = models.CharField(max_length=16, blank=True)
    status_after = models.CharField(max_length=16, blank=True)
    # Class ids, not foreign keys: a class deleted later must not rewrite or block the trail.
    class_before = models.BigIntegerField(null=True, blank=True)
    class_after = models.BigIntegerField(null=True, blank=True)
    geometry_before = models.PolygonField(srid=4326, null=True, blank=True)
    geometry_after = models.PolygonField(srid=4326, null=True, blank=True)
    comment = models.TextField(blank=True)
    client_id = models.CharField(max_length=64, blank=True, help_text="the client's request id; a retry is a no-op")
    batch_id = models.UUIDField(null=True, blank=True, help_text="shared by the events of one bulk action")
    version_after = models.PositiveIntegerField(help_text="the detection's version after this change")
    undoes = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="undone_by")

    objects = ReviewEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["scene", "id"]),
            models.Index(fields=["detection", "id"]),
            models.Index(fields=["actor", "id"]),
            models.Index(fields=["batch_id"]),
        ]
        constraints = [
            # Bulk events share one client id; the first event of a batch carries it, the rest leave it blank.
            models.UniqueConstraint(
                fields=["actor", "client_id"], condition=~Q(client_id=""), name="review_event_client_id_per_actor"
            )
        ]

    def __str__(self) -> str:
        return f"{self.verb} detection {self.detection_id} v{self.version_after}"

    def save(self, *args, **kwargs):
        if self.pk is not None or not self._state.adding:
            raise AppendOnlyError("Review events are append-only; record a new event (undo) instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Review events are append-only; record a new event (undo) instead.")


from .accuracy_models import AccuracyArea  # noqa: E402,F401 - the app's models, in their own modules
from .cells_models import CellGap, CellStatus, QueueLease, WorkCell  # noqa: E402,F401
