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
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .errors import IngestError
from .raster_checks import SAFE_GDAL_ENV, RasterHeader, open_gtiff

Progress = Callable[[float, str], None]

WINDOW_PX = 1024
BLOCK_PX = 512
STRETCH_PERCENTILES = (2.0, 98.0)
FULL_RANGE_PERCENTILES = (0.1, 99.9)
STRETCH_SAMPLE_PX = 1024


# A display range narrower than this share of 0-255 is stretched (values 0/1 of a class map would look black).
NARROW_BYTE_RANGE = 64
# A single value on this share of a band's valid pixels, far outside the others, is a fill value (-9999).
OUTLIER_MIN_FRACTION = 0.01
OUTLIER_GAP = 0.25  # its gap to the nearest other value, in spreads of the others (their 2-98 % range)
# The scene's edge pixels all one value in every band, with no mask: a collar or an undeclared fill.
COLLAR_MIN_FRACTION = 0.9


@dataclass(frozen=True)
class CogResult:
    """What the conversion measured."""

    path: Path
    valid_fraction: float
    stretch: list[list[float]]
    overview_count: int
    warnings: list[dict]


def _warning(code: str, message: str) -> dict:
    """One entry of Scene.warnings."""
    return {"code": code, "message": message}


def _palette_lut(colormap: dict, size: int) -> np.ndarray:
    """A size x 4 RGBA lookup table of a GDAL colour table (indexes it leaves out are transparent)."""
    lut = np.zeros((size, 4), dtype=np.uint8)
    for index, rgba in colormap.items():
        if 0 <= index < size:
            lut[index] = rgba
    return lut


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
        lut = _palette_lut(src.colormap(1), 65536 if header.dtype == "uint16" else 256) if header.palette else None
        # A colour table's transparent entries become the mask, like an alpha band's zeros.
        masked = _has_mask(src) or (lut is not None and bool((lut[:, 3] == 0).any()))
        profile = {
            "driver": "GTiff",
            "width": src.width,
            "height": src.height,
            "count": header.cog_band_count,
            "dtype": header.cog_dtype,
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
            if lut is None:
                dst.colorinterp = [src.colorinterp[b - 1] for b in header.data_bands]
            else:
                dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
            for i, window in enumerate(windows):
                try:
                    data = src.read(list(header.data_bands), window=window)
                    mask = src.dataset_mask(window=window) if masked else None
                    if lut is not None:
                        rgba = lut[data[0]]
                        data = np.moveaxis(rgba[..., :3], -1, 0)
                        if mask is not None:
                            mask = np.where(rgba[..., 3] == 0, 0, mask).astype(np.uint8)
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


def _band_stretch(values: np.ndarray, dtype: str, band: int) -> tuple[list[float], dict | None]:
    """One band's display range from its valid values, and a warning when a fill value dominates it."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [0.0, 1.0], None
    warning = None
    uniques, counts = np.unique(values, return_counts=True)
    mode = int(np.argmax(counts))
    mode_value, mode_fraction = float(uniques[mode]), counts[mode] / values.size
    if OUTLIER_MIN_FRACTION <= mode_fraction < 1.0:
        rest = values[values != mode_value]
        rest_low, rest_high = (float(v) for v in np.percentile(rest, STRETCH_PERCENTILES))
        spread = rest_high - rest_low
        # A fill value lies beyond every other value, with a gap to them; two-valued (class) data is no fill.
        gap = max(float(rest.min()) - mode_value, mode_value - float(rest.max()))
        if spread > 0 and gap > OUTLIER_GAP * spread:
            warning = _warning(
                "fill_value",
                f"{mode_fraction:.0%} of band {band}'s pixels are {mode_value:g}, far outside its other values "
                f"({rest_low:g} to {rest_high:g}): probably a fill value the file does not declare as nodata. "
                f"The display stretch leaves it out; set the scene's nodata to {mode_value:g} (scene page, Display) "
                "to make it transparent.",
            )
            values = rest
    low, high = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    # The data's whole range (less 0.1 % at each end): a flat background with small bright objects has
    # 2-98 % equal, yet uses 0-255; 0/1 class values do not.
    full_low, full_high = (float(v) for v in np.percentile(values, FULL_RANGE_PERCENTILES))
    if dtype == "uint8" and warning is None and full_high - full_low >= NARROW_BYTE_RANGE:
        return [0.0, 255.0], None  # wide enough to show as is (and the tile path skips rescaling)
    if high <= low:
        low, high = full_low, full_high
    if high <= low:
        high = low + 1.0
    return [low, high], warning


def _read_sample(ds) -> np.ma.MaskedArray:
    """All bands at most STRETCH_SAMPLE_PX on the longer side (served from the overviews), masked."""
    scale = max(1.0, max(ds.width, ds.height) / STRETCH_SAMPLE_PX)
    shape = (ds.count, max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
    return ds.read(out_shape=shape, masked=True)


def percentile_stretch(cog_path: Path, dtype: str, nodata: float | None = None) -> tuple[list[list[float]], list[dict]]:
    """Per-band display range (2nd-98th percentile of valid pixels; 0-255 for bytes that use most of it) and warnings.

    `nodata` (a manager's fill value) is left out like masked pixels.
    """
    with rasterio.Env(**SAFE_GDAL_ENV), rasterio.open(cog_path) as ds:
        sample = _read_sample(ds)
    stretch, warnings = [], []
    for band_no, band in enumerate(sample, start=1):
        values = band.compressed().astype("float64")
        if nodata is not None:
            values = values[values != nodata]
        band_stretch, warning = _band_stretch(values, dtype, band_no)
        stretch.append(band_stretch)
        if warning is not None:
            warnings.append(warning)
    if dtype == "uint8" and not warnings and [0.0, 255.0] in stretch:
        # Bytes are judged together: stretching the narrow bands of a colour photo alone would tint it.
        stretch = [[0.0, 255.0] for _ in stretch]
    return stretch, warnings


def collar_warning(cog_path: Path) -> dict | None:
    """A warning when a scene without any mask has edges of one constant value (a collar an external mask hid)."""
    with rasterio.Env(**SAFE_GDAL_ENV), rasterio.open(cog_path) as ds:
        if _has_mask(ds):
            return None
        sample = _read_sample(ds).filled(0)
    edges = np.concatenate([sample[:, 0, :], sample[:, -1, :], sample[:, :, 0], sample[:, :, -1]], axis=1)
    uniques, counts = np.unique(edges.T, axis=0, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] / edges.shape[1] < COLLAR_MIN_FRACTION:
        return None
    value = float(uniques[top][0]) if (uniques[top] == uniques[top][0]).all() else None
    shown = f"{value:g}" if value is not None else ", ".join(f"{v:g}" for v in uniques[top])
    return _warning(
        "unmasked_collar",
        f"The scene's edges are a constant {shown} with no mask or nodata, so they show as an opaque border. "
        "If the file came with an external mask (a .msk sidecar), embed it and upload the result: "
        "`gdal_translate -co TILED=YES --config GDAL_TIFF_INTERNAL_MASK YES in.tif out.tif` (run next to "
        "in.tif.msk). "
        + (f"Or set the scene's nodata to {value:g} (scene page, Display)." if value is not None else ""),
    )


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
        stretch, warnings = percentile_stretch(cog_path, header.cog_dtype)
        if header.palette:  # the colour table's colours are shown as they are
            stretch, warnings = [[0.0, 255.0]] * 3, []
        collar = collar_warning(cog_path)
        if collar is not None:
            warnings.append(collar)
    except BaseException:
        cog_path.unlink(missing_ok=True)
        raise
    finally:
        tmp_path.unlink(missing_ok=True)
    with rasterio.open(cog_path) as ds:
        overviews = len(ds.overviews(1))
    return CogResult(path=cog_path, valid_fraction=valid_fraction, stretch=stretch, overview_count=overviews,
                     warnings=warnings)
