"""Upload handling: files stream to disk and stop at UPLOAD_MAX_BYTES; a header read to refuse bad requests early."""

from pathlib import Path

import rasterio
from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError

from .errors import IngestError
from .raster_checks import SAFE_GDAL_ENV, check_magic, open_gtiff


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    """Stream every upload to a temporary file; stop keeping it once it passes UPLOAD_MAX_BYTES.

    Views refuse a declared Content-Length over the limit before the body is read; this guards the rest.
    """

    def new_file(self, *args, **kwargs):
        """Start counting a new file."""
        self.received = 0
        settings.UPLOAD_TMP_DIR.mkdir(parents=True, exist_ok=True)
        return super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        """Write a chunk unless the file has grown past the limit."""
        self.received += len(raw_data)
        if self.received > settings.UPLOAD_MAX_BYTES:
            self.request.upload_too_large = True
            self.file.close()
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)


def raster_data_bands(path: Path | str | None) -> tuple[int, ...] | None:
    """The image (non-alpha) band numbers of a GeoTIFF by its header, or None when it cannot be read here.

    Only the header is read. Anything unreadable is left to the ingest job, which says what is wrong.
    """
    if not path:
        return None
    try:
        check_magic(Path(path))
        with rasterio.Env(**SAFE_GDAL_ENV), open_gtiff(Path(path)) as ds:
            return tuple(i for i, ci in zip(ds.indexes, ds.colorinterp, strict=True) if ci != ColorInterp.alpha)
    except (IngestError, RasterioError, OSError, ValueError):
        return None
