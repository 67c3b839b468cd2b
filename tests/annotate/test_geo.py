"""The one module of coordinate frames: pixel <-> scene CRS <-> EPSG:4326, ground resolution, zooms."""

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from annotate import geo
from tests.conftest import AERIAL, NEON


def test_pixel_lonlat_round_trip_in_utm():
    with rasterio.open(NEON) as src:
        xs_px, ys_px = np.array([0.0, 123.5, 400.0]), np.array([0.0, 77.25, 400.0])
        lons, lats = geo.px_to_lonlat(src.crs, src.transform, xs_px, ys_px)
        back_x, back_y = geo.lonlat_to_px(src.crs, src.transform, lons, lats)
        # Matches rasterio's own pixel-to-map convention (xy of a pixel corner).
        x0, y0 = src.xy(0, 0, offset="ul")
    np.testing.assert_allclose(back_x, xs_px, atol=1e-6)
    np.testing.assert_allclose(back_y, ys_px, atol=1e-6)
    cx, cy = geo.px_to_crs(src.transform, [0], [0])
    assert (cx[0], cy[0]) == pytest.approx((x0, y0))
    assert -82.1 < lons[0] < -81.9 and 29.6 < lats[0] < 29.8


def test_footprint_ring_is_closed_and_densified():
    with rasterio.open(NEON) as src:
        ring = geo.footprint_ring_lonlat(src.crs, src.transform, src.width, src.height, points_per_edge=8)
    assert len(ring) == 33 and ring[0] == ring[-1]


def test_ground_resolution_is_true_metres_whatever_the_crs():
    with rasterio.open(NEON) as src:
        assert geo.ground_resolution_m(src.crs, src.transform, src.width, src.height) == pytest.approx(0.1, rel=0.01)
    with rasterio.open(AERIAL) as src:
        lat = geo.px_to_lonlat(src.crs, src.transform, [512], [512])[1][0]
        expected = src.transform.a * np.cos(np.radians(lat))  # Web Mercator's scale factor
        assert geo.ground_resolution_m(src.crs, src.transform, 1024, 1024) == pytest.approx(expected, rel=0.01)
    # Geographic CRS: one arc-second is about 30.9 m along the equator.
    transform = rasterio.transform.from_origin(0, 0.5, 1 / 3600, 1 / 3600)
    assert geo.ground_resolution_m(CRS.from_epsg(4326), transform, 100, 100) == pytest.approx(30.9, rel=0.02)


@pytest.mark.parametrize(
    ("gsd", "lat", "zoom"), [(0.1, 0.0, 21), (0.1, 30.0, 21), (0.3, 0.0, 19), (3.0, 0.0, 16), (0.6, 60.0, 17)]
)
def test_native_zoom_is_as_fine_as_the_scene(gsd, lat, zoom):
    z = geo.native_zoom(gsd, lat)
    assert z == zoom
    res = geo.WEB_MERCATOR_Z0_RES_M * np.cos(np.radians(lat)) / 2**z
    assert res <= gsd < 2 * res


def test_overview_zoom_fits_the_scene_in_a_tile():
    assert geo.overview_zoom(21, 400, 400) == 20
    assert geo.overview_zoom(18, 100_000, 50_000) == 9
    assert geo.overview_zoom(3, 100_000, 100_000) == 0


def test_scene_frame_round_trips_pixels_and_lonlat():
    """SceneFrame.of(scene) converts a pixel box to lon/lat and back to the same pixels (a UTM scene)."""
    from types import SimpleNamespace

    from django.contrib.gis.geos import Polygon

    from annotate.geo import SceneFrame

    scene = SimpleNamespace(crs="EPSG:32617", geotransform=(403000.0, 0.1, 0.0, 3286000.0, 0.0, -0.1))
    frame = SceneFrame.of(scene)
    ring = frame.box_lonlat_ring((10, 20, 110, 70))
    assert len(ring) == 5 and all(-90 < lon < -70 and 20 < lat < 40 for lon, lat in ring)
    back = frame.polygon_px(Polygon(ring, srid=4326))[0]
    assert [tuple(round(v, 6) for v in p) for p in back] == [(10, 20), (110, 20), (110, 70), (10, 70), (10, 20)]
    xs, ys = frame.to_px(*frame.to_lonlat([5.5], [7.25]))
    assert abs(xs[0] - 5.5) < 1e-6 and abs(ys[0] - 7.25) < 1e-6
