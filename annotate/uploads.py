"""Upload handling: files stream to disk, stop at UPLOAD_MAX_BYTES or a full disk, and never outlive their request."""

import contextlib
from pathlib import Path

import rasterio
from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError

from .errors import IngestError, InsufficientStorage
from .raster_checks import SAFE_GDAL_ENV, check_magic, open_gtiff
from .storage import free_bytes, is_disk_full, mib

# Room kept beyond a declared upload: the multipart framing is in Content-Length, a few files sit beside it.
UPLOAD_SPACE_MARGIN_BYTES = 1024 * 1024


def upload_disk_full_message(needed: int | None = None) -> str:
    """What the user is told when an upload does not fit on the server's disk."""
    free = free_bytes(settings.UPLOAD_TMP_DIR)
    need = f" (the upload needs {mib(needed)}, {mib(free)} are free)" if needed else f" ({mib(free)} free)"
    return (f"The server is out of disk space{need}, so the upload was not stored. Nothing was kept; tell the "
            "administrator to free space on the server's data directory, then upload again.")


def upload_space_require(content_length: int) -> None:
    """Refuse (507) an upload whose declared size cannot fit, before a byte of its body is read."""
    if content_length and content_length + UPLOAD_SPACE_MARGIN_BYTES > free_bytes(settings.UPLOAD_TMP_DIR):
        raise InsufficientStorage(upload_disk_full_message(content_length))


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    """Stream every upload to a temporary file; stop (and delete it) past UPLOAD_MAX_BYTES or on a full disk.

    Views refuse a declared Content-Length over the limit or over the free space before the body is read;
    this guards the rest. UploadCleanupMiddleware deletes whatever a request that ended early left behind.
    """

    def new_file(self, *args, **kwargs):
        """Start counting a new file."""
        self.received = 0
        settings.UPLOAD_TMP_DIR.mkdir(parents=True, exist_ok=True)
        try:
            return super().new_file(*args, **kwargs)
        except OSError as exc:
            self._stop_if_disk_full(exc)
            raise

    def receive_data_chunk(self, raw_data, start):
        """Write a chunk unless the file has grown past the limit or the disk is full."""
        self.received += len(raw_data)
        if self.received > settings.UPLOAD_MAX_BYTES:
            self.request.upload_too_large = True
            self.discard()
            raise StopUpload(connection_reset=False)
        try:
            return super().receive_data_chunk(raw_data, start)
        except OSError as exc:
            self._stop_if_disk_full(exc)
            raise

    def file_complete(self, file_size):
        """Finish the file; its buffered last bytes may be the ones that do not fit."""
        try:
            return super().file_complete(file_size)
        except OSError as exc:
            self._stop_if_disk_full(exc)
            raise

    def _stop_if_disk_full(self, exc: OSError) -> None:
        """On a full disk: mark the request, delete the partial file at once and skip the rest of the body."""
        if is_disk_full(exc):
            self.request.upload_no_space = True
            self.discard()
            raise StopUpload(connection_reset=False) from exc

    def discard(self) -> None:
        """Close and delete this handler's temporary file (if any): it is not needed past the request."""
        file = getattr(self, "file", None)
        if file is None:
            return
        path = Path(file.temporary_file_path())
        # Closing flushes the buffer, which fails on a full disk; the descriptor is closed anyway.
        with contextlib.suppress(OSError):
            file.close()
        path.unlink(missing_ok=True)


class UploadCleanupMiddleware:
    """Delete the request's upload temp files when it ends, however it ends (done, error, client gone).

    A view moves the files it keeps; without this, a body cut off mid-file or a parse error left its
    temporary file behind until garbage collection, which a quiet server may not run for hours.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            return self.get_response(request)
        finally:
            # The private list: the public property would create handlers for a request that had none.
            for handler in getattr(request, "_upload_handlers", None) or []:
                if isinstance(handler, SizeLimitedUploadHandler):
                    handler.discard()


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
