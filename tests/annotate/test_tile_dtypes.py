"""The fast tile path against rio-tiler's own Reader.tile: every dtype x band count, every zoom of the scene."""

import io

import morecantile
import numpy as np
import pytest
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from annotate import storage, tiles
from tests.rasters import smooth, write_tif

pytestmark = pytest.mark.django_db
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def eroded(mask: np.ndarray, px: int) -> np.ndarray:
    """The mask less `px` pixels along its edges (and the tile's)."""
    out = np.zeros_like(mask)
    out[px:-px, px:-px] = mask[px:-px, px:-px]
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            out[px:-px, px:-px] &= mask[px + dy:mask.shape[0] - px + dy, px + dx:mask.shape[1] - px + dx]
    return out


def valid_of(image) -> np.ndarray:
    """Pixels where every band of a read image has data."""
    return ~np.ma.getmaskarray(image.array).any(axis=0)


# The other two tile paths: a geographic COG (rio-tiler's own warp) and a Web Mercator one (no warp at all).
OTHER_GRIDS = {
    "EPSG:4326": from_origin(78.0, 28.0, 1e-5, 1e-5),
    "EPSG:3857": from_origin(8_680_000.0, 3_250_000.0, 1.0, 1.0),
}


@pytest.mark.parametrize("count", (1, 3, 4))
@pytest.mark.parametrize("dtype", DTYPES)
def test_tiles_match_rio_tiler_at_every_zoom(tmp_path, ingested, dtype, count):
    # 700 x 600 px at 1 m: one overview level, zooms 16-18, so overview reads and native reads are both covered.
    check_against_rio_tiler(ingested(write_tif(tmp_path / f"{dtype}_{count}.tif", smooth(count, dtype=dtype))))


@pytest.mark.parametrize("crs", sorted(OTHER_GRIDS))
def test_float64_tiles_match_rio_tiler_in_geographic_and_web_mercator_cogs(tmp_path, ingested, crs):
    data = smooth(4, dtype="float64")
    check_against_rio_tiler(ingested(write_tif(tmp_path / "f64.tif", data, crs=crs, transform=OTHER_GRIDS[crs])))


def check_against_rio_tiler(scene):
    """Tiles of every zoom of a scene (corners and a spread) against rio-tiler's Reader.tile on its COG."""
    dtype, count = scene.dtype, scene.band_count
    assert scene.min_zoom < scene.max_zoom
    cog = storage.absolute(scene.cog_path)
    style = tiles.TileStyle.for_scene(scene.rgb_bands, scene.stretch, scene.dtype)
    reader, grid = tiles._reader(cog)
    low = np.array([r[0] for r in style.ranges])[:, None, None]
    high = np.array([r[1] for r in style.ranges])[:, None, None]
    checked = 0
    with Reader(str(cog)) as ref:
        west, south, east, north = ref.get_geographic_bounds(CRS.from_epsg(4326))
        for z in range(scene.min_zoom, scene.max_zoom + 1):
            every = list(WEB_MERCATOR.tiles(west, south, east, north, [z]))
            # The corners (the scene's edges, partly empty tiles) and a spread of the rest: at most about 6.
            for t in {every[0], every[-1], *every[:: max(1, len(every) // 4)]}:
                try:
                    want = ref.tile(t.x, t.y, z, tilesize=256, indexes=style.rgb_bands)  # rio-tiler's defaults
                except TileOutsideBounds:
                    continue
                where = f"{dtype} x {count} bands, tile {z}/{t.x}/{t.y}"
                got = tiles._read_tile(reader, grid, t.x, t.y, z, style.rgb_bands)
                want_valid, got_valid = valid_of(want), valid_of(got)
                # Bilinear (ours) and nearest (rio-tiler's default) may differ on the scene's edge pixels only.
                assert (want_valid != got_valid).mean() <= 0.02, where
                png = tiles.render_tile(cog, style, z, t.x, t.y)
                if not want_valid.any():
                    continue
                assert png is not None, f"{where}: rio-tiler has data, the tile is empty"
                rgba = np.asarray(Image.open(io.BytesIO(png))).astype(float)
                np.testing.assert_array_equal(rgba[..., 3] > 0, got_valid, err_msg=where)
                inner = eroded(want_valid & got_valid, 3)
                span = float(smooth(1, dtype="float64").max() - smooth(1, dtype="float64").min())
                diff = np.abs(got.data.astype(float) - want.data.astype(float))[:, inner]
                assert diff.size == 0 or diff.max() <= 0.03 * span + 1, where
                shown = np.clip((want.data.astype(float) - low) / (high - low) * 255, 0, 255)
                drawn = np.moveaxis(rgba[..., :3], -1, 0)
                assert np.abs(drawn - shown)[:, inner].max(initial=0) <= 10, where
                checked += 1
    assert checked >= 3
