"""Review's reads, scoped by project membership (another project's objects are 404, like missing ones)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, FloatField, Q, QuerySet, Value
from django.db.models.functions import Abs, Coalesce
from django.shortcuts import get_object_or_404

from annotate import selectors as annotate_selectors
from annotate.models import Detection, DetectionStatus, Scene

from .models import ReviewEvent


class QueueOrder:
    """How the review queue is ordered."""

    SCORE = "score"  # highest score first
    UNCERTAINTY = "uncertainty"  # nearest the class threshold first
    CHOICES = (SCORE, UNCERTAINTY)


def detection_get(*, user: AbstractBaseUser, detection_id: int) -> Detection:
    """One detection the user may see, or 404."""
    return get_object_or_404(
        annotate_selectors.detection_list(user=user).select_related("scene__project", "reviewer"), pk=detection_id
    )


def event_list(*, user: AbstractBaseUser) -> QuerySet[ReviewEvent]:
    """Review events of the user's projects."""
    return ReviewEvent.objects.filter(project__memberships__user=user).select_related("actor")


def event_get(*, user: AbstractBaseUser, event_id: int) -> ReviewEvent:
    """One review event the user may see, or 404."""
    return get_object_or_404(event_list(user=user).select_related("project"), pk=event_id)


def events_since(
    *, user: AbstractBaseUser, since: int = 0, scene: Scene | None = None, actor_id: int | None = None,
    detection_id: int | None = None, limit: int = 500,
) -> list[ReviewEvent]:
    """Events after the cursor `since` (an event id), oldest first, at most `limit`."""
    events = event_list(user=user).filter(id__gt=since)
    if scene is not None:
        events = events.filter(scene=scene)
    if actor_id is not None:
        events = events.filter(actor_id=actor_id)
    if detection_id is not None:
        events = events.filter(detection_id=detection_id)
    return list(events.order_by("id")[:limit])


def review_queue(
    *, scene: Scene, order: str = QueueOrder.SCORE, after: Detection | None = None, backwards: bool = False,
    threshold: float = 0.5, limit: int = 1,
) -> list[Detection]:
    """Proposed detections of a scene after (or before) `after` in queue order; the head when `after` is None."""
    proposed = Detection.objects.filter(scene=scene, status=DetectionStatus.PROPOSED).select_related(
        "object_class", "reviewer"
    )
    if order == QueueOrder.UNCERTAINTY:
        # Smaller key first: distance of the score from the threshold.
        key = Abs(Coalesce(F("score"), Value(0.0)) - Value(threshold), output_field=FloatField())
        after_key = abs((after.score or 0.0) - threshold) if after is not None else None
    else:
        # Higher score first, so the key is the negated score.
        key = -Coalesce(F("score"), Value(0.0), output_field=FloatField())
        after_key = -(after.score or 0.0) if after is not None else None
    proposed = proposed.annotate(queue_key=key)
    if after is not None:
        if backwards:
            proposed = proposed.filter(Q(queue_key__lt=after_key) | Q(queue_key=after_key, id__lt=after.pk))
        else:
            proposed = proposed.filter(Q(queue_key__gt=after_key) | Q(queue_key=after_key, id__gt=after.pk))
    ordering = ["-queue_key", "-id"] if backwards else ["queue_key", "id"]
    return list(proposed.order_by(*ordering)[:limit])


def review_progress(*, scene: Scene, user: AbstractBaseUser) -> dict:
    """Counts of a scene's detections per status, per class and status, and the user's own decisions."""
    detections = Detection.objects.filter(scene=scene)
    by_status = {s: 0 for s in DetectionStatus.values}
    by_status.update(dict(detections.values_list("status").annotate(n=Count("id")).values_list("status", "n")))
    by_class: dict[int, dict] = {}
    for row in detections.values("object_class_id", "object_class__name", "status").annotate(n=Count("id")):
        entry = by_class.setdefault(
            row["object_class_id"],
            {"object_class": row["object_class_id"], "class_name": row["object_class__name"],
             **{s: 0 for s in DetectionStatus.values}},
        )
        entry[row["status"]] = row["n"]
    mine = ReviewEvent.objects.filter(scene=scene, actor=user)
    return {
        "scene": scene.pk,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_class": sorted(by_class.values(), key=lambda e: e["object_class"]),
        "mine": dict(mine.values_list("verb").annotate(n=Count("id")).values_list("verb", "n")),
    }
