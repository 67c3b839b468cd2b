"""Tiles through the real rio-tiler stack: pixel values at a known place, transparency, caching, scoping."""

import io

import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform as warp_transform

from tests.conftest import NAIP, NEON, client_for
from tests.rasters import gradient, write_tif

pytestmark = pytest.mark.django_db
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


def tile_url(scene, z, x, y):
    return f"/api/scenes/{scene.pk}/tiles/{z}/{x}/{y}.png"


def lonlat_of_pixel(path, col, row):
    with rasterio.open(path) as src:
        x, y = src.xy(row, col)
        lon, lat = warp_transform(src.crs, "EPSG:4326", [x], [y])
        return lon[0], lat[0], src.read(window=((row, row + 1), (col, col + 1)))[:, 0, 0]


def pixel_in_tile(lon, lat, z):
    """The tile containing lon/lat at zoom z and the pixel within it."""
    tile = WEB_MERCATOR.tile(lon, lat, z)
    b = WEB_MERCATOR.xy_bounds(tile)
    mx, my = WEB_MERCATOR.xy(lon, lat)
    px = int((mx - b.left) / (b.right - b.left) * 256)
    py = int((b.top - my) / (b.top - b.bottom) * 256)
    return tile, px, py


def fetch_rgba(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA")), response


def test_tile_has_the_scene_pixel_values_at_a_known_place(ingested, api):
    scene = ingested(NEON)
    # A native-resolution tile: each tile pixel is about one scene pixel, so values match closely.
    for col, row in ((120, 80), (300, 310)):
        lon, lat, expected = lonlat_of_pixel(NEON, col, row)
        tile, px, py = pixel_in_tile(lon, lat, scene.max_zoom)
        rgba, _ = fetch_rgba(api, tile_url(scene, tile.z, tile.x, tile.y))
        got = rgba[py, px, :3].astype(int)
        assert rgba[py, px, 3] == 255
        assert np.abs(got - expected.astype(int)).max() <= 40, (got, expected)


def test_stretched_uint16_tile_maps_the_display_range_to_bytes(ingested, api, tmp_path):
    data = gradient(count=3, dtype="uint16", height=512, width=512)
    path = write_tif(tmp_path / "u16.tif", data)
    scene = ingested(path)
    lon, lat, expected = lonlat_of_pixel(path, 256, 256)
    tile, px, py = pixel_in_tile(lon, lat, scene.max_zoom)
    rgba, _ = fetch_rgba(api, tile_url(scene, tile.z, tile.x, tile.y))
    for band in range(3):
        low, high = scene.stretch[band]
        want = np.clip((expected[band] - low) / (high - low) * 255, 0, 255)
        assert abs(int(rgba[py, px, band]) - want) <= 12


def test_tile_is_transparent_outside_the_data(ingested, api):
    scene = ingested(NEON)
    lon, lat, _ = lonlat_of_pixel(NEON, 0, 0)  # top-left corner: the tile straddles the scene's edge
    tile, px, py = pixel_in_tile(lon, lat, scene.max_zoom)
    rgba, _ = fetch_rgba(api, tile_url(scene, tile.z, tile.x, tile.y))
    assert rgba[min(py + 5, 255), min(px + 5, 255), 3] == 255, "inside the scene is opaque"
    assert rgba[max(py - 5, 0), max(px - 5, 0), 3] == 0, "outside the scene is transparent"
    far, _ = fetch_rgba(api, tile_url(scene, scene.max_zoom, 0, 0))
    assert (far[..., 3] == 0).all()


def test_tile_selects_the_scene_band_mapping(ingested, api):
    natural, false_colour = ingested(NAIP), ingested(NAIP, bands=[4, 3, 2])
    lon, lat, values = lonlat_of_pixel(NAIP, 400, 300)
    tile, px, py = pixel_in_tile(lon, lat, natural.max_zoom)
    a, _ = fetch_rgba(api, tile_url(natural, tile.z, tile.x, tile.y))
    b, _ = fetch_rgba(api, tile_url(false_colour, tile.z, tile.x, tile.y))
    assert abs(int(a[py, px, 0]) - int(values[0])) <= 40
    assert abs(int(b[py, px, 0]) - int(values[3])) <= 40
    assert not np.array_equal(a, b)


def test_etag_and_cache_control(ingested, api):
    scene = ingested(NEON)
    lon, lat, _ = lonlat_of_pixel(NEON, 200, 200)
    tile, _, _ = pixel_in_tile(lon, lat, scene.max_zoom)
    url = tile_url(scene, tile.z, tile.x, tile.y)
    first = api.get(url)
    assert first["ETag"] and "max-age" in first["Cache-Control"] and "private" in first["Cache-Control"]
    again = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again.content == b""
    other = api.get(tile_url(scene, tile.z, tile.x + 1, tile.y))
    assert other["ETag"] != first["ETag"]


def test_tiles_are_404_for_users_outside_the_project_and_for_anonymous(ingested, outsider, client):
    scene = ingested(NEON)
    lon, lat, _ = lonlat_of_pixel(NEON, 200, 200)
    tile, _, _ = pixel_in_tile(lon, lat, scene.max_zoom)
    url = tile_url(scene, tile.z, tile.x, tile.y)
    response = client_for(outsider).get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert client.get(url).status_code == 404


def test_zoom_beyond_overzoom_is_404_and_deep_zoom_is_served(ingested, api, settings):
    scene = ingested(NEON)
    lon, lat, _ = lonlat_of_pixel(NEON, 200, 200)
    deep, _, _ = pixel_in_tile(lon, lat, scene.max_zoom + settings.TILE_OVERZOOM)
    assert deep.z >= 23
    fetch_rgba(api, tile_url(scene, deep.z, deep.x, deep.y))
    too_deep, _, _ = pixel_in_tile(lon, lat, scene.max_zoom + settings.TILE_OVERZOOM + 1)
    assert api.get(tile_url(scene, too_deep.z, too_deep.x, too_deep.y)).status_code == 404


def test_thumbnail_is_a_small_png_of_the_whole_scene(ingested, api):
    scene = ingested(NAIP)
    rgba, response = fetch_rgba(api, f"/api/scenes/{scene.pk}/thumbnail.png")
    assert max(rgba.shape[:2]) == 256 and response["ETag"]
    assert rgba[..., 3].mean() > 200
