"""Windowed conversion of an accepted GeoTIFF into a COG with an internal mask and overviews.

The scene is never held in memory whole: a first pass copies it window by window into a tiled
GeoTIFF (dropping any alpha band into the internal mask, checking that every block decodes and
counting valid pixels); GDAL's COG driver then writes the final file with overviews.
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .errors import IngestError
from .raster_checks import SAFE_GDAL_ENV, RasterHeader, open_gtiff

Progress = Callable[[float, str], None]

WINDOW_PX = 1024
BLOCK_PX = 512
STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_SAMPLE_PX = 1024


@dataclass(frozen=True)
class CogResult:
    """What the conversion measured."""

    path: Path
    valid_fraction: float
    stretch: list[list[float]]
    overview_count: int


def iter_windows(width: int, height: int, size: int = WINDOW_PX) -> Iterator[Window]:
    """Row-major windows of at most size x size pixels covering the raster."""
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Window(col, row, min(size, width - col), min(size, height - row))


def _has_mask(ds) -> bool:
    """Whether any band carries nodata, alpha or a mask (so the output needs an internal mask)."""
    return any(flags != [MaskFlags.all_valid] for flags in ds.mask_flag_enums)


def write_masked_copy(src_path: Path, tmp_path: Path, header: RasterHeader, progress: Progress) -> float:
    """Copy the data bands window by window into a tiled GeoTIFF with an internal mask; return valid fraction."""
    with rasterio.Env(**SAFE_GDAL_ENV, GDAL_TIFF_INTERNAL_MASK=True), open_gtiff(src_path) as src:
        masked = _has_mask(src)
        profile = {
            "driver": "GTiff",
            "width": src.width,
            "height": src.height,
            "count": len(header.data_bands),
            "dtype": header.dtype,
            "crs": src.crs,
            "transform": src.transform,
            "tiled": True,
            "blockxsize": BLOCK_PX,
            "blockysize": BLOCK_PX,
            "compress": "ZSTD",
            "zstd_level": 1,
            "bigtiff": "IF_SAFER",
        }
        windows = list(iter_windows(src.width, src.height))
        valid = 0
        with rasterio.open(tmp_path, "w", **profile) as dst:
            dst.colorinterp = [src.colorinterp[b - 1] for b in header.data_bands]
            for i, window in enumerate(windows):
                try:
                    data = src.read(list(header.data_bands), window=window)
                    mask = src.dataset_mask(window=window) if masked else None
                except RasterioError as exc:
                    raise IngestError(
                        f"Pixels at rows {window.row_off}-{window.row_off + window.height} could not be decoded "
                        f"({exc}). The file is truncated or corrupt: export it again and upload the new file."
                    ) from exc
                dst.write(data, window=window)
                if mask is not None:
                    dst.write_mask(mask, window=window)
                    valid += int(np.count_nonzero(mask))
                else:
                    valid += window.width * window.height
                progress((i + 1) / len(windows), f"Copied {i + 1} of {len(windows)} windows")
    return valid / (header.width * header.height)


def overview_levels(width: int, height: int) -> int:
    """How many 2x overviews bring the larger side under one block."""
    return max(0, math.ceil(math.log2(max(width, height) / BLOCK_PX)))


def write_cog(tmp_path: Path, cog_path: Path) -> None:
    """Write the final COG (deflate with predictor, 512 px blocks, averaged overviews, internal mask)."""
    with rasterio.Env(**SAFE_GDAL_ENV, GDAL_NUM_THREADS="ALL_CPUS"):
        rasterio.shutil.copy(
            str(tmp_path),
            str(cog_path),
            driver="COG",
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            BLOCKSIZE=BLOCK_PX,
            OVERVIEW_RESAMPLING="AVERAGE",
            RESAMPLING="AVERAGE",
            BIGTIFF="IF_SAFER",
            NUM_THREADS="ALL_CPUS",
        )


def percentile_stretch(cog_path: Path, dtype: str) -> list[list[float]]:
    """Per-band display range: 0-255 for 8-bit, else the 2nd-98th percentile of valid pixels (from overviews)."""
    with rasterio.Env(**SAFE_GDAL_ENV), rasterio.open(cog_path) as ds:
        if dtype == "uint8":
            return [[0.0, 255.0] for _ in ds.indexes]
        scale = max(ds.width, ds.height) / STRETCH_SAMPLE_PX
        shape = (ds.count, max(1, round(ds.height / max(scale, 1))), max(1, round(ds.width / max(scale, 1))))
        sample = ds.read(out_shape=shape, masked=True)
    stretch = []
    for band in sample:
        values = band.compressed().astype("float64")
        values = values[np.isfinite(values)]
        if values.size == 0:
            stretch.append([0.0, 1.0])
            continue
        low, high = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
        if high <= low:
            high = low + 1.0
        stretch.append([low, high])
    return stretch


def convert_to_cog(src_path: Path, cog_path: Path, header: RasterHeader, progress: Progress) -> CogResult:
    """Convert an accepted GeoTIFF to a COG; refuses corrupt and all-nodata scenes."""
    tmp_path = cog_path.with_name(cog_path.stem + ".partial.tif")
    try:
        valid_fraction = write_masked_copy(src_path, tmp_path, header, lambda f, m: progress(0.7 * f, m))
        if valid_fraction == 0:
            raise IngestError(
                "The scene has no valid pixels: every pixel is nodata, transparent or masked. "
                "Check the file's nodata value and mask (gdalinfo -stats) and upload a scene with imagery."
            )
        progress(0.7, "Writing the cloud-optimised GeoTIFF and its overviews")
        write_cog(tmp_path, cog_path)
        progress(0.95, "Measuring the display stretch")
        stretch = percentile_stretch(cog_path, header.dtype)
    except BaseException:
        cog_path.unlink(missing_ok=True)
        raise
    finally:
        tmp_path.unlink(missing_ok=True)
    with rasterio.open(cog_path) as ds:
        overviews = len(ds.overviews(1))
    return CogResult(path=cog_path, valid_fraction=valid_fraction, stretch=stretch, overview_count=overviews)
