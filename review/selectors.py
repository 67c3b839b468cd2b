"""Review's reads, scoped by project membership (another project's objects are 404, like missing ones)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from annotate import selectors as annotate_selectors
from annotate.models import Detection, DetectionStatus, ObjectClass, Scene

from .models import ReviewEvent


class QueueOrder:
    """How the review queue is ordered."""

    SCORE = "score"  # highest score first
    UNCERTAINTY = "uncertainty"  # nearest the class threshold first
    SPATIAL = "spatial"  # along a Z-order curve over the centroids: each next object is near the last
    CHOICES = (SCORE, UNCERTAINTY, SPATIAL)


# Ascending queue keys in SQL, written exactly as the partial indexes det_queue_score and det_queue_spatial
# (annotate.models) are built, so next/previous is one index probe: a row comparison (key, id) > (k, i).
_KEY_SQL = {QueueOrder.SCORE: "(COALESCE(score, 0.0) * -1)", QueueOrder.SPATIAL: "spatial_key"}
_KEYSET_SQL = """
SELECT id FROM annotate_detection
WHERE scene_id = %(scene)s AND status = 'proposed' {after} {extra}
ORDER BY {key} {direction}, id {direction} LIMIT %(limit)s {lock}
"""


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
    threshold: float = 0.5, limit: int = 1, extra: tuple[str, dict] = ("", {}),
) -> list[Detection]:
    """Proposed detections of a scene after (or before) `after` in queue order; the head when `after` is None.

    `after` need not be proposed any more (the one just decided): the queue goes on from its key. `extra` is more
    SQL conditions on the rows and their parameters (review.queue_leases: work cell tiers and others' leases).
    """
    ids = review_queue_ids(
        scene=scene, order=order, after=after, backwards=backwards, threshold=threshold, limit=limit, extra=extra
    )
    found = Detection.objects.select_related("object_class", "reviewer").in_bulk(ids)
    return [found[i] for i in ids if i in found]


def review_queue_ids(
    *, scene: Scene, order: str, after: Detection | None, backwards: bool, threshold: float, limit: int,
    extra: tuple[str, dict] = ("", {}), lock: bool = False,
) -> list[int]:
    """The ids review_queue serves, in order; with `lock`, rows locked by others are skipped and the rest locked."""
    lock_sql = "FOR NO KEY UPDATE SKIP LOCKED" if lock else ""
    if order == QueueOrder.UNCERTAINTY:
        return _uncertainty_ids(
            scene=scene, after=after, backwards=backwards, threshold=threshold, limit=limit, extra=extra,
            lock=lock_sql,
        )
    return _keyset_ids(
        scene=scene, order=order, after=after, backwards=backwards, limit=limit, extra=extra, lock=lock_sql
    )


def _queue_key(detection: Detection, order: str):
    """A detection's key in an indexed order (the SQL of _KEY_SQL, computed here)."""
    if order == QueueOrder.SPATIAL:
        return detection.spatial_key
    return (detection.score or 0.0) * -1


def _keyset_ids(
    *, scene: Scene, order: str, after: Detection | None, backwards: bool, limit: int, extra: tuple[str, dict],
    lock: str = "",
) -> list[int]:
    """Ids of the next `limit` proposed detections in an indexed order, by a row comparison on (key, id)."""
    key = _KEY_SQL[order]
    params = {**extra[1], "scene": scene.pk, "limit": limit}
    after_sql = ""
    if after is not None:
        after_sql = f"AND ({key}, id) {'<' if backwards else '>'} (%(after_key)s, %(after_id)s)"
        params |= {"after_key": _queue_key(after, order), "after_id": after.pk}
    sql = _KEYSET_SQL.format(
        after=after_sql, key=key, direction="DESC" if backwards else "ASC", extra=extra[0], lock=lock
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


# Uncertainty (|score - threshold|) cannot be indexed, since the threshold is the caller's. But the rows whose
# key lies in a window [lo, hi] are two score ranges, which det_queue_score finds by index; the window widens
# until it holds `limit` rows (or everything), and the exact (key, id) order and after-filter run on it alone.
_UNCERTAINTY_SQL = """
SELECT id, abs(COALESCE(score, 0.0) - %(t)s) AS key FROM annotate_detection
WHERE scene_id = %(scene)s AND status = 'proposed'
  AND ((COALESCE(score, 0.0) * -1) BETWEEN %(up_lo)s AND %(up_hi)s
       OR (COALESCE(score, 0.0) * -1) BETWEEN %(down_lo)s AND %(down_hi)s) {after} {extra}
ORDER BY key {direction}, id {direction} LIMIT %(limit)s {lock}
"""
_WINDOWS = (0.002, 0.02, 0.2, 2.0)  # the last holds every score in [0, 1]
_SLACK = 1e-9  # score ranges a little wider than the window, against rounding in score - threshold


def _uncertainty_ids(
    *, scene: Scene, after: Detection | None, backwards: bool, threshold: float, limit: int, extra: tuple[str, dict],
    lock: str = "",
) -> list[int]:
    """Ids of the next `limit` proposed detections nearest the threshold first (key: |score - threshold|, id)."""
    t = threshold
    k0 = abs((after.score or 0.0) - t) if after is not None else 0.0
    params = {**extra[1], "scene": scene.pk, "t": t, "limit": limit}
    after_sql = ""
    if after is not None:
        after_sql = f"AND (abs(COALESCE(score, 0.0) - %(t)s), id) {'<' if backwards else '>'} (%(k0)s, %(i0)s)"
        params |= {"k0": k0, "i0": after.pk}
    sql = _UNCERTAINTY_SQL.format(
        after=after_sql, direction="DESC" if backwards else "ASC", extra=extra[0], lock=lock
    )
    for width in _WINDOWS:
        lo, hi = (max(0.0, k0 - width), k0) if backwards else (k0, k0 + width)
        # score in [t + lo, t + hi] or [t - hi, t - lo], written on the index's key (-score).
        params |= {"up_lo": -(t + hi + _SLACK), "up_hi": -(t + lo - _SLACK),
                   "down_lo": -(t - lo + _SLACK), "down_hi": -(t - hi - _SLACK)}
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        # Rows outside the window have keys beyond it, so a full page whose last key is inside it is exact.
        complete = width == _WINDOWS[-1] or (backwards and lo == 0.0)
        if complete or (len(rows) == limit and (rows[-1][1] >= lo if backwards else rows[-1][1] <= hi)):
            return [row[0] for row in rows]
    raise AssertionError("unreachable: the last window holds every score")


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


SCORE_BINS = 20
# Bin i holds scores in [i/20, (i+1)/20) (the last also 1.0); edges are the decimals a slider sends, so a count
# summed from an edge up equals what bulk-review's `score_min` (score >= edge) selects. No score counts as 0.
_BIN_EDGES_SQL = "ARRAY[" + ", ".join(f"{i / SCORE_BINS}" for i in range(1, SCORE_BINS)) + "]::float8[]"
_HISTOGRAM_SQL = f"""
SELECT object_class_id, status, width_bucket(COALESCE(score, 0.0), {_BIN_EDGES_SQL}) AS bin, count(*)
FROM annotate_detection WHERE scene_id = %s GROUP BY 1, 2, 3
"""  # noqa: S608 - only module constants are formatted in


def score_histogram(*, scene: Scene) -> dict:
    """Per class of the scene's project: proposed counts in 20 score bins, and accepted and rejected totals."""
    classes = {
        c.pk: {"object_class": c.pk, "class_name": c.name, "proposed": [0] * SCORE_BINS,
               "accepted": 0, "rejected": 0}
        for c in ObjectClass.objects.filter(project_id=scene.project_id).order_by("position", "index")
    }
    with connection.cursor() as cursor:
        cursor.execute(_HISTOGRAM_SQL, [scene.pk])
        rows = cursor.fetchall()
    for class_id, status, score_bin, n in rows:
        entry = classes.get(class_id)
        if entry is None:  # a class of another project cannot be on this scene; skip rather than fail
            continue
        if status == DetectionStatus.PROPOSED:
            entry["proposed"][score_bin] += n
        else:
            entry[status] += n
    return {"bins": SCORE_BINS, "classes": list(classes.values())}
