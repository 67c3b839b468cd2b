"""Checks on an uploaded raster before any pixel is read: magic bytes, driver, georeferencing, limits."""

from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError

from .errors import IngestError

TIFF_MAGICS = {b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"II+\x00": "BigTIFF", b"MM\x00+": "BigTIFF"}

# GDAL must never go looking for sidecar files (.aux.xml, .ovr, .msk, world files) next to an upload.
SAFE_GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_PAM_ENABLED": "NO"}


@dataclass(frozen=True)
class RasterLimits:
    """Size and type limits, from settings."""

    max_width: int
    max_height: int
    max_pixels: int
    max_bands: int
    allowed_dtypes: tuple[str, ...]


@dataclass(frozen=True)
class RasterHeader:
    """What the header of an accepted raster declares."""

    width: int
    height: int
    count: int
    dtype: str
    crs: str
    geotransform: tuple[float, ...]
    data_bands: tuple[int, ...]
    colorinterp: tuple[str, ...]


def check_magic(path: Path) -> str:
    """Return "TIFF" or "BigTIFF", or refuse a file that is neither."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    kind = TIFF_MAGICS.get(head)
    if kind is None:
        raise IngestError(
            "The file is not a GeoTIFF (it does not start with the TIFF or BigTIFF signature). "
            "Upload a GeoTIFF; convert other formats first, for example with "
            "`gdal_translate -of COG input output.tif`."
        )
    return kind


def open_gtiff(path: Path):
    """Open a local file with the GTiff driver only; anything GDAL cannot parse is refused."""
    if not Path(path).is_absolute() or str(path).startswith("/vsi"):
        raise ValueError(f"refusing a non-local raster path: {path!r}")
    try:
        return rasterio.open(path, driver="GTiff")
    except RasterioError as exc:
        raise IngestError(
            f"The file could not be read as a GeoTIFF ({exc}). It may be truncated or corrupt: "
            "export it again and upload the new file."
        ) from exc


def check_header(path: Path, limits: RasterLimits) -> RasterHeader:
    """Validate a TIFF's header (signature, driver, CRS, geotransform, size, type); read no pixels."""
    check_magic(path)
    with rasterio.Env(**SAFE_GDAL_ENV), open_gtiff(path) as ds:
        if ds.driver != "GTiff":
            raise IngestError(f"Only GeoTIFF files are accepted (GDAL read this one as {ds.driver}).")
        gcps, _ = ds.gcps
        if ds.crs is None and not gcps:
            raise IngestError(
                "The GeoTIFF has no coordinate reference system (CRS), so it cannot be placed on the map. "
                "Assign one, for example `gdal_edit.py -a_srs EPSG:32643 file.tif`, and upload it again."
            )
        if gcps and ds.transform.is_identity:
            raise IngestError(
                "The GeoTIFF is georeferenced by ground control points only. Warp it to a map grid first, "
                "for example `gdalwarp -t_srs EPSG:32643 in.tif out.tif`, and upload the result."
            )
        if ds.transform.is_identity or ds.transform.is_degenerate:
            raise IngestError(
                "The GeoTIFF has no geotransform (pixel size and origin), so it cannot be placed on the map. "
                "Georeference it (for example with `gdal_translate -a_ullr ... -a_srs ...`) and upload it again."
            )
        if ds.transform.b != 0 or ds.transform.d != 0:
            # Rotated grids are valid GeoTIFF but break axis-aligned tiling and pixel boxes.
            raise IngestError(
                "The GeoTIFF's grid is rotated. Warp it to a north-up grid first "
                "(`gdalwarp in.tif out.tif`) and upload the result."
            )
        _check_limits(ds.width, ds.height, ds.count, ds.dtypes, limits)
        interps = tuple(ci.name for ci in ds.colorinterp)
        data_bands = tuple(i for i, ci in zip(ds.indexes, ds.colorinterp, strict=True) if ci != ColorInterp.alpha)
        if not data_bands:
            raise IngestError("The GeoTIFF has only an alpha band and no image data.")
        return RasterHeader(
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            crs=ds.crs.to_string(),
            geotransform=tuple(ds.transform.to_gdal()),
            data_bands=data_bands,
            colorinterp=interps,
        )


def _check_limits(width: int, height: int, count: int, dtypes: tuple[str, ...], limits: RasterLimits) -> None:
    """Refuse a raster whose declared size or type is beyond the configured limits."""
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise IngestError(
            f"The GeoTIFF declares {width} x {height} pixels, beyond this server's limits "
            f"({limits.max_width} x {limits.max_height}, {limits.max_pixels:,} pixels in all). "
            "Split it into smaller scenes (for example with `gdal_retile.py`) or ask the administrator "
            "to raise RASTER_MAX_WIDTH / RASTER_MAX_HEIGHT / RASTER_MAX_PIXELS."
        )
    if count > limits.max_bands:
        raise IngestError(
            f"The GeoTIFF has {count} bands; at most {limits.max_bands} are accepted. "
            "Keep the bands you need (`gdal_translate -b 1 -b 2 -b 3 ...`) or raise RASTER_MAX_BANDS."
        )
    if len(set(dtypes)) != 1:
        raise IngestError(f"The GeoTIFF mixes band data types ({', '.join(sorted(set(dtypes)))}); use one type.")
    if dtypes[0] not in limits.allowed_dtypes:
        raise IngestError(
            f"Band data type {dtypes[0]} is not supported (accepted: {', '.join(limits.allowed_dtypes)}). "
            "Convert it, for example `gdal_translate -ot UInt16 ...`."
        )


def default_rgb_bands(header: RasterHeader) -> tuple[int, int, int]:
    """Source bands for red, green, blue: those marked so, else the first three, else grey."""
    by_interp = {name: i for i, name in zip(range(1, header.count + 1), header.colorinterp, strict=True)}
    if all(c in by_interp for c in ("red", "green", "blue")):
        return by_interp["red"], by_interp["green"], by_interp["blue"]
    bands = header.data_bands
    if len(bands) >= 3:
        return bands[0], bands[1], bands[2]
    return bands[0], bands[0], bands[0]


def check_rgb_bands(header: RasterHeader, rgb_bands: tuple[int, ...]) -> tuple[int, int, int]:
    """Validate a user's RGB band choice (1-based source bands)."""
    if len(rgb_bands) != 3:
        raise IngestError(f"Give exactly three bands for red, green, blue (got {len(rgb_bands)}).")
    for b in rgb_bands:
        if b not in header.data_bands:
            raise IngestError(
                f"Band {b} cannot be shown: the scene's image bands are {', '.join(map(str, header.data_bands))}."
            )
    return rgb_bands[0], rgb_bands[1], rgb_bands[2]
