"""Embed a whole scene tile by tile into an on-disk token grid, with prefetching, progress and cancellation."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import Cancelled
from .grid import GridMeta, GridStore, grid_key, is_complete
from .tiling import TilePlan, grid_shape, plan_tiles

log = logging.getLogger(__name__)

# read_rgb(col_off, row_off, width, height, out_w, out_h) -> (out_h, out_w, 3) uint8, native-px window.
ReadRGB = Callable[[int, int, int, int, int, int], np.ndarray]
Progress = Callable[[float, str], None]


class TileEmbedder(Protocol):
    """What embed_scene needs from an embedder (Embedder, or a deterministic stand-in in tests)."""

    spec: Any  # has .key, .patch_size, .hidden_size, .describe()
    batch_size: int

    def embed_tiles(self, tiles_rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, H/p, W/p, C) float32."""
        ...


def _add_time(timings: dict | None, name: str, seconds: float) -> None:
    """Accumulate seconds under `name` (timings may be shared by several phases of one job)."""
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + seconds


@dataclass
class _Batch:
    """Tiles read by the prefetch thread, with the time spent reading and stacking them."""

    plans: Sequence[TilePlan]
    tiles_rgb: np.ndarray
    read_s: float
    stack_s: float


def _read_batch(read_rgb: ReadRGB, plans: Sequence[TilePlan]) -> _Batch:
    """Read and stack one batch of tiles (runs on the prefetch thread)."""
    t0 = time.perf_counter()
    first = plans[0]
    out = np.empty((len(plans), first.out_h_px, first.out_w_px, 3), dtype=np.uint8)
    read_s = 0.0
    for i, p in enumerate(plans):
        t_read = time.perf_counter()
        rgb = read_rgb(p.col_off_px, p.row_off_px, p.width_px, p.height_px, p.out_w_px, p.out_h_px)
        read_s += time.perf_counter() - t_read
        if rgb.shape != (p.out_h_px, p.out_w_px, 3) or rgb.dtype != np.uint8:
            expected = (p.out_h_px, p.out_w_px, 3)
            raise ValueError(f"read_rgb returned {rgb.shape} {rgb.dtype}, expected {expected} uint8")
        out[i] = rgb
    return _Batch(plans, out, read_s, time.perf_counter() - t0 - read_s)


def effective_tile_px(tile_px: int, patch_size: int) -> int:
    """Largest multiple of the patch size not above tile_px (518 -> 518 at p=14, 512 at p=16)."""
    return max(patch_size, tile_px - tile_px % patch_size)


def embed_scene(
    *,
    read_rgb: ReadRGB,
    scene_w_px: int,
    scene_h_px: int,
    embedder: TileEmbedder,
    out_dir: Path,
    scale: float = 1.0,
    tile_px: int = 518,
    margin_patches: int = 4,
    preprocessing: dict,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    timings: dict | None = None,
) -> GridMeta:
    """Fill out_dir with the scene's patch-token grid (reused as is when complete with the same key).

    Memory is bounded by one batch of tiles plus one prefetched batch. timings accumulates seconds under
    "read" (reader thread, overlapped with the forward pass), "read_wait" (the part not hidden by it),
    "preprocess" (batch assembly), "forward" (embed_tiles incl. normalisation and transfers), "write" and
    "total", the tile count under "tiles" and, when an interrupted run is resumed, the tiles it had already
    written (and are not embedded again) under "tiles_skipped".
    """
    t_start = time.perf_counter()
    spec = embedder.spec
    patch = int(spec.patch_size)
    tile_px = effective_tile_px(tile_px, patch)
    key = grid_key(
        embedder_key=spec.key,
        preprocessing=preprocessing,
        scale=scale,
        tile_px=tile_px,
        margin_patches=margin_patches,
        scene_width_px=scene_w_px,
        scene_height_px=scene_h_px,
    )
    if is_complete(out_dir, key):
        meta = GridMeta.load(Path(out_dir) / "meta.json")
        if progress:
            progress(1.0, "patch embeddings already computed")
        return meta

    cell_px = patch / scale
    grid_h, grid_w = grid_shape(scene_w_px, scene_h_px, cell_px)
    meta = GridMeta(
        grid_h=grid_h,
        grid_w=grid_w,
        dim=int(spec.hidden_size),
        cell_px=cell_px,
        scale=float(scale),
        tile_px=tile_px,
        margin_patches=margin_patches,
        scene_width_px=int(scene_w_px),
        scene_height_px=int(scene_h_px),
        embedder=spec.describe(),
        preprocessing=preprocessing,
        key=key,
    )
    plans = plan_tiles(scene_w_px, scene_h_px, patch, scale, tile_px, margin_patches)
    store = GridStore(out_dir)
    grid = store.create(meta)
    tiles_done = store.tiles_done(len(plans))
    skipped = int(tiles_done.sum())
    todo = [i for i in range(len(plans)) if not tiles_done[i]]
    batch_size = max(1, int(embedder.batch_size))
    batch_ids = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    batches = [[plans[i] for i in ids] for ids in batch_ids]
    written: list[int] = []  # tiles written since the last flush
    done = skipped
    log.info(
        "embedding %dx%d px scene: %d tiles (%d already on disk), grid %dx%d",
        scene_w_px, scene_h_px, len(plans), skipped, grid_h, grid_w,
    )

    # One reader thread: GDAL reads of batch k+1 overlap the forward pass of batch k; a single thread
    # also keeps every use of the (not thread-safe) dataset handle sequential.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-reader") as pool:
        pending: Future[_Batch] | None = pool.submit(_read_batch, read_rgb, batches[0]) if batches else None
        try:
            for index in range(len(batches)):
                if should_cancel is not None and should_cancel():
                    raise Cancelled("embedding cancelled")
                t_wait = time.perf_counter()
                batch = pending.result()
                wait_s = time.perf_counter() - t_wait
                pending = pool.submit(_read_batch, read_rgb, batches[index + 1]) if index + 1 < len(batches) else None
                _add_time(timings, "read", batch.read_s)
                _add_time(timings, "read_wait", wait_s)
                _add_time(timings, "preprocess", batch.stack_s)

                t0 = time.perf_counter()
                tokens = embedder.embed_tiles(batch.tiles_rgb)
                _add_time(timings, "forward", time.perf_counter() - t0)
                first = batch.plans[0]
                expected = (len(batch.plans), first.out_h_px // patch, first.out_w_px // patch, meta.dim)
                if tokens.shape != expected:
                    raise ValueError(f"embedder returned {tokens.shape}, expected {expected}")

                t0 = time.perf_counter()
                for b, p in enumerate(batch.plans):
                    grid[p.grid_row0 : p.grid_row1, p.grid_col0 : p.grid_col1] = tokens[
                        b, p.tok_row0 : p.tok_row0 + p.owned_h, p.tok_col0 : p.tok_col0 + p.owned_w
                    ]
                written.extend(batch_ids[index])
                if any(p.grid_col1 == grid_w for p in batch.plans):
                    # A row of tiles is finished: its tokens go to disk and leave memory (peak RSS stays
                    # bounded by the batch, not the grid); then they are listed as done, for a resume.
                    store.release(grid)
                    tiles_done[written] = True
                    written.clear()
                    store.mark_tiles_done(tiles_done)
                _add_time(timings, "write", time.perf_counter() - t0)
                done += len(batch.plans)
                if progress:
                    progress(done / len(plans), f"embedded {done}/{len(plans)} tiles")
        finally:
            if pending is not None:
                pending.cancel()
    t0 = time.perf_counter()
    store.mark_complete(meta, grid)
    del grid
    _add_time(timings, "write", time.perf_counter() - t0)
    _add_time(timings, "total", time.perf_counter() - t_start)
    if timings is not None:
        timings["tiles"] = timings.get("tiles", 0) + len(plans)
        if skipped:
            timings["tiles_skipped"] = timings.get("tiles_skipped", 0) + skipped
    return meta


class RasterioRGBReader:
    """read_rgb over a (COG) raster: three bands, linear stretch to uint8, zero outside the scene and at nodata.

    stretch[i] = (lo, hi) for band i+1 of the file. Reads are serialised by a lock because one GDAL
    dataset handle must not be used by two threads at once.
    """

    def __init__(
        self,
        cog_path: Path | str,
        rgb_bands: tuple[int, int, int],
        stretch: Sequence[Sequence[float]],
        cache_mb: int = 256,
    ):
        import rasterio

        # No directory listing of the COG's folder (slow on network FS), and a bounded block cache: GDAL's
        # default is 5% of RAM, which a 20k x 20k scene read tile by tile fills for nothing (tiles are read
        # once, in order; only a row of blocks is ever worth keeping).
        self._gdal_options = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": cache_mb * 2**20}
        with rasterio.Env(**self._gdal_options):
            self._ds = rasterio.open(cog_path)
        self.width, self.height = self._ds.width, self._ds.height
        self.bands = tuple(int(b) for b in rgb_bands)
        if len(self.bands) != 3 or not all(1 <= b <= self._ds.count for b in self.bands):
            raise ValueError(f"rgb_bands {rgb_bands} invalid for a {self._ds.count}-band raster")
        lo = np.array([float(stretch[b - 1][0]) for b in self.bands], dtype=np.float32)
        hi = np.array([float(stretch[b - 1][1]) for b in self.bands], dtype=np.float32)
        self._lo = lo[:, None, None]
        self._gain = (255.0 / np.maximum(hi - lo, 1e-6))[:, None, None]
        self._lock = threading.Lock()

    def __call__(self, col_off: int, row_off: int, width: int, height: int, out_w: int, out_h: int) -> np.ndarray:
        """(out_h, out_w, 3) uint8 of the native window resampled (bilinear); zero-padded outside the raster."""
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        out = np.zeros((out_h, out_w, 3), dtype=np.uint8)
        sx, sy = out_w / width, out_h / height
        # Read only the part inside the raster and paste it: cheaper than a boundless read (a VRT) per tile.
        ix0, iy0 = max(col_off, 0), max(row_off, 0)
        ix1, iy1 = min(col_off + width, self.width), min(row_off + height, self.height)
        if ix1 <= ix0 or iy1 <= iy0:
            return out
        ox0, oy0 = round((ix0 - col_off) * sx), round((iy0 - row_off) * sy)
        ox1, oy1 = round((ix1 - col_off) * sx), round((iy1 - row_off) * sy)
        if ox1 <= ox0 or oy1 <= oy0:
            return out
        with self._lock, rasterio.Env(**self._gdal_options):
            data = self._ds.read(
                indexes=list(self.bands),
                window=Window(ix0, iy0, ix1 - ix0, iy1 - iy0),
                out_shape=(3, oy1 - oy0, ox1 - ox0),
                resampling=Resampling.bilinear,
                masked=True,
            )
        values = (np.asarray(data.data, dtype=np.float32) - self._lo) * self._gain
        values += 0.5  # round, not truncate, in the uint8 cast below
        np.clip(values, 0, 255, out=values)
        stretched = values.astype(np.uint8)
        mask = np.ma.getmaskarray(data)
        if mask.any():
            stretched[mask] = 0
        out[oy0:oy1, ox0:ox1] = stretched.transpose(1, 2, 0)
        return out

    def close(self) -> None:
        """Close the dataset."""
        if self._ds is not None:
            self._ds.close()
            self._ds = None

    def __enter__(self) -> RasterioRGBReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rasterio_rgb_reader(
    cog_path: Path | str, rgb_bands: tuple[int, int, int], stretch: Sequence[Sequence[float]]
) -> RasterioRGBReader:
    """A read_rgb callable over a raster file; close() it (or use it as a context manager) when done."""
    return RasterioRGBReader(cog_path, rgb_bands, stretch)
