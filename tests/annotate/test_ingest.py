"""Scene ingest against real files: the three sample scenes, synthetic edge cases and bad inputs."""

import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine
from django.contrib.gis.geos import Point
from rasterio.enums import ColorInterp, MaskFlags

from annotate import cog, storage
from annotate.errors import IngestError
from annotate.models import Annotation, Detection, ObjectClass, Scene, SceneStatus
from annotate.services import scene_create_from_path, scene_ingest
from tests.conftest import AERIAL, NAIP, NEON
from tests.rasters import gradient, write_tif

pytestmark = pytest.mark.django_db


def cog_of(scene: Scene):
    return rasterio.open(storage.absolute(scene.cog_path))


def test_neon_rgb_scene_becomes_a_cog_with_footprint_and_metadata(ingested):
    scene = ingested(NEON)
    assert scene.status == SceneStatus.READY and scene.error == ""
    assert (scene.width, scene.height, scene.band_count, scene.dtype) == (400, 400, 3, "uint8")
    assert scene.crs == "EPSG:32617"
    assert scene.gsd_m == pytest.approx(0.1, rel=0.02)
    assert scene.max_zoom >= 21, "0.1 m imagery needs zoom 21 or more"
    assert scene.rgb_bands == [1, 2, 3]
    assert scene.stretch == [[0.0, 255.0]] * 3
    with rasterio.open(NEON) as src:
        cx, cy = src.xy(200, 200)
        lon, lat = rasterio.warp.transform(src.crs, "EPSG:4326", [cx], [cy])
    assert scene.footprint.contains(Point(lon[0], lat[0], srid=4326))
    assert scene.footprint.area > 0
    with cog_of(scene) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["tiled"] and ds.block_shapes[0] == (512, 512)
        with rasterio.open(NEON) as src:
            np.testing.assert_array_equal(ds.read(), src.read())


def test_jpeg_cog_with_internal_mask_keeps_transparency_and_overviews(ingested):
    scene = ingested(AERIAL)
    assert scene.status == SceneStatus.READY
    with rasterio.open(AERIAL) as src:
        src_mask = src.dataset_mask()
    with cog_of(scene) as ds:
        assert ds.overviews(1), "a 1024 px scene gets at least one overview"
        assert all(flags == [MaskFlags.per_dataset] for flags in ds.mask_flag_enums)
        np.testing.assert_array_equal(ds.dataset_mask(), src_mask)
    # EPSG:3857 pixels are smaller on the ground than their nominal size away from the equator.
    with rasterio.open(AERIAL) as src:
        nominal = src.transform.a
    assert scene.gsd_m < nominal


def test_four_band_scene_default_and_chosen_rgb_mapping(ingested):
    default = ingested(NAIP)
    assert default.band_count == 4 and default.rgb_bands == [1, 2, 3]
    false_colour = ingested(NAIP, bands=[4, 3, 2])
    assert false_colour.rgb_bands == [4, 3, 2]
    with pytest.raises(IngestError, match="Band 5 cannot be shown"):
        ingested(NAIP, bands=[5, 3, 2])


def test_uint16_scene_with_nodata_gets_percentile_stretch_and_mask(tmp_path, ingested):
    data = gradient(count=4, dtype="uint16")
    data[:, :50, :] = 0  # a nodata strip along the top
    path = write_tif(tmp_path / "u16.tif", data, nodata=0)
    scene = ingested(path)
    assert scene.dtype == "uint16" and scene.band_count == 4
    for low, high in scene.stretch:
        assert 0 < low < high <= 4000
    with cog_of(scene) as ds:
        mask = ds.dataset_mask()
    assert (mask[:50] == 0).all() and (mask[50:] == 255).all()


def test_float_and_int16_scenes_are_accepted(tmp_path, ingested):
    floats = write_tif(tmp_path / "f32.tif", gradient(dtype="float32", scale=1.0))
    ints = write_tif(tmp_path / "i16.tif", (gradient(dtype="int32", scale=2000) - 1000).astype("int16"))
    for path, dtype in ((floats, "float32"), (ints, "int16")):
        scene = ingested(path)
        assert scene.status == SceneStatus.READY and scene.dtype == dtype
        assert all(low < high for low, high in scene.stretch)


def test_alpha_band_becomes_the_mask_and_is_not_a_data_band(tmp_path, ingested):
    rgba = np.concatenate([gradient(count=3, dtype="uint8", scale=250), np.full((1, 300, 400), 255, "uint8")])
    rgba[3, :, :100] = 0
    path = write_tif(tmp_path / "rgba.tif", rgba, photometric="RGB")
    with rasterio.open(path, "r+") as ds:
        ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    scene = ingested(path)
    assert scene.band_count == 3 and scene.rgb_bands == [1, 2, 3]
    with cog_of(scene) as ds:
        assert ds.count == 3
        mask = ds.dataset_mask()
    assert (mask[:, :100] == 0).all() and (mask[:, 100:] == 255).all()


def test_windowed_conversion_matches_the_source_pixel_for_pixel(tmp_path, ingested, monkeypatch):
    monkeypatch.setattr(cog, "WINDOW_PX", 96)  # many windows, ragged edges
    data = gradient(count=2, height=333, width=517, dtype="uint16")
    path = write_tif(tmp_path / "odd.tif", data)
    scene = ingested(path)
    with cog_of(scene) as ds:
        np.testing.assert_array_equal(ds.read(), data)


# ---------------------------------------------------------------------------------------------- bad inputs
def _fails(ingested, path, match):
    """Ingest must fail with a message matching `match`, leave the scene failed and change nothing else."""
    before = (ObjectClass.objects.count(), Annotation.objects.count(), Detection.objects.count())
    ready_before = Scene.objects.filter(status=SceneStatus.READY).count()
    with pytest.raises(IngestError, match=match):
        ingested(path)
    scene = Scene.objects.latest("id")
    assert scene.status == SceneStatus.FAILED
    assert scene.error and scene.cog_path == ""
    assert storage.scene_cogs(storage.absolute(scene.upload_path).parent) == [], "no COG, partial or whole, is left"
    assert storage.absolute(scene.upload_path).exists(), "the upload is kept"
    assert (ObjectClass.objects.count(), Annotation.objects.count(), Detection.objects.count()) == before
    assert Scene.objects.filter(status=SceneStatus.READY).count() == ready_before
    return scene


def test_refuses_a_file_that_is_not_a_tiff(tmp_path, ingested):
    path = tmp_path / "photo.tif"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    scene = _fails(ingested, path, "not a GeoTIFF")
    assert "gdal_translate" in scene.error


def test_refuses_a_vrt_disguised_as_tif(tmp_path, ingested):
    path = tmp_path / "hostile.tif"
    path.write_text(
        '<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand band="1"><SimpleSource>'
        "<SourceFilename>/etc/passwd</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    _fails(ingested, path, "not a GeoTIFF")


def test_refuses_a_tiff_without_crs(tmp_path, ingested):
    path = write_tif(tmp_path / "nocrs.tif", gradient(), crs=None, transform=Affine(1, 0, 10, 0, -1, 10))
    scene = _fails(ingested, path, "no coordinate reference system")
    assert "gdal_edit" in scene.error


def test_refuses_a_tiff_without_geotransform(tmp_path, ingested):
    path = write_tif(tmp_path / "notransform.tif", gradient(), transform=Affine.identity())
    _fails(ingested, path, "no geotransform")


def test_refuses_a_plain_tiff_with_neither(tmp_path, ingested):
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 10, 10), "uint8"))
    _fails(ingested, path, "no coordinate reference system")


def test_refuses_a_truncated_tiff(tmp_path, ingested):
    data = gradient(count=3, height=1200, width=1200, dtype="uint16")
    full = write_tif(tmp_path / "full.tif", data, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    blob = full.read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(blob[: len(blob) // 2])
    scene = _fails(ingested, path, "truncated or corrupt")
    assert "upload" in scene.error


def test_refuses_a_tiff_with_garbage_after_the_header(tmp_path, ingested):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    _fails(ingested, path, "could not be read as a GeoTIFF")


def test_refuses_a_declared_size_beyond_the_limits_without_reading_pixels(tmp_path, ingested):
    # A sparse 300,000 x 300,000 file is a few kilobytes on disk; only its header is ever read.
    path = tmp_path / "huge.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=300_000,
        height=300_000,
        count=1,
        dtype="uint8",
        crs="EPSG:32643",
        transform=Affine(1, 0, 500000, 0, -1, 3100000),
        tiled=True,
        blockxsize=4096,
        blockysize=4096,
        sparse_ok=True,
        bigtiff="YES",
    ):
        pass
    assert path.stat().st_size < 1_000_000
    scene = _fails(ingested, path, "beyond this server's limits")
    assert "300000 x 300000" in scene.error


def test_limits_come_from_settings(settings, ingested):
    settings.RASTER_MAX_WIDTH = 100
    _fails(ingested, NEON, "beyond this server's limits")
    settings.RASTER_MAX_WIDTH = 200_000
    settings.RASTER_MAX_BANDS = 3
    _fails(ingested, NAIP, "at most 3 are accepted")


def test_refuses_an_all_nodata_scene(tmp_path, ingested):
    path = write_tif(tmp_path / "empty.tif", np.zeros((3, 200, 200), "uint16"), nodata=0)
    _fails(ingested, path, "no valid pixels")


def test_reingest_after_failure_replaces_the_failed_state(tmp_path, project, manager):
    path = tmp_path / "later.tif"
    shutil.copy(NEON, path)
    scene = scene_create_from_path(project=project, user=manager, source=path)
    with pytest.raises(IngestError):
        scene_ingest(scene=scene, rgb_bands=[1, 2, 9])
    assert scene.status == SceneStatus.FAILED
    scene = scene_ingest(scene=scene)
    assert scene.status == SceneStatus.READY and scene.error == ""
