"""XYZ tiles (WebMercatorQuad, 256 px PNG) of a scene's COG through rio-tiler.

Open COG readers are kept per thread (rasterio datasets are not thread-safe), so a warm tile costs a
window read and a PNG encode, not a file open and header parse.
"""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from .raster_checks import SAFE_GDAL_ENV

TILE_PX = 256
READERS_PER_THREAD = 32
_local = threading.local()
_gdal_env = None


def _env() -> rasterio.Env:
    """One GDAL environment for tile reads (block cache shared by the process)."""
    global _gdal_env
    if _gdal_env is None:
        _gdal_env = rasterio.Env(**SAFE_GDAL_ENV, GDAL_CACHEMAX=512)
        _gdal_env.__enter__()
    return _gdal_env


@dataclass(frozen=True)
class TileStyle:
    """How a scene is drawn: which COG bands are R, G, B and each one's display range."""

    rgb_bands: tuple[int, int, int]
    ranges: tuple[tuple[float, float], ...]
    is_byte_identity: bool

    @classmethod
    def for_scene(cls, rgb_bands, stretch, dtype: str) -> "TileStyle":
        """The style stored on a scene."""
        rgb = tuple(int(b) for b in rgb_bands)
        ranges = tuple((float(stretch[b - 1][0]), float(stretch[b - 1][1])) for b in rgb)
        identity = dtype == "uint8" and all(r == (0.0, 255.0) for r in ranges)
        return cls(rgb_bands=rgb, ranges=ranges, is_byte_identity=identity)

    def etag_part(self) -> str:
        """A short digest of the style, for ETags."""
        return hashlib.blake2s(repr(self).encode(), digest_size=6).hexdigest()


def _reader(path: Path) -> Reader:
    """A cached, open rio-tiler Reader for this thread (reopened when the file changes)."""
    cache: OrderedDict = getattr(_local, "readers", None)
    if cache is None:
        cache = _local.readers = OrderedDict()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    reader = cache.get(key)
    if reader is not None:
        cache.move_to_end(key)
        return reader
    _env()
    reader = Reader(str(path))
    cache[key] = reader
    while len(cache) > READERS_PER_THREAD:
        _, old = cache.popitem(last=False)
        old.close()
    return reader


def render_tile(path: Path, style: TileStyle, z: int, x: int, y: int) -> bytes | None:
    """The PNG of one tile, or None when the tile does not touch the scene."""
    reader = _reader(path)
    try:
        image = reader.tile(x, y, z, tilesize=TILE_PX, indexes=style.rgb_bands, resampling_method="bilinear")
    except TileOutsideBounds:
        return None
    if not image.mask.any():
        return None
    if not style.is_byte_identity:
        image = image.rescale(in_range=style.ranges, out_range=((0, 255),))
    return image.render(img_format="PNG", add_mask=True)


def _empty_png() -> bytes:
    """A fully transparent 256 px PNG."""
    from rio_tiler.utils import render

    return render(np.zeros((1, TILE_PX, TILE_PX), dtype="uint8"), mask=np.zeros((TILE_PX, TILE_PX), "uint8"),
                  img_format="PNG")


EMPTY_PNG = _empty_png()


def render_preview(path: Path, style: TileStyle, max_size: int = TILE_PX) -> bytes:
    """A PNG of the whole scene, at most max_size px on its longer side."""
    image = _reader(path).preview(indexes=style.rgb_bands, max_size=max_size)
    if not style.is_byte_identity:
        image = image.rescale(in_range=style.ranges, out_range=((0, 255),))
    return image.render(img_format="PNG", add_mask=True)
