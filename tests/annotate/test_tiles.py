"""Tiles through the real rio-tiler stack: pixel values at a known place, transparency, caching, scoping."""

import io

import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform as warp_transform
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from annotate import storage, tile_views, tiles
from annotate.models import Membership
from tests.conftest import NAIP, NEON, client_for
from tests.rasters import gradient, write_tif

pytestmark = pytest.mark.django_db
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(autouse=True)
def _no_cached_grants():
    """Each test starts without grants cached by an earlier one."""
    tile_views.clear_visible_cache()
    yield
    tile_views.clear_visible_cache()


@pytest.fixture
def clock(monkeypatch):
    """The grant cache's clock, moved on by hand: `clock.advance(seconds)`."""

    class Clock:
        now = 1000.0

        def advance(self, seconds):
            self.now += seconds

    fake = Clock()
    monkeypatch.setattr(tile_views, "_clock", lambda: fake.now)
    return fake


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
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "RGBA"
    return np.asarray(image), response


def a_tile_url(scene):
    lon, lat, _ = lonlat_of_pixel(NEON, 200, 200)
    tile, _, _ = pixel_in_tile(lon, lat, scene.max_zoom)
    return tile_url(scene, tile.z, tile.x, tile.y)


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


def test_empty_tile_is_a_transparent_rgba_png():
    image = Image.open(io.BytesIO(tiles.EMPTY_PNG))
    assert image.mode == "RGBA" and image.size == (256, 256)
    assert (np.asarray(image)[..., 3] == 0).all()


@pytest.mark.parametrize("sample", [NEON, NAIP])
def test_tile_reads_have_exactly_rio_tilers_pixels(sample):
    """The shortcut around rio-tiler's per-tile PROJ work changes no pixel: inside, on the edge, overzoomed, outside."""
    reader, grid = tiles._reader(sample)
    assert grid is not None
    with Reader(str(sample)) as ref:
        west, south, east, north = ref.get_geographic_bounds("epsg:4326")
        zooms = range(ref.maxzoom - 3, ref.maxzoom + 3)
        corner = [WEB_MERCATOR.tile(west, north, z) for z in zooms]
        centre = [WEB_MERCATOR.tile((west + east) / 2, (south + north) / 2, z) for z in zooms]
        beyond = [morecantile.Tile(t.x - 1, t.y - 1, t.z) for t in corner]
        for t in corner + centre + beyond:
            try:
                want = ref.tile(t.x, t.y, t.z, tilesize=256, indexes=(1, 2, 3), resampling_method="bilinear")
            except TileOutsideBounds:
                want = None
            try:
                got = tiles._read_tile(reader, grid, t.x, t.y, t.z, (1, 2, 3))
            except TileOutsideBounds:
                got = None
            if want is None or got is None:
                # Either side may skip a tile off the data, but then the other reads nothing either.
                other = got if want is None else want
                assert other is None or not other.mask.any(), t
                continue
            assert np.array_equal(got.data, want.data), t
            assert np.array_equal(got.mask, want.mask), t


def test_a_repeated_tile_request_makes_no_database_query(ingested, api, django_assert_num_queries):
    scene = ingested(NEON)
    url = a_tile_url(scene)
    assert api.get(url).status_code == 200
    with django_assert_num_queries(0):
        again = api.get(url)
    assert again.status_code == 200 and again["Vary"] == "Cookie"


def test_a_removed_member_gets_404_once_the_cache_bound_has_passed(ingested, project, viewer, clock):
    scene = ingested(NEON)
    url = a_tile_url(scene)
    client = client_for(viewer)
    assert client.get(url).status_code == 200
    Membership.objects.filter(project=project, user=viewer).delete()
    # The documented bound: a grant is trusted for VISIBLE_CACHE_SECONDS, then asked of the database again.
    clock.advance(tile_views.VISIBLE_CACHE_SECONDS - 1)
    assert client.get(url).status_code == 200
    clock.advance(1.01)
    assert client.get(url).status_code == 404
    assert client.get(f"/api/scenes/{scene.pk}/thumbnail.png").status_code == 404


def test_a_cached_grant_serves_only_the_same_credentials(ingested, viewer, outsider, client, clock):
    scene = ingested(NEON)
    url = a_tile_url(scene)
    assert client_for(viewer).get(url).status_code == 200
    viewer_token = Token.objects.create(user=viewer)
    token_client = APIClient()
    token_client.credentials(HTTP_AUTHORIZATION=f"Token {viewer_token.key}")
    assert token_client.get(url).status_code == 200
    outsider_client = APIClient()
    outsider_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=outsider).key}")
    assert outsider_client.get(url).status_code == 404
    assert client_for(outsider).get(url).status_code == 404
    assert client.get(url).status_code == 404
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION=f"Token {viewer_token.key[:-1]}x")
    assert wrong.get(url).status_code == 404
    # A deleted token is refused once the bound has passed, like a removed membership.
    viewer_token.delete()
    clock.advance(tile_views.VISIBLE_CACHE_SECONDS + 0.01)
    assert token_client.get(url).status_code == 404


def test_a_changed_scene_style_changes_the_etag(ingested, api, clock):
    scene = ingested(NAIP)
    lon, lat, _ = lonlat_of_pixel(NAIP, 400, 300)
    tile, _, _ = pixel_in_tile(lon, lat, scene.max_zoom)
    url = tile_url(scene, tile.z, tile.x, tile.y)
    first = api.get(url)
    scene.rgb_bands = [4, 3, 2]
    scene.save(update_fields=["rgb_bands"])
    clock.advance(tile_views.VISIBLE_CACHE_SECONDS + 0.01)
    second = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert second.status_code == 200 and second["ETag"] != first["ETag"]
    scene.stretch = [[0.0, 100.0]] * len(scene.stretch)
    scene.save(update_fields=["stretch"])
    clock.advance(tile_views.VISIBLE_CACHE_SECONDS + 0.01)
    third = api.get(url)
    assert third["ETag"] not in (first["ETag"], second["ETag"])
    assert third.content != second.content


def test_a_scene_deleted_while_its_grant_is_cached_is_404_not_an_error(ingested, api):
    scene = ingested(NEON)
    url = a_tile_url(scene)
    assert api.get(url).status_code == 200
    storage.absolute(scene.cog_path).unlink()
    assert api.get(url).status_code == 404
