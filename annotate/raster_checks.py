"""Checks on an uploaded raster before any pixel is read: magic bytes, driver, georeferencing, limits."""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.warp import transform as warp_transform

from .errors import IngestError
from .geo import px_to_crs

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
    # A one-band raster with a colour table: its COG holds the expanded red, green, blue (uint8) instead.
    palette: bool = False

    @property
    def cog_dtype(self) -> str:
        """The data type of the COG's bands."""
        return "uint8" if self.palette else self.dtype

    @property
    def cog_band_count(self) -> int:
        """How many bands the COG has."""
        return 3 if self.palette else len(self.data_bands)


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
        check_crs_supported(ds.crs, ds.transform, ds.width, ds.height)
        interps = tuple(ci.name for ci in ds.colorinterp)
        data_bands = tuple(i for i, ci in zip(ds.indexes, ds.colorinterp, strict=True) if ci != ColorInterp.alpha)
        if not data_bands:
            raise IngestError("The GeoTIFF has only an alpha band and no image data.")
        palette = len(data_bands) == 1 and ds.colorinterp[data_bands[0] - 1] == ColorInterp.palette
        if palette and ds.dtypes[0] not in ("uint8", "uint16"):
            raise IngestError(
                f"The GeoTIFF has a colour table on {ds.dtypes[0]} data; colour tables are read on 8- and 16-bit "
                "bands only. Expand it to RGB first (`gdal_translate -expand rgb in.tif out.tif`) and upload that."
            )
        return RasterHeader(
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            crs=ds.crs.to_string(),
            geotransform=tuple(ds.transform.to_gdal()),
            data_bands=data_bands,
            colorinterp=interps,
            palette=palette,
        )


# Earth ellipsoids (WGS84, GRS80, Clarke, Bessel, spheres used by web maps) lie within this semi-major axis range.
EARTH_SEMI_MAJOR_M = (6_370_000.0, 6_380_000.0)
REPROJECT_HINT = (
    "Reproject it to a supported CRS first, for example "
    "`gdalwarp -t_srs EPSG:4326 in.tif out.tif` (or the UTM zone of the area, e.g. `-t_srs EPSG:32643`), "
    "and upload the result."
)


def crs_short_name(crs: CRS) -> str:
    """A human name for a CRS ("WGS 84 / UTM zone 43N (EPSG:32643)"), never its whole WKT or PROJJSON."""
    try:
        proj = pyproj.CRS.from_wkt(crs.to_wkt())
    except pyproj.exceptions.CRSError:
        return "an unreadable CRS"
    name = proj.name
    if not name or name == "unknown":
        method = proj.coordinate_operation.method_name if proj.coordinate_operation else None
        name = f"a {method} projection" if method else f"an unnamed {proj.type_name}"
    authority = proj.to_authority(min_confidence=90)
    if authority:
        name += f" ({authority[0]}:{authority[1]})"
    return name[:120]


def check_crs_supported(crs: CRS, transform, width: int, height: int) -> None:
    """Refuse a CRS that is not on Earth or whose transform to EPSG:4326 fails anywhere on the scene's outline.

    Checked on the header alone, so that a geostationary full disk (corners in space) or a Mars CRS is refused
    with a message naming the CRS instead of failing deep inside the conversion with PROJ's error text.
    """
    name = crs_short_name(crs)
    try:
        semi_major = pyproj.CRS.from_wkt(crs.to_wkt()).ellipsoid.semi_major_metre
    except (pyproj.exceptions.CRSError, AttributeError):
        semi_major = None
    if semi_major is not None and not EARTH_SEMI_MAJOR_M[0] <= semi_major <= EARTH_SEMI_MAJOR_M[1]:
        raise IngestError(
            f"The GeoTIFF's coordinate reference system, {name}, is not an Earth CRS (its ellipsoid's radius is "
            f"{semi_major:,.0f} m); scenes are placed on an Earth map. Only Earth imagery can be ingested."
        )
    # The outline (corners and edge midpoints) and the centre: every one must land on Earth.
    fx = np.array([0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.5]) * width
    fy = np.array([0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.5]) * height
    xs, ys = px_to_crs(transform, fx, fy)
    try:
        lons, lats = warp_transform(crs, "EPSG:4326", list(xs), list(ys))
    except Exception as exc:  # noqa: BLE001 - PROJ failures surface as several CPLE_* and ValueError types
        raise IngestError(
            f"The GeoTIFF's coordinate reference system, {name}, cannot be converted to longitude/latitude "
            f"(EPSG:4326). {REPROJECT_HINT}"
        ) from exc
    if not all(math.isfinite(v) and abs(v) <= 1e3 for v in (*lons, *lats)) or any(abs(v) > 90.0 for v in lats):
        raise IngestError(
            f"Parts of the scene cannot be placed on Earth in its coordinate reference system, {name} "
            f"(for a geostationary view, the corners lie off the Earth's disk). {REPROJECT_HINT} "
            "Crop it to the area you need with `-te` if the reprojection fails."
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
    if header.palette:
        return 1, 1, 1  # the colour table's red, green, blue (COG bands 1, 2, 3; see scene_ingest)
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
