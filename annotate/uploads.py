"""Upload handling: files stream to disk and stop at UPLOAD_MAX_BYTES."""

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler


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
