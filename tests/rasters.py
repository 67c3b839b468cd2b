"""Synthetic GeoTIFFs for tests, good and bad, written with rasterio into a temporary directory."""

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

UTM43 = "EPSG:32643"
ORIGIN = (500000.0, 3100000.0)  # somewhere in India, UTM 43N


def write_tif(path: Path, data: np.ndarray, *, crs=UTM43, transform=None, nodata=None, photometric=None, **extra):
    """Write (bands, rows, cols) data as a GeoTIFF; crs/transform None leave them out."""
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name}
    if crs is not None:
        profile["crs"] = crs
    if transform is not None or crs is not None:
        profile["transform"] = transform or from_origin(*ORIGIN, 1.0, 1.0)
    if nodata is not None:
        profile["nodata"] = nodata
    if photometric:
        profile["photometric"] = photometric
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def gradient(count=3, height=300, width=400, dtype="uint16", scale=4000) -> np.ndarray:
    """A smooth multi-band image with a known value at every pixel."""
    rows, cols = np.mgrid[0:height, 0:width]
    bands = [((rows * (b + 1) + cols) % 1000) * (scale / 1000) for b in range(count)]
    return np.stack(bands).astype(dtype)


def smooth(count=3, height=600, width=700, dtype="uint16", low=10.0, high=200.0) -> np.ndarray:
    """A smooth ramp per band (no wrap-around edges), so bilinear and nearest reads differ by little."""
    rows, cols = np.mgrid[0:height, 0:width]
    ramp = (rows / height + cols / width) / 2
    bands = [low + (high - low) * (ramp * (1 - 0.2 * b) + 0.2 * b) for b in range(count)]
    return np.stack(bands).astype(dtype)


def write_paletted(path: Path, indexes: np.ndarray, colormap: dict, **extra) -> Path:
    """A one-band uint8 GeoTIFF with a colour table (palette interpretation)."""
    write_tif(path, indexes[np.newaxis].astype("uint8"), photometric="palette", **extra)
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, colormap)
    return path


def write_across_antimeridian(path: Path, width=200, height=150, pixel_m=100.0) -> Path:
    """A UTM 60S scene near Fiji whose middle column lies on 180 degrees."""
    from rasterio.warp import transform as warp_transform

    crs = "EPSG:32760"
    (x,), (y,) = warp_transform("EPSG:4326", crs, [180.0], [-17.0])
    transform = from_origin(x - width / 2 * pixel_m, y + height / 2 * pixel_m, pixel_m, pixel_m)
    return write_tif(path, gradient(count=3, height=height, width=width, dtype="uint8", scale=250),
                     crs=crs, transform=transform)


GEOSTATIONARY = "+proj=geos +h=35785831 +lon_0=0 +datum=WGS84 +units=m +sweep=y"
MARS_2000 = (
    'GEOGCS["Mars 2000",DATUM["D_Mars_2000",SPHEROID["Mars_2000_IAU_IAG",3396190,169.894447223612]],'
    'PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]]'
)
