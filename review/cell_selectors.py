"""Work cells' reads: a scene's cells with their progress, one cell, and the queue's tier filters for a reviewer."""

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import connection
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from annotate.models import DetectionStatus, Scene

from .cells_models import WorkCell


def cell_list(*, scene: Scene) -> QuerySet[WorkCell]:
    """A scene's cells in reading order, with their assignee and who marked them done."""
    return WorkCell.objects.filter(scene=scene).select_related("assignee", "done_by").order_by("row", "col")


def cell_get(*, user: AbstractBaseUser, cell_id: int) -> WorkCell:
    """A cell of one of the user's projects, or 404."""
    return get_object_or_404(
        WorkCell.objects.filter(project__memberships__user=user).select_related("scene__project", "assignee"),
        pk=cell_id,
    )


# One query for every cell of a scene: the cells drive, each probing the detections' GiST index with its box, and
# the centroid test picks those whose centre lies in it (a centroid lies in its geometry's box, so && loses none).
_PROGRESS_SQL = """
SELECT c.id, d.status, count(*)
FROM review_workcell c
JOIN annotate_detection d ON d.geometry && c.geometry AND ST_Covers(c.geometry, ST_Centroid(d.geometry))
WHERE c.scene_id = %(scene)s AND d.scene_id = %(scene)s
GROUP BY 1, 2
"""


PROGRESS_CACHE_S = 2  # the join costs ~100-300 ms at 50k detections / 400 cells; 20 pages asking share it


def cells_progress(*, scene: Scene, revision: str = "") -> dict[int, dict[str, int]]:
    """Per cell id: counts of the detections whose centroid lies in it, by status (all statuses present).

    Shared for PROGRESS_CACHE_S per scene and cells' revision: counts may lag decisions by that much (as live
    updates do), while a split, assignment or done cell (a new revision) is read at once.
    """
    key = f"cells-progress:{scene.pk}:{revision}"
    rows = cache.get(key) if revision else None
    if rows is None:
        with connection.cursor() as cursor:
            cursor.execute(_PROGRESS_SQL, {"scene": scene.pk})
            rows = cursor.fetchall()
        if revision:
            cache.set(key, rows, PROGRESS_CACHE_S)
    out: dict[int, dict[str, int]] = {}
    for cell_id, status, n in rows:
        out.setdefault(cell_id, {s: 0 for s in DetectionStatus.values})[status] = n
    return out


def cells_feature_collection(*, scene: Scene, revision: str = "") -> dict:
    """The scene's cells as GeoJSON with label, status, assignee, who finished them and their progress."""
    progress = cells_progress(scene=scene, revision=revision)
    empty = {s: 0 for s in DetectionStatus.values}
    features = []
    for cell in cell_list(scene=scene):
        counts = progress.get(cell.pk, empty)
        total = sum(counts.values())
        features.append({
            "type": "Feature",
            "id": cell.pk,
            "geometry": {"type": "Polygon", "coordinates": [list(map(list, r.coords)) for r in cell.geometry]},
            "properties": {
                "label": cell.label,
                "row": cell.row,
                "col": cell.col,
                "size_m": cell.size_m,
                "status": cell.status,
                "assignee": cell.assignee_id,
                "assignee_name": cell.assignee.get_username() if cell.assignee else None,
                "done_by_name": cell.done_by.get_username() if cell.done_by else None,
                "done_at": cell.done_at.isoformat() if cell.done_at else None,
                "counts": counts,
                "total": total,
                "decided": total - counts[DetectionStatus.PROPOSED],
            },
        })
    return {"type": "FeatureCollection", "features": features}


def scene_has_cells(scene: Scene) -> bool:
    """Whether the scene was split into cells."""
    return WorkCell.objects.filter(scene=scene).exists()


# The queue's tiers, as filters on annotate_detection rows (aliased as the queue's queries leave them: no alias).
# Own: the centroid lies in one of the user's cells that is not done. The cells drive (a handful per reviewer),
# probing the detections' GiST index, so the set costs what those cells hold, not the scene.
OWN_TIER_SQL = """
AND id IN (
  SELECT d.id FROM review_workcell c
  JOIN annotate_detection d ON d.geometry && c.geometry AND ST_Covers(c.geometry, ST_Centroid(d.geometry))
  WHERE c.scene_id = %(scene)s AND c.assignee_id = %(user)s AND c.status <> 'done'
    AND d.scene_id = %(scene)s AND d.status = 'proposed')
"""
# Free: in an unassigned cell that is not done, or in no cell at all (the gaps the split stored).
FREE_TIER_SQL = """
AND id IN (
  SELECT d.id FROM review_workcell c
  JOIN annotate_detection d ON d.geometry && c.geometry AND ST_Covers(c.geometry, ST_Centroid(d.geometry))
  WHERE c.scene_id = %(scene)s AND c.assignee_id IS NULL AND c.status <> 'done'
    AND d.scene_id = %(scene)s AND d.status = 'proposed'
  UNION
  SELECT d.id FROM review_cellgap g
  JOIN annotate_detection d ON d.geometry && g.geometry AND ST_Covers(g.geometry, ST_Centroid(d.geometry))
  WHERE g.scene_id = %(scene)s AND d.scene_id = %(scene)s AND d.status = 'proposed')
"""
# The same tiers as a test on each row, for the walk along the queue's index: cheaper than collecting the tier
# when the tier is a large share of the scene (the walk finds its page within a few rows), dearer when it is
# small (the walk passes many rows of other tiers), so queue_tier_sql chooses by the share of cells.
_CELL_OF_ROW = """SELECT 1 FROM review_workcell c WHERE c.scene_id = %(scene)s
    AND c.geometry && annotate_detection.geometry AND ST_Covers(c.geometry, ST_Centroid(annotate_detection.geometry))"""
# A scalar subquery, not EXISTS: the planner would turn EXISTS into a join over every proposed row and sort.
OWN_TIER_WALK_SQL = f"AND ({_CELL_OF_ROW} AND c.assignee_id = %(user)s AND c.status <> 'done' LIMIT 1) = 1"
FREE_TIER_WALK_SQL = f"AND NOT EXISTS ({_CELL_OF_ROW} AND (c.assignee_id IS NOT NULL OR c.status = 'done'))"
WALK_SHARE = 0.125


def queue_tier_sql(*, scene: Scene, user: AbstractBaseUser) -> list[str]:
    """The own and free tiers' filters for this scene now, each in its cheaper form."""
    cells = list(WorkCell.objects.filter(scene=scene).values_list("assignee_id", "status"))
    own = sum(1 for a, s in cells if a == user.pk and s != "done")
    free = sum(1 for a, s in cells if a is None and s != "done")
    return [
        OWN_TIER_WALK_SQL if own >= WALK_SHARE * len(cells) else OWN_TIER_SQL,
        FREE_TIER_WALK_SQL if free >= WALK_SHARE * len(cells) else FREE_TIER_SQL,
    ]


# Not served while someone else holds an unexpired lease on it.
NOT_LEASED_SQL = """
AND NOT EXISTS (SELECT 1 FROM review_queuelease l
                WHERE l.detection_id = annotate_detection.id AND l.user_id <> %(user)s AND l.expires_at > now())
"""

_TIER_OF_SQL = """
SELECT c.assignee_id, c.status FROM annotate_detection d
JOIN review_workcell c ON c.scene_id = d.scene_id AND c.geometry && d.geometry
  AND ST_Covers(c.geometry, ST_Centroid(d.geometry))
WHERE d.id = %s
"""


def queue_tier_of(*, detection_id: int, user: AbstractBaseUser) -> int | None:
    """0 when the detection lies in the user's open cell, 1 when free (unassigned cell or none), None if blocked."""
    with connection.cursor() as cursor:
        cursor.execute(_TIER_OF_SQL, [detection_id])
        rows = cursor.fetchall()
    if any(a == user.pk and s != "done" for a, s in rows):
        return 0
    if not rows or all(a is None and s != "done" for a, s in rows):
        return 1
    return None


def my_cells(*, scene: Scene, user: AbstractBaseUser) -> list[WorkCell]:
    """The user's cells of a scene."""
    return list(cell_list(scene=scene).filter(assignee=user))
