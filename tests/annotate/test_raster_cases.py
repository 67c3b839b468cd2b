"""Raster edge cases: palettes, the antimeridian, unsupported CRSs, unmasked collars, narrow and filled data,
a manager's display settings, and re-ingest that never breaks a ready scene."""

import numpy as np
import pytest
import rasterio
from affine import Affine
from django.contrib.gis.geos import Point
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

from annotate import storage, tile_views
from annotate.errors import IngestError
from annotate.models import Role, Scene, SceneStatus
from annotate.services import membership_set, scene_create_from_path, scene_extent, scene_ingest
from gpu_tasks.models import JobKind, JobStatus
from gpu_tasks.services import ingest_job_run, job_create
from tests.annotate.test_tiles import fetch_rgba, lonlat_of_pixel, pixel_in_tile, tile_url
from tests.conftest import NAIP, client_for, make_user
from tests.rasters import (
    GEOSTATIONARY,
    MARS_2000,
    gradient,
    write_across_antimeridian,
    write_paletted,
    write_tif,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cached_grants():
    tile_views.clear_visible_cache()
    yield
    tile_views.clear_visible_cache()


def tile_at(api, scene, path, col, row):
    """The RGBA tile pixel over a scene pixel, at the scene's native zoom."""
    lon, lat, _ = lonlat_of_pixel(path, col, row)
    tile, px, py = pixel_in_tile(lon, lat, scene.max_zoom)
    rgba, response = fetch_rgba(api, tile_url(scene, tile.z, tile.x, tile.y))
    return rgba[py, px], response


# ---------------------------------------------------------------------------------------------- palettes
def test_a_paletted_raster_keeps_its_colours(tmp_path, ingested, api):
    indexes = np.ones((300, 400), "uint8")
    indexes[:, 200:] = 2
    indexes[:30, :] = 0  # the nodata index
    colours = {0: (0, 0, 0, 255), 1: (200, 30, 20, 255), 2: (20, 160, 40, 255)}
    path = write_paletted(tmp_path / "landcover.tif", indexes, colours, nodata=0)
    scene = ingested(path)
    assert (scene.band_count, scene.dtype, scene.rgb_bands) == (3, "uint8", [1, 2, 3])
    with rasterio.open(storage.absolute(scene.cog_path)) as ds:
        assert tuple(ds.read()[:, 100, 100]) == (200, 30, 20)
        assert tuple(ds.read()[:, 100, 300]) == (20, 160, 40)
        assert (ds.dataset_mask()[:30] == 0).all() and (ds.dataset_mask()[30:] == 255).all()
    red, _ = tile_at(api, scene, path, 100, 150)
    green, _ = tile_at(api, scene, path, 300, 150)
    assert np.abs(red.astype(int) - (200, 30, 20, 255)).max() <= 2
    assert np.abs(green.astype(int) - (20, 160, 40, 255)).max() <= 2


# ---------------------------------------------------------------------------------------------- antimeridian
def test_a_scene_across_the_antimeridian_is_split_at_180_and_has_its_real_extent(tmp_path, ingested, api):
    path = write_across_antimeridian(tmp_path / "fiji.tif")
    scene = ingested(path)
    footprint = scene.footprint
    assert footprint.geom_type == "MultiPolygon" and len(footprint) == 2
    west_part, east_part = sorted(footprint, key=lambda p: p.extent[0])
    assert west_part.extent[0] == pytest.approx(-180.0) and east_part.extent[2] == pytest.approx(180.0)
    for part in footprint:
        assert part.extent[2] - part.extent[0] < 0.2, "no part is read flat across the world"
    # Every corner and edge midpoint of the raster lies on the footprint (no corner lost to the split).
    with rasterio.open(path) as src:
        cols = [0, src.width / 2, src.width, src.width, src.width, src.width / 2, 0, 0]
        rows = [0, 0, 0, src.height / 2, src.height, src.height, src.height, src.height / 2]
        xs, ys = src.xy(rows, cols, offset="ul")
        lons, lats = warp_transform(src.crs, "EPSG:4326", xs, ys)
    for lon, lat in zip(lons, lats, strict=True):
        lon = (lon + 180) % 360 - 180
        assert footprint.buffer(1e-6).contains(Point(lon, lat, srid=4326)), (lon, lat)
    west, south, east, north = scene_extent(scene)
    assert west < 180 < east and east - west < 0.4, "the map fits the scene, not the world"
    body = api.get(f"/api/scenes/{scene.pk}/display/").json()
    assert body["extent"] == pytest.approx([west, south, east, north])
    assert api.get(f"/api/scenes/{scene.pk}/").json()["footprint"]["type"] == "MultiPolygon"


def test_an_ordinary_scene_keeps_a_polygon_footprint(ingested, api):
    scene = ingested(NAIP)
    assert scene.footprint.geom_type == "Polygon"
    west, south, east, north = scene_extent(scene)
    assert (west, south, east, north) == pytest.approx(scene.footprint.extent)


# ---------------------------------------------------------------------------------------------- CRSs
def _refused(ingested, path, *needles):
    with pytest.raises(IngestError) as caught:
        ingested(path)
    message = caught.value.message
    scene = Scene.objects.latest("id")
    assert scene.status == SceneStatus.FAILED and scene.error == message
    for needle in needles:
        assert needle in message, message
    assert len(message) < 700 and "$schema" not in message and "PROJCS[" not in message and "{" not in message
    return message


def test_a_geostationary_full_disk_is_refused_up_front_naming_the_crs(tmp_path, ingested):
    disk = from_origin(-5_500_000, 5_500_000, 55_000, 55_000)
    path = write_tif(tmp_path / "geos.tif", gradient(count=1, height=200, width=200, dtype="uint16"),
                     crs=CRS.from_proj4(GEOSTATIONARY), transform=disk)
    _refused(ingested, path, "Geostationary", "gdalwarp -t_srs EPSG:")


def test_a_mars_crs_is_refused_naming_the_crs(tmp_path, ingested):
    path = write_tif(tmp_path / "mars.tif", gradient(count=1, height=100, width=100, dtype="uint8", scale=250),
                     crs=CRS.from_wkt(MARS_2000), transform=Affine(0.01, 0, 137.0, 0, -0.01, -4.0))
    _refused(ingested, path, "Mars 2000", "not an Earth CRS", "3,396,190 m")


def test_a_geostationary_scene_inside_the_disk_is_accepted(tmp_path, ingested):
    near_nadir = from_origin(-100_000, 100_000, 1000, 1000)
    path = write_tif(tmp_path / "geos-small.tif", gradient(count=1, height=200, width=200, dtype="uint16"),
                     crs=CRS.from_proj4(GEOSTATIONARY), transform=near_nadir)
    assert ingested(path).status == SceneStatus.READY


# ---------------------------------------------------------------------------------------------- masks and collars
def test_an_unmasked_collar_is_reported_with_the_command_that_embeds_a_mask(tmp_path, ingested):
    data = gradient(count=3, dtype="uint8", scale=250) // 2 + 100
    data[:, :20, :] = data[:, -20:, :] = data[:, :, :20] = data[:, :, -20:] = 0
    scene = ingested(write_tif(tmp_path / "collar.tif", data))
    (warning,) = [w for w in scene.warnings if w["code"] == "unmasked_collar"]
    assert "GDAL_TIFF_INTERNAL_MASK" in warning["message"] and ".msk" in warning["message"]
    assert "nodata to 0" in warning["message"]
    declared = ingested(write_tif(tmp_path / "declared.tif", data, nodata=0))
    assert not [w for w in declared.warnings if w["code"] == "unmasked_collar"]


# ---------------------------------------------------------------------------------------------- stretch
def test_narrow_byte_data_is_stretched_so_it_is_not_black(tmp_path, ingested, api):
    classes = np.zeros((1, 300, 400), "uint8")
    classes[:, :, 200:] = 1
    path = write_tif(tmp_path / "mask01.tif", classes)
    scene = ingested(path)
    assert scene.stretch == [[0.0, 1.0]]
    ones, _ = tile_at(api, scene, path, 300, 150)
    zeros, _ = tile_at(api, scene, path, 100, 150)
    assert ones[0] == 255 and zeros[0] == 0


def test_a_flat_background_with_small_bright_objects_keeps_the_byte_range(tmp_path, ingested):
    data = np.full((3, 400, 400), 40, "uint8")
    data[:, 100:150, 100:150] = np.array([210, 30, 30], "uint8")[:, None, None]  # 1.6 %: 2-98 % is 40-40
    assert ingested(write_tif(tmp_path / "planted.tif", data)).stretch == [[0.0, 255.0]] * 3


def test_an_undeclared_fill_value_is_left_out_of_the_stretch_and_warned_about(tmp_path, ingested):
    data = gradient(count=1, dtype="float32", scale=1.0) * 100 + 100  # 100-200
    data[:, :100, :] = -9999
    scene = ingested(write_tif(tmp_path / "fill.tif", data))
    low, high = scene.stretch[0]
    assert 100 <= low < high <= 200, "-9999 would wash the scene out"
    (warning,) = [w for w in scene.warnings if w["code"] == "fill_value"]
    assert "-9999" in warning["message"] and "nodata" in warning["message"]


def test_a_zero_fill_below_uint16_data_is_a_fill_value_but_dark_water_is_not(tmp_path, ingested):
    data = (gradient(count=1, dtype="uint16", scale=3000) + 1000).astype("uint16")  # 1000-4000
    data[:, :60, :] = 0
    scene = ingested(write_tif(tmp_path / "zero-fill.tif", data))
    assert [w["code"] for w in scene.warnings] == ["fill_value"] and scene.stretch[0][0] >= 1000
    water = data.copy()
    water[:, :60, :] = 990  # a dark but real surface, next to the other values
    assert ingested(write_tif(tmp_path / "water.tif", water)).warnings == []


def test_a_manager_sets_nodata_and_stretch_and_tiles_change(tmp_path, ingested, api, project):
    data = (gradient(count=3, dtype="float32", scale=1.0) * 100 + 100).astype("float32")
    data[:, :100, :] = -9999
    path = write_tif(tmp_path / "fill.tif", data)
    scene = ingested(path)
    url = f"/api/scenes/{scene.pk}/display/"
    lon, lat, _ = lonlat_of_pixel(path, 200, 50)  # in the fill
    tile, px, py = pixel_in_tile(lon, lat, scene.max_zoom)
    before, first = fetch_rgba(api, tile_url(scene, tile.z, tile.x, tile.y))
    assert before[py, px, 3] == 255, "the fill is drawn (black) while undeclared"

    response = api.patch(url, {"nodata": -9999}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["nodata"] == -9999 and not [w for w in body["warnings"] if w["code"] == "fill_value"]
    scene.refresh_from_db()
    # A manager's nodata is transparent in the tiles the map asks for, through the tile URL.
    tile_views.clear_visible_cache()
    after, _ = fetch_rgba(api, tile_url(scene, tile.z, tile.x, tile.y))
    assert after[py, px, 3] == 0, "the fill is transparent"
    lon, lat, _ = lonlat_of_pixel(path, 200, 200)  # in the data
    tile_in, qx, qy = pixel_in_tile(lon, lat, scene.max_zoom)
    inside, _ = fetch_rgba(api, tile_url(scene, tile_in.z, tile_in.x, tile_in.y))
    assert inside[qy, qx, 3] == 255, "the data stays opaque"

    custom = [[120.0, 180.0]] * 3
    response = api.patch(url, {"stretch": custom}, format="json")
    assert response.status_code == 200 and response.json()["stretch"] == custom
    assert response.json()["stretch_is_custom"] is True
    tile_views.clear_visible_cache()
    second = api.get(tile_url(scene, tile.z, tile.x, tile.y), HTTP_IF_NONE_MATCH=first["ETag"])
    assert second.status_code == 200 and second["ETag"] != first["ETag"]
    reset = api.patch(url, {"stretch": None}, format="json").json()
    assert reset["stretch"] == reset["stretch_auto"] and reset["stretch_is_custom"] is False


def test_display_settings_are_for_managers_and_bad_input_is_a_clear_400(tmp_path, ingested, api, project):
    scene = ingested(NAIP)
    url = f"/api/scenes/{scene.pk}/display/"
    reviewer = make_user("reviewer")
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    refused = client_for(reviewer).patch(url, {"nodata": 0}, format="json")
    assert refused.status_code == 403 and "manager" in refused.json()["error"]["message"]
    assert client_for(reviewer).get(url).status_code == 200
    for body in ({"nodata": "NaN"}, {"nodata": "Infinity"}, {"stretch": [[5, 1]] * 4}, {"stretch": [[0, 1]]},
                 {"stretch": "x"}, {}):
        response = api.patch(url, body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert response.json()["error"]["message"]
    outsider = make_user("stranger")
    assert client_for(outsider).get(url).status_code == 404


# ---------------------------------------------------------------------------------------------- re-ingest
def test_a_failed_reingest_leaves_a_ready_scene_serving_its_tiles(ingested, api, project, manager):
    scene = ingested(NAIP)
    cog_before = scene.cog_path
    url = tile_url(scene, *_a_tile(scene))
    assert api.get(url).status_code == 200
    job = job_create(kind=JobKind.INGEST, project_id=project.pk, scene=scene, user=manager,
                     params={"rgb_bands": [5, 5, 5]})  # bands the worker refuses
    job = ingest_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED and "Band 5" in job.error
    scene.refresh_from_db()
    assert scene.status == SceneStatus.READY and scene.cog_path == cog_before
    assert storage.absolute(scene.cog_path).exists()
    assert "Band 5" in scene.error and "unchanged" in scene.error
    assert storage.scene_cogs(storage.absolute(scene.cog_path).parent) == [storage.absolute(cog_before)]
    tile_views.clear_visible_cache()
    assert api.get(url).status_code == 200


def test_a_successful_reingest_swaps_the_new_cog_in_and_removes_the_old(
    ingested, api, django_capture_on_commit_callbacks
):
    scene = ingested(NAIP)
    old = storage.absolute(scene.cog_path)
    with django_capture_on_commit_callbacks(execute=True):
        scene = scene_ingest(scene=scene, rgb_bands=[4, 3, 2])
    assert scene.status == SceneStatus.READY and scene.rgb_bands == [4, 3, 2] and scene.error == ""
    assert storage.absolute(scene.cog_path) != old and not old.exists()
    assert storage.absolute(scene.cog_path).exists()
    tile_views.clear_visible_cache()
    assert api.get(tile_url(scene, *_a_tile(scene))).status_code == 200


def test_a_reingest_removes_cogs_left_by_a_killed_worker(ingested):
    scene = ingested(NAIP)
    leftover = storage.new_cog_path(storage.absolute(scene.cog_path).parent)
    leftover.write_bytes(b"half a COG")
    scene = scene_ingest(scene=scene)
    assert not leftover.exists() and storage.absolute(scene.cog_path).exists()


def test_ingest_scene_command_prints_the_warnings(tmp_path, project):
    from io import StringIO

    from django.core.management import call_command

    data = gradient(count=1, dtype="float32", scale=1.0) * 100 + 100
    data[:, :100, :] = -9999
    out = StringIO()
    call_command("ingest_scene", str(write_tif(tmp_path / "fill.tif", data)), project=project.name, stdout=out,
                 verbosity=0)
    assert "ready" in out.getvalue() and "Warning:" in out.getvalue() and "-9999" in out.getvalue()


def test_a_first_ingest_that_fails_still_marks_the_scene_failed(tmp_path, project, manager):
    scene = scene_create_from_path(project=project, user=manager, source=NAIP)
    with pytest.raises(IngestError):
        scene_ingest(scene=scene, rgb_bands=[9, 9, 9])
    scene.refresh_from_db()
    assert scene.status == SceneStatus.FAILED and scene.cog_path == ""


def _a_tile(scene):
    lon, lat, _ = lonlat_of_pixel(NAIP, 300, 300)
    tile, _, _ = pixel_in_tile(lon, lat, scene.max_zoom)
    return tile.z, tile.x, tile.y
