"""Detections as Mapbox vector tiles, cut by PostGIS (ST_AsMVT) so a map never loads a scene's whole GeoJSON."""

from collections.abc import Sequence

from django.db import connection

from .models import DetectionStatus

LAYER = "detections"
EXTENT = 4096  # tile units per side, the MVT default
BUFFER = 64  # tile units kept beyond each edge, so outlines crossing a tile edge join without seams
MAX_ZOOM = 24  # ~2 cm per tile unit at the equator: far beyond any scene's pixels
DOT_UNITS = 16  # objects narrower than this many tile units (2 px of a 512 px tile) come as small squares
DOT_SIDE = 4  # tile units: half a pixel of a 512 px tile, enough to survive ST_AsMVTGeom's snapping
WORLD_M = 2 * 20037508.342789244  # the width of the WebMercatorQuad world in EPSG:3857 metres
CONTENT_TYPE = "application/vnd.mapbox-vector-tile"

# `fid` becomes the feature id (ST_AsMVT takes that column out of the properties, so `id` stays among them).
# ST_AsMVT skips rows whose clipped geometry is NULL (and answers b"" when all are): no `WHERE geom IS NOT NULL`,
# which the planner pushes down and so clips every feature twice.
# The tile envelope widened by the buffer (margin is a fraction of the tile): `geometry_3857 && envelope` is the
# probe of the GiST index on the stored EPSG:3857 outline (no per-request reprojection), ST_AsMVTGeom clips the
# rest. An object smaller than DOT_UNITS tile units comes as a small square of DOT_SIDE units around a point on
# it: ST_AsMVTGeom would drop a polygon that collapses below one unit (objects vanished when zoomed out). Not as a
# point: OpenLayers draws points as vectors on every frame, polygons into the tile's image (10k objects in view:
# points made a pan 2-7x slower).
_SQL = f"""
WITH tile AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {BUFFER / EXTENT}) AS probe
),
features AS (
    SELECT d.id AS fid, d.id, d.object_class_id AS object_class, d.status, d.score, d.source, d.version,
           d.source = 'manual' AS manual,
           ST_AsMVTGeom(
               CASE WHEN greatest(ST_XMax(d.geometry_3857) - ST_XMin(d.geometry_3857),
                                  ST_YMax(d.geometry_3857) - ST_YMin(d.geometry_3857)) < %(dot_below)s
                    THEN ST_Expand(ST_PointOnSurface(d.geometry_3857), %(dot_half)s) ELSE d.geometry_3857 END,
               tile.env, {EXTENT}, {BUFFER}, true) AS geom
    FROM annotate_detection d, tile
    WHERE d.scene_id = %(scene_id)s
      AND d.geometry_3857 && tile.probe
      AND (%(statuses)s::text[] IS NULL OR d.status = ANY(%(statuses)s::text[]))
      AND (%(class_ids)s::bigint[] IS NULL OR d.object_class_id = ANY(%(class_ids)s::bigint[]))
      AND (%(score_min)s::float8 IS NULL OR d.score >= %(score_min)s::float8)
)
SELECT ST_AsMVT(features.*, '{LAYER}', {EXTENT}, 'geom', 'fid') FROM features
"""  # noqa: S608 - only module constants are formatted in; values are bound parameters


def tile_in_range(z: int, x: int, y: int) -> bool:
    """Whether z/x/y names a WebMercatorQuad tile this server cuts."""
    return 0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


def detection_tile(
    scene_id: int, z: int, x: int, y: int, *, statuses: Sequence[str] | None = None,
    class_ids: Sequence[int] | None = None, score_min: float | None = None,
) -> bytes:
    """One tile of a scene's detections (layer `detections`, feature id = detection id); b"" when none.

    Properties: id, object_class, status, score, source, version, manual. None for a filter means no filter.
    The caller checks access and the tile range (tile_in_range).
    """
    if statuses is not None:
        unknown = set(statuses) - set(DetectionStatus.values)
        if unknown:
            raise ValueError(f"unknown statuses: {sorted(unknown)}")
    params = {
        "z": z, "x": x, "y": y, "scene_id": scene_id, "dot_below": DOT_UNITS * WORLD_M / 2**z / EXTENT,
        "dot_half": DOT_SIDE / 2 * WORLD_M / 2**z / EXTENT,
        "statuses": list(statuses) if statuses is not None else None,
        "class_ids": list(class_ids) if class_ids is not None else None,
        "score_min": score_min,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SQL, params)
        row = cursor.fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""
