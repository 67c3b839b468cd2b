"""Coordinate frames in one place: pixel (col, row) <-> scene CRS <-> EPSG:4326, and web-map zooms.

Pixel coordinates are `_px`: x = column, y = row, origin at the top-left corner of the top-left pixel.
Boxes are XYXY unless the name says otherwise.
"""

import functools
import math
from collections.abc import Sequence

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

WGS84 = CRS.from_epsg(4326)
EARTH_RADIUS_M = 6_378_137.0
# Metres per pixel at zoom 0 on the equator for 256 px WebMercatorQuad tiles.
WEB_MERCATOR_Z0_RES_M = 2 * math.pi * EARTH_RADIUS_M / 256


def transform_from_gdal(geotransform: Sequence[float]) -> Affine:
    """The Affine of a GDAL geotransform (x0, dx, rx, y0, ry, dy)."""
    return Affine.from_gdal(*geotransform)


def px_to_crs(transform: Affine, xs_px: np.ndarray, ys_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates to the scene's CRS."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    xs_px, ys_px = np.asarray(xs_px, dtype=float), np.asarray(ys_px, dtype=float)
    return a * xs_px + b * ys_px + c, d * xs_px + e * ys_px + f


def crs_to_px(transform: Affine, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scene-CRS coordinates to pixel coordinates."""
    inv = ~transform
    return px_to_crs(inv, xs, ys)


def crs_to_lonlat(crs: CRS, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scene-CRS coordinates to longitude, latitude (EPSG:4326, x = lon)."""
    lons, lats = warp_transform(crs, WGS84, list(np.ravel(xs)), list(np.ravel(ys)))
    return np.asarray(lons), np.asarray(lats)


def lonlat_to_crs(crs: CRS, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude, latitude to the scene's CRS."""
    xs, ys = warp_transform(WGS84, crs, list(np.ravel(lons)), list(np.ravel(lats)))
    return np.asarray(xs), np.asarray(ys)


def px_to_lonlat(crs: CRS, transform: Affine, xs_px, ys_px) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates to longitude, latitude."""
    return crs_to_lonlat(crs, *px_to_crs(transform, xs_px, ys_px))


def lonlat_to_px(crs: CRS, transform: Affine, lons, lats) -> tuple[np.ndarray, np.ndarray]:
    """Longitude, latitude to pixel coordinates."""
    return crs_to_px(transform, *lonlat_to_crs(crs, lons, lats))


def footprint_ring_lonlat(
    crs: CRS, transform: Affine, width: int, height: int, points_per_edge: int = 16
) -> list[tuple[float, float]]:
    """The raster's outline as a closed lon/lat ring, densified so that curved edges stay true."""
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
    xs = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    ys = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    lons, lats = px_to_lonlat(crs, transform, xs, ys)
    ring = list(zip(lons.tolist(), lats.tolist(), strict=True))
    return ring + [ring[0]]


def unwrap_lons(lons: Sequence[float]) -> np.ndarray:
    """Longitudes made continuous along a ring: a step of more than 180 degrees is taken the short way round.

    A ring that crosses the antimeridian then runs past 180 (or below -180) instead of jumping across the map.
    """
    lons = np.asarray(lons, dtype=float)
    steps = np.diff(lons)
    steps = (steps + 180.0) % 360.0 - 180.0
    out = np.concatenate([[lons[0]], lons[0] + np.cumsum(steps)])
    # Keep the ring's west edge within [-180, 180) so that only its east part needs shifting back.
    return out - 360.0 * np.floor((out.min() + 180.0) / 360.0)


def footprint_parts_lonlat(
    crs: CRS, transform: Affine, width: int, height: int, points_per_edge: int = 16
) -> tuple[list[list[tuple[float, float]]], tuple[float, float, float, float]]:
    """The raster's outline as lon/lat polygon rings split at the antimeridian, and its unwrapped extent.

    The extent (west, south, east, north) may have east > 180 for a scene that crosses 180 degrees: it is the
    real extent a map should fit, where the split parts alone would span the whole world.
    """
    from shapely.geometry import Polygon as ShapelyPolygon
    from shapely.geometry import box
    from shapely.ops import unary_union

    ring = footprint_ring_lonlat(crs, transform, width, height, points_per_edge)
    lons = unwrap_lons([p[0] for p in ring])
    lats = [p[1] for p in ring]
    shape = ShapelyPolygon(list(zip(lons.tolist(), lats, strict=True)))
    if not shape.is_valid:
        shape = shape.buffer(0)
    west, south, east, north = shape.bounds
    parts = []
    for offset in (0.0, -360.0):
        window = box(-180.0 - offset, -90.0, 180.0 - offset, 90.0)
        piece = unary_union([shape.intersection(window)])
        for poly in getattr(piece, "geoms", [piece]):
            if poly.geom_type != "Polygon" or poly.is_empty or poly.area == 0:
                continue
            parts.append([(x + offset, y) for x, y in poly.exterior.coords])
    return parts, (west, south, east, north)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres on the WGS84 equatorial sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def ground_resolution_m(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """Metres on the ground per pixel at the scene centre (true distance, whatever the CRS units)."""
    cx, cy = width / 2, height / 2
    lons, lats = px_to_lonlat(crs, transform, [cx, cx + 1, cx], [cy, cy, cy + 1])
    dx = haversine_m(lons[0], lats[0], lons[1], lats[1])
    dy = haversine_m(lons[0], lats[0], lons[2], lats[2])
    return (dx + dy) / 2


def native_zoom(gsd_m: float, lat: float) -> int:
    """The smallest web-map zoom whose pixels are as fine as the scene's (0.1 m -> about 21)."""
    res_z0 = WEB_MERCATOR_Z0_RES_M * math.cos(math.radians(lat))
    return max(0, min(30, math.ceil(math.log2(res_z0 / gsd_m) - 1e-9)))


def overview_zoom(native: int, width: int, height: int, tile_px: int = 256) -> int:
    """The zoom at which the whole scene fits in about one tile."""
    return max(0, native - math.ceil(math.log2(max(width, height, tile_px) / tile_px)))


Rings = list[list[tuple[float, float]]]


def _map_rings(convert, rings: Rings) -> Rings:
    """Apply a (xs, ys) -> (xs, ys) conversion to every ring of a polygon."""
    out = []
    for ring in rings:
        xs, ys = convert(*zip(*ring, strict=True))
        out.append(list(zip(np.asarray(xs).tolist(), np.asarray(ys).tolist(), strict=True)))
    return out


def rings_lonlat_to_px(crs: CRS, transform: Affine, rings: Rings) -> Rings:
    """A polygon's rings (exterior first) from lon/lat to pixel coordinates."""
    return _map_rings(lambda lons, lats: lonlat_to_px(crs, transform, lons, lats), rings)


def rings_px_to_lonlat(crs: CRS, transform: Affine, rings: Rings) -> Rings:
    """A polygon's rings (exterior first) from pixel coordinates to lon/lat."""
    return _map_rings(lambda xs, ys: px_to_lonlat(crs, transform, xs, ys), rings)


@functools.lru_cache(maxsize=256)
def crs_from_text(text: str) -> CRS:
    """A scene's stored CRS (EPSG:n or WKT), parsed once per process (PROJ parsing is not free)."""
    return CRS.from_user_input(text)


def box_px_to_ring(box_xyxy_px: Sequence[float]) -> list[tuple[float, float]]:
    """The closed pixel ring of an XYXY box (clockwise on screen, starting top-left)."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy_px)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


class SceneFrame:
    """One scene's pixel grid on the earth (CRS + affine transform): every pixel <-> lon/lat conversion of a scene.

    Build it with `SceneFrame.of(scene)` (anything with `crs` text and a GDAL `geotransform`) rather than parsing
    the CRS and transform again in each caller.
    """

    __slots__ = ("crs", "transform")

    def __init__(self, crs: CRS, transform: Affine):
        self.crs = crs
        self.transform = transform

    @classmethod
    def of(cls, scene) -> "SceneFrame":
        """The frame of a scene row (or an ingest header) with `crs` and `geotransform`."""
        return cls(crs_from_text(scene.crs), transform_from_gdal(scene.geotransform))

    def to_px(self, lons, lats) -> tuple[np.ndarray, np.ndarray]:
        """Lon/lat to pixel coordinates."""
        return lonlat_to_px(self.crs, self.transform, lons, lats)

    def to_lonlat(self, xs_px, ys_px) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates to lon/lat."""
        return px_to_lonlat(self.crs, self.transform, xs_px, ys_px)

    def rings_to_px(self, rings: Rings) -> Rings:
        """A polygon's lon/lat rings (exterior first) in pixels."""
        return rings_lonlat_to_px(self.crs, self.transform, rings)

    def rings_to_lonlat(self, rings: Rings) -> Rings:
        """A polygon's pixel rings (exterior first) in lon/lat."""
        return rings_px_to_lonlat(self.crs, self.transform, rings)

    def polygon_px(self, polygon) -> Rings:
        """An EPSG:4326 GEOS polygon's rings in pixels (exterior first)."""
        return self.rings_to_px([list(ring.coords) for ring in polygon])

    def box_lonlat_ring(self, box_xyxy_px: Sequence[float]) -> list[tuple[float, float]]:
        """An XYXY pixel box as a closed lon/lat ring."""
        return self.rings_to_lonlat([box_px_to_ring(box_xyxy_px)])[0]
