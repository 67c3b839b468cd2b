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
