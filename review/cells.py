"""Work cells' writes: split a scene into a grid of squares in metres, assign cells, mark them done or reopen
them, and the one check every review writer makes (no decision in a done cell; the first one starts a cell)."""

import json
import math

import shapely
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from shapely import prepared
from shapely.geometry import box as shapely_box
from shapely.geometry import shape as shapely_shape

from annotate import selectors as annotate_selectors
from annotate.errors import Conflict, DomainError
from annotate.geo import SceneFrame
from annotate.models import Membership, Role, Scene
from annotate.permissions import Action, require

from .cells_models import CellStatus, WorkCell

MAX_CELLS = 2500  # a grid the map and the progress query stay quick with (about 400 is typical)
REVIEWING_ROLES = (Role.REVIEWER, Role.MANAGER)


class CellDone(Conflict):
    """A decision on a detection in a cell that was marked done."""

    code = "cell_done"


def _metric_crs(scene: Scene, around: Polygon) -> CRS:
    """The scene's CRS when it is projected in metres, else a local equal-area projection centred on the area."""
    if scene.crs and scene.geotransform:
        crs = SceneFrame.of(scene).crs
        if crs.is_projected and abs((crs.linear_units_factor[1] or 0) - 1.0) < 1e-9:
            return crs
    c = around.centroid
    return CRS.from_proj4(f"+proj=laea +lat_0={c.y:.8f} +lon_0={c.x:.8f} +ellps=WGS84 +units=m +no_defs")


def _to_crs(crs: CRS, polygon: Polygon):
    """An EPSG:4326 GEOS polygon as a shapely polygon in `crs` (densified: its straight edges curve there)."""
    x0, y0, x1, y1 = polygon.extent
    dense = shapely.segmentize(shapely_shape(json.loads(polygon.geojson)), max(x1 - x0, y1 - y0) / 64 or 1e-6)
    rings = []
    for ring in [dense.exterior, *dense.interiors]:
        lons, lats = zip(*ring.coords, strict=True)
        xs, ys = warp_transform(CRS.from_epsg(4326), crs, list(lons), list(lats))
        rings.append(list(zip(xs, ys, strict=True)))
    return shapely_shape({"type": "Polygon", "coordinates": rings})


def row_label(row: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA (like spreadsheet columns)."""
    label = ""
    row += 1
    while row:
        row, rest = divmod(row - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def _size_that_fits(width: float, height: float) -> int:
    """The smallest whole number of metres whose grid over a width x height box has at most MAX_CELLS cells."""
    size = max(1, math.ceil(math.sqrt(width * height / MAX_CELLS)))
    while math.ceil(width / size) * math.ceil(height / size) > MAX_CELLS:
        size = math.ceil(size * 1.05)
    return size


def area_polygon(scene: Scene, area: dict | None) -> Polygon:
    """The polygon to split: the drawn area (checked: a valid polygon touching the scene) or the scene's footprint."""
    footprint = scene.footprint
    if footprint is None:
        raise DomainError("This scene has no footprint yet (its ingest has not finished); split it once it is ready.")
    if area is None:
        return footprint
    try:
        polygon = GEOSGeometry(area if isinstance(area, str) else json.dumps(area), srid=4326)
    except Exception as exc:  # noqa: BLE001 - GEOS raises several types for unreadable input
        raise DomainError("area must be a GeoJSON Polygon in longitude/latitude.") from exc
    if polygon.geom_type != "Polygon":
        raise DomainError(f"area must be a GeoJSON Polygon, not a {polygon.geom_type}.")
    if polygon.srid != 4326:
        polygon.srid = 4326
    if not polygon.valid:
        raise DomainError(f"area is not a valid polygon ({polygon.valid_reason}); draw it without crossing edges.")
    if not polygon.intersects(footprint):
        raise DomainError("area lies outside the scene; draw it over the image.")
    return polygon


def _grid(scene: Scene, area: Polygon, size_m: float) -> list[dict]:
    """The squares of side `size_m` (in a metric CRS) that touch `area`, with their EPSG:4326 outlines."""
    crs = _metric_crs(scene, area)
    shape = _to_crs(crs, area)
    minx, miny, maxx, maxy = shape.bounds
    # A footprint that is a whole number of cells comes back from lon/lat with rounding noise: no sliver column.
    cols = max(1, math.ceil((maxx - minx) / size_m - 1e-6))
    rows = max(1, math.ceil((maxy - miny) / size_m - 1e-6))
    if rows * cols > MAX_CELLS:
        raise DomainError(
            f"Cells of {size_m:g} m would make a grid of {rows} x {cols} = {rows * cols} cells, over the limit of "
            f"{MAX_CELLS}; choose {_size_that_fits(maxx - minx, maxy - miny)} m or more."
        )
    touching = prepared.prep(shape)
    # Corners are transformed once each, so neighbouring cells share exactly the same edge coordinates.
    xs = [minx + c * size_m for c in range(cols + 1)]
    ys = [maxy - r * size_m for r in range(rows + 1)]  # row A at the top
    gx = [x for _ in ys for x in xs]
    gy = [y for y in ys for _ in xs]
    lons, lats = warp_transform(crs, CRS.from_epsg(4326), gx, gy)

    def corner(r: int, c: int) -> tuple[float, float]:
        i = r * (cols + 1) + c
        return (lons[i], lats[i])

    cells = []
    for r in range(rows):
        for c in range(cols):
            if not touching.intersects(shapely_box(xs[c], ys[r + 1], xs[c + 1], ys[r])):
                continue
            ring = [corner(r, c), corner(r, c + 1), corner(r + 1, c + 1), corner(r + 1, c), corner(r, c)]
            cells.append({"row": r, "col": c, "label": f"{row_label(r)}{c + 1}", "geometry": Polygon(ring, srid=4326)})
    return cells


def cells_split(*, scene: Scene, actor: AbstractBaseUser, size_m: float, area: dict | None = None) -> list[WorkCell]:
    """Replace the scene's cells by a grid of `size_m`-metre squares over the scene (or the drawn `area`).

    Refused while any cell is assigned or done: those carry someone's work, so unassign or reopen them first.
    Decisions are kept on the detections, so new cells that already hold decided detections start in progress.
    """
    require(annotate_selectors.role_of(user=actor, project=scene.project), Action.MANAGE_CELLS)
    if not size_m or size_m <= 0 or not math.isfinite(size_m):
        raise DomainError("size_m must be a positive number of metres, like 250.")
    polygon = area_polygon(scene, area)
    cells = _grid(scene, polygon, float(size_m))
    with transaction.atomic():
        existing = WorkCell.objects.select_for_update().filter(scene=scene)
        kept = [c.label for c in existing if c.assignee_id is not None or c.status == CellStatus.DONE]
        if kept:
            raise Conflict(
                f"{len(kept)} cells of this scene are assigned or done ({', '.join(kept[:5])}"
                f"{', ...' if len(kept) > 5 else ''}); unassign or reopen them before splitting again.",
                detail={"cells": kept},
            )
        existing.delete()
        made = WorkCell.objects.bulk_create(
            [WorkCell(project_id=scene.project_id, scene=scene, size_m=size_m, **c) for c in cells]
        )
        with connection.cursor() as cursor:
            cursor.execute(_START_DECIDED_SQL, [scene.pk])
            cursor.execute("DELETE FROM review_cellgap WHERE scene_id = %s", [scene.pk])
            cursor.execute(_GAPS_SQL, {"scene": scene.pk})
    return made


_START_DECIDED_SQL = """
UPDATE review_workcell c SET status = 'in_progress', updated_at = now()
WHERE c.scene_id = %s AND c.status = 'open' AND EXISTS (
  SELECT 1 FROM annotate_detection d WHERE d.scene_id = c.scene_id AND d.status <> 'proposed'
    AND d.geometry && c.geometry AND ST_Covers(c.geometry, ST_Centroid(d.geometry)))
"""


# The scene's box less its cells, in small pieces (GiST-friendly): where the objects in no cell lie.
_GAPS_SQL = """
INSERT INTO review_cellgap (scene_id, geometry)
SELECT %(scene)s, g FROM (
  SELECT (ST_Dump(ST_Subdivide(ST_Difference(ST_Envelope(s.footprint),
           (SELECT ST_Union(c.geometry) FROM review_workcell c WHERE c.scene_id = %(scene)s)), 64))).geom AS g
  FROM annotate_scene s WHERE s.id = %(scene)s) pieces
WHERE GeometryType(g) = 'POLYGON' AND NOT ST_IsEmpty(g)
"""


def _require_reviewers(*, scene: Scene, user_ids: list[int]) -> None:
    """Every user must be a reviewer or manager of the scene's project."""
    ok = set(
        Membership.objects.filter(project_id=scene.project_id, user_id__in=user_ids, role__in=REVIEWING_ROLES)
        .values_list("user_id", flat=True)
    )
    missing = [u for u in user_ids if u not in ok]
    if missing:
        raise DomainError(
            f"Users {', '.join(map(str, missing))} are not reviewers or managers of this project; "
            "add them as reviewers first.",
            detail={"users": missing},
        )


def cell_assign(*, cell: WorkCell, actor: AbstractBaseUser, user_id: int | None) -> WorkCell:
    """Give a cell to a reviewer (or to nobody with None)."""
    require(annotate_selectors.role_of(user=actor, project=cell.scene.project), Action.MANAGE_CELLS)
    if user_id is not None:
        _require_reviewers(scene=cell.scene, user_ids=[user_id])
    cell.assignee_id = user_id
    cell.save(update_fields=["assignee", "updated_at"])
    return cell


def cells_assign_round_robin(*, scene: Scene, actor: AbstractBaseUser, user_ids: list[int]) -> list[WorkCell]:
    """Deal the scene's unassigned, not done cells to `user_ids` in turn, in reading order (A1, A2, ..., B1)."""
    require(annotate_selectors.role_of(user=actor, project=scene.project), Action.MANAGE_CELLS)
    if not user_ids:
        raise DomainError("Choose at least one reviewer to deal the cells to.")
    user_ids = list(dict.fromkeys(user_ids))
    _require_reviewers(scene=scene, user_ids=user_ids)
    with transaction.atomic():
        free = list(
            WorkCell.objects.select_for_update()
            .filter(scene=scene, assignee__isnull=True)
            .exclude(status=CellStatus.DONE)
            .order_by("row", "col")
        )
        for i, cell in enumerate(free):
            cell.assignee_id = user_ids[i % len(user_ids)]
        WorkCell.objects.bulk_update(free, ["assignee"])
        WorkCell.objects.filter(pk__in=[c.pk for c in free]).update(updated_at=timezone.now())
    return free


def cell_mark_done(*, cell: WorkCell, actor: AbstractBaseUser) -> WorkCell:
    """Mark a cell done (its assignee or a manager); its detections are read-only until a manager reopens it."""
    role = annotate_selectors.role_of(user=actor, project=cell.scene.project)
    if cell.assignee_id != actor.pk or role not in REVIEWING_ROLES:
        require(role, Action.MANAGE_CELLS)
    if cell.status == CellStatus.DONE:
        return cell
    cell.status, cell.done_by, cell.done_at = CellStatus.DONE, actor, timezone.now()
    cell.save(update_fields=["status", "done_by", "done_at", "updated_at"])
    return cell


def cell_reopen(*, cell: WorkCell, actor: AbstractBaseUser) -> WorkCell:
    """Make a done cell editable again (managers only); it goes back to in progress."""
    require(annotate_selectors.role_of(user=actor, project=cell.scene.project), Action.REOPEN_CELLS)
    if cell.status != CellStatus.DONE:
        raise Conflict(f"Cell {cell.label} is not done; there is nothing to reopen.")
    cell.status, cell.done_by, cell.done_at = CellStatus.IN_PROGRESS, None, None
    cell.save(update_fields=["status", "done_by", "done_at", "updated_at"])
    return cell


def cells_revision(scene: Scene | int) -> str:
    """A string that changes whenever any of the scene's cells changes (split, assigned, started, done, reopened)."""
    scene_id = scene if isinstance(scene, int) else scene.pk
    agg = WorkCell.objects.filter(scene_id=scene_id).aggregate(latest=Max("updated_at"), n=Max("id"))
    if agg["latest"] is None:
        return "none"
    return f"{agg['latest'].isoformat()}/{agg['n']}"


# The cells (of any scene) that cover the centroid of a detection id or of a geometry being written.
_CELLS_OF_SQL = """
WITH targets AS (
  SELECT d.geometry FROM annotate_detection d WHERE d.id = ANY(%(ids)s)
  UNION ALL SELECT ST_GeomFromEWKB(g) FROM unnest(%(geoms)s::bytea[]) AS g
)
SELECT DISTINCT c.id, c.label, c.status, u.username, c.done_at
FROM targets t JOIN review_workcell c ON c.geometry && t.geometry AND ST_Covers(c.geometry, ST_Centroid(t.geometry))
LEFT JOIN auth_user u ON u.id = c.done_by_id
WHERE c.scene_id = %(scene)s
"""


# For many detections (a bulk action) the cells drive instead: only open and done cells matter (an in-progress
# one needs no change), each probing the detections' GiST index for one of the targets. 20,000 ids over 400 cells:
# ~700-1,600 ms detection-driven, this bounded by the progress join and ~ms once most cells are in progress.
MANY_IDS = 200
_CELLS_OF_MANY_SQL = """
WITH targets AS MATERIALIZED (SELECT unnest(%(ids)s::bigint[]) AS id)
SELECT c.id, c.label, c.status, u.username, c.done_at
FROM review_workcell c LEFT JOIN auth_user u ON u.id = c.done_by_id
WHERE c.scene_id = %(scene)s AND c.status IN ('open', 'done') AND EXISTS (
  SELECT 1 FROM annotate_detection d
  WHERE d.geometry && c.geometry AND ST_Covers(c.geometry, ST_Centroid(d.geometry))
    AND d.scene_id = %(scene)s AND d.id IN (SELECT id FROM targets))
"""


def cells_guard_decision(*, scene_id: int, detection_ids=(), geometries=()) -> None:
    """Refuse a write touching a done cell (CellDone, 409); otherwise start the open cells it lands in.

    Every writer of review state calls this inside its transaction, with the detections it changes and any new
    geometry it writes (a reshape's or a drawn object's), so a refusal rolls the whole write back.
    """
    ids = [int(i) for i in detection_ids]
    geoms = [bytes(g.ewkb) for g in geometries if g is not None]
    if not ids and not geoms:
        return
    if not WorkCell.objects.filter(scene_id=scene_id).exists():
        return  # most scenes have no cells: one index probe and done
    with connection.cursor() as cursor:
        if len(ids) > MANY_IDS and not geoms:
            cursor.execute(_CELLS_OF_MANY_SQL, {"ids": ids, "scene": scene_id})
        else:
            cursor.execute(_CELLS_OF_SQL, {"ids": ids, "geoms": geoms, "scene": scene_id})
        hits = cursor.fetchall()
    for _id, label, status, done_by, done_at in hits:
        if status == CellStatus.DONE:
            when = timezone.localtime(done_at).strftime("%H:%M") if done_at else "an earlier time"
            # The message carries the cell, who and when; no detail, so pages show the sentence alone.
            who = done_by or "someone"
            raise CellDone(f"Cell {label} was marked done by {who} at {when}; ask a manager to reopen it.")
    opened = [h[0] for h in hits if h[2] == CellStatus.OPEN]
    if opened:
        WorkCell.objects.filter(pk__in=opened, status=CellStatus.OPEN).update(
            status=CellStatus.IN_PROGRESS, updated_at=timezone.now()
        )

