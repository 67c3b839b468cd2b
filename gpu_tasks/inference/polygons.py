"""Binary masks to valid, simplified polygons in native pixel coordinates."""

from __future__ import annotations

import numpy as np

# A polygon is [exterior, *holes]; a ring is a closed list of (x, y) native px (first point repeated last).
Ring = list[tuple[float, float]]
Polygon = list[Ring]


def mask_to_polygons(
    mask: np.ndarray,
    offset_x_px: float,
    offset_y_px: float,
    scale_x: float,
    scale_y: float,
    simplify_px: float = 1.0,
    min_part_fraction: float = 0.05,
) -> list[Polygon]:
    """Polygons of a bool (H, W) mask; mask pixel (r, c) spans native x in offset_x + [c, c+1) * scale_x.

    Holes and several parts are kept; parts smaller than min_part_fraction of the largest are dropped as
    specks; simplify_px is the Douglas-Peucker tolerance in native px (topology preserved). Returns [] for
    an empty or degenerate mask, so the caller can keep its box.
    """
    import rasterio.features
    import shapely
    from affine import Affine
    from shapely.geometry import shape
    from shapely.geometry.polygon import orient

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        return []
    transform = Affine(scale_x, 0.0, offset_x_px, 0.0, scale_y, offset_y_px)
    # GDAL polygonize traces exact pixel edges, with holes, in the target frame directly.
    shapes = rasterio.features.shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=transform)
    geoms = [shape(geom) for geom, _ in shapes]
    if not geoms:
        return []
    merged = shapely.make_valid(shapely.union_all(geoms))
    if simplify_px > 0:
        merged = merged.simplify(simplify_px, preserve_topology=True)
        merged = shapely.make_valid(merged)
    # make_valid may return a GeometryCollection or MultiPolygon; flatten either into plain polygons.
    flat: list = []
    for p in shapely.get_parts(merged):
        if p.geom_type == "MultiPolygon":
            flat.extend(shapely.get_parts(p))
        elif p.geom_type == "Polygon":
            flat.append(p)
    parts = [p for p in flat if not p.is_empty and p.area > 0]
    if not parts:
        return []
    largest = max(p.area for p in parts)
    parts = [p for p in parts if p.area >= min_part_fraction * largest]
    parts.sort(key=lambda p: -p.area)
    out: list[Polygon] = []
    for p in parts:
        p = orient(p, sign=1.0)
        rings = [p.exterior, *p.interiors]
        out.append([[(float(x), float(y)) for x, y in ring.coords] for ring in rings])
    return out


def polygons_bounds(polygons: list[Polygon]) -> tuple[float, float, float, float] | None:
    """xyxy bounds of the exteriors of some polygons, or None when there are none."""
    if not polygons:
        return None
    pts = np.concatenate([np.asarray(poly[0], dtype=np.float64) for poly in polygons])
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())
