"""XYZ tiles (WebMercatorQuad, 256 px PNG) of a scene's COG through rio-tiler.

Open COG readers are kept per thread (rasterio datasets are not thread-safe), so a warm tile costs a
window read and a PNG encode, not a file open and header parse.
"""

import hashlib
import io
import math
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from django.conf import settings
from morecantile import Tile
from PIL import Image
from rasterio.transform import from_bounds
from rasterio.warp import calculate_default_transform, transform_bounds
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.reader import read

from .raster_checks import SAFE_GDAL_ENV

TILE_PX = 256
READERS_PER_THREAD = 32


def _gdal_options() -> dict:
    """GDAL options for tile reads: no sidecars, and a real block cache of TILE_GDAL_CACHE_MB.

    rasterio hands an integer GDAL_CACHEMAX to GDAL as bytes (512 meant a 512-byte block cache, i.e. none, and
    every tile decoded its blocks again, several times over), so the size is given in bytes.
    """
    return {**SAFE_GDAL_ENV, "GDAL_CACHEMAX": settings.TILE_GDAL_CACHE_MB * 2**20}


_local = threading.local()


def _enter_env() -> None:
    """This thread's GDAL environment, entered once (rasterio keeps environments per thread)."""
    if getattr(_local, "env", None) is None:
        # Without one, every rasterio call on the thread sets up and tears down a default environment.
        _local.env = rasterio.Env(**_gdal_options())
        _local.env.__enter__()


@dataclass(frozen=True)
class TileStyle:
    """How a scene is drawn: which COG bands are R, G, B, each one's display range, and a fill value to hide."""

    rgb_bands: tuple[int, int, int]
    ranges: tuple[tuple[float, float], ...]
    is_byte_identity: bool
    nodata: float | None = None

    @classmethod
    def for_scene(cls, rgb_bands, stretch, dtype: str, nodata: float | None = None) -> "TileStyle":
        """The style stored on a scene (`nodata`: a manager's fill value, shown transparent)."""
        rgb = tuple(int(b) for b in rgb_bands)
        ranges = tuple((float(stretch[b - 1][0]), float(stretch[b - 1][1])) for b in rgb)
        identity = dtype == "uint8" and all(r == (0.0, 255.0) for r in ranges)
        return cls(rgb_bands=rgb, ranges=ranges, is_byte_identity=identity,
                   nodata=None if nodata is None else float(nodata))

    @property
    def resampling(self) -> str:
        """Bilinear, except with a fill value: blending -9999 into its neighbours would draw a dark fringe."""
        return "bilinear" if self.nodata is None else "nearest"

    def etag_part(self) -> str:
        """A short digest of the style, for ETags."""
        return hashlib.blake2s(repr(self).encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class _Grid:
    """What rio-tiler works out with PROJ for every tile although it depends only on the COG, computed once."""

    native: Affine  # the COG's resolution in the tile CRS (rio-tiler's get_vrt_transform, step 1)
    bounds: tuple[float, float, float, float]  # the COG's footprint in the tile CRS, padded by a pixel

    @classmethod
    def of(cls, reader: Reader) -> "_Grid | None":
        """The grid of a reader's COG, or None where rio-tiler's own path must be taken."""
        ds, dst_crs = reader.dataset, reader.tms.rasterio_crs
        # Same-CRS COGs need no warp; geographic ones get latitude clamping inside rio-tiler.
        if ds.crs == dst_crs or ds.crs.is_geographic:
            return None
        native, _, _ = calculate_default_transform(ds.crs, dst_crs, ds.width, ds.height, *ds.bounds)
        left, bottom, right, top = transform_bounds(ds.crs, dst_crs, *ds.bounds, densify_pts=21)
        if not all(math.isfinite(v) for v in (left, bottom, right, top)):
            return None
        # A pixel of slack so that the footprint test never drops a tile that touches the data.
        pad_x, pad_y = abs(native.a), abs(native.e)
        return cls(native=native, bounds=(left - pad_x, bottom - pad_y, right + pad_x, top + pad_y))


def _reader(path: Path) -> tuple[Reader, "_Grid | None"]:
    """A cached, open rio-tiler Reader for this thread and its grid (reopened when the file changes)."""
    cache: OrderedDict = getattr(_local, "readers", None)
    if cache is None:
        cache = _local.readers = OrderedDict()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    entry = cache.get(key)
    if entry is not None:
        cache.move_to_end(key)
        return entry
    _enter_env()
    reader = Reader(str(path))
    entry = cache[key] = (reader, _Grid.of(reader))
    while len(cache) > READERS_PER_THREAD:
        _, (old, _) = cache.popitem(last=False)
        old.close()
    return entry


def _warp_dtype(dtype: str) -> str:
    """The working type of a reprojected read: float32 for float64 COGs.

    rio-tiler takes the warped alpha band as "opaque" only where it equals 255 exactly. Bilinear reads of a
    float64 VRT give 255.00000000000006 and 254.99999999999994 (weights summing to 1 in double), so every
    pixel of an overview-level tile was masked; float32 rounds those back to 255 and is ample for display.
    """
    return "float32" if dtype == "float64" else dtype


def _read_tile(reader: Reader, grid: "_Grid | None", x: int, y: int, z: int, indexes: tuple[int, ...],
               resampling: str = "bilinear"):
    """The same pixels as `reader.tile(...)`, without its per-tile PROJ work (footprint test, COG resolution)."""
    if grid is None:
        ds = reader.dataset
        # Same-CRS COGs are read through their mask directly; only a warp needs the float64 work-around.
        warped = ds.crs != reader.tms.rasterio_crs and ds.dtypes[0] == "float64"
        vrt = {"dtype": _warp_dtype(ds.dtypes[0])} if warped else {}
        return reader.tile(x, y, z, tilesize=TILE_PX, indexes=indexes, resampling_method=resampling, vrt_options=vrt)
    west, south, east, north = reader.tms.xy_bounds(Tile(x=x, y=y, z=z))
    left, bottom, right, top = grid.bounds
    if not (west < right and east > left and north > bottom and south < top):
        raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")
    # rio-tiler's get_vrt_transform for a reprojected, unaligned tile: the VRT has the COG's resolution
    # unless the tile is finer (overzoom), and the read resamples it to the tile size.
    out = from_bounds(west, south, east, north, TILE_PX, TILE_PX)
    x_res = out.a if abs(grid.native.a) > abs(out.a) else grid.native.a
    y_res = out.e if abs(grid.native.e) > abs(out.e) else grid.native.e
    width, height = max(1, round((east - west) / x_res)), max(1, round((south - north) / y_res))
    vrt_options = {"crs": reader.tms.rasterio_crs, "transform": from_bounds(west, south, east, north, width, height),
                   "width": width, "height": height, "dtype": _warp_dtype(reader.dataset.dtypes[0])}
    return read(reader.dataset, indexes=indexes, width=TILE_PX, height=TILE_PX, vrt_options=vrt_options,
                resampling_method=resampling)


def encode_png(rgb: np.ndarray, alpha: np.ndarray) -> bytes:
    """An 8-bit RGBA PNG of three uint8 bands (3 x H x W) and an alpha (H x W)."""
    rgba = np.empty((*alpha.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.moveaxis(rgb, 0, -1)
    rgba[..., 3] = alpha
    out = io.BytesIO()
    # zlib's run-length strategy suits PNG-filtered imagery: about 2.5x faster than GDAL's PNG driver at
    # its default level 6, and no larger (benchmarks/README.md).
    Image.fromarray(rgba).save(out, "PNG", compress_type=zlib.Z_RLE)
    return out.getvalue()


def _hide_fill(image, nodata: float | None):
    """Mask the pixels where any band holds the fill value (a value the file did not declare as nodata)."""
    if nodata is not None:
        data = image.array.data
        fill = data == np.asarray(nodata).astype(data.dtype)
        image.array.mask = np.ma.getmaskarray(image.array) | fill.any(axis=0)
    return image


def _alpha(image) -> np.ndarray:
    """255 where every band of a read image has data, else 0 (uint8 whatever the image's dtype).

    `ImageData.mask` is in the data's own range (-32768 for "no data" in int16, +-1.8e308 in float64), so it
    can be neither tested with `any()` nor cast to a PNG alpha directly.
    """
    return np.where(np.ma.getmaskarray(image.array).any(axis=0), 0, 255).astype(np.uint8)


def _encode(image, style: TileStyle, alpha: np.ndarray) -> bytes:
    """The PNG of a read image in a scene's style, transparent where there is no data."""
    if not style.is_byte_identity:
        image = image.rescale(in_range=style.ranges, out_range=((0, 255),))
    return encode_png(image.data, alpha)


def render_tile(path: Path, style: TileStyle, z: int, x: int, y: int) -> bytes | None:
    """The PNG of one tile, or None when the tile does not touch the scene."""
    reader, grid = _reader(path)
    try:
        image = _hide_fill(_read_tile(reader, grid, x, y, z, style.rgb_bands, style.resampling), style.nodata)
    except TileOutsideBounds:
        return None
    alpha = _alpha(image)
    if not alpha.any():
        return None
    return _encode(image, style, alpha)


EMPTY_PNG = encode_png(np.zeros((3, TILE_PX, TILE_PX), "uint8"), np.zeros((TILE_PX, TILE_PX), "uint8"))


def render_preview(path: Path, style: TileStyle, max_size: int = TILE_PX) -> bytes:
    """A PNG of the whole scene, at most max_size px on its longer side."""
    reader, _ = _reader(path)
    image = _hide_fill(reader.preview(indexes=style.rgb_bands, max_size=max_size), style.nodata)
    return _encode(image, style, _alpha(image))
