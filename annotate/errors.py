"""Domain errors: refusals a user can act on. HTTP mapping lives in annotate.api_errors."""


class DomainError(Exception):
    """A refusal the user can act on; the message says what went wrong and what to do."""

    code = "invalid"

    def __init__(self, message: str, *, detail=None):
        super().__init__(message)
        self.message = message
        self.detail = detail


class IngestError(DomainError):
    """A raster that cannot be ingested (not a TIFF, no georeferencing, too large, corrupt, empty)."""

    code = "ingest_failed"


class UploadTooLarge(DomainError):
    """An upload over UPLOAD_MAX_BYTES."""

    code = "upload_too_large"


class InsufficientStorage(DomainError):
    """The server's disk is too full to store an upload or an ingest's output."""

    code = "insufficient_storage"


class NotAllowed(DomainError):
    """A member whose role does not allow the action."""

    code = "forbidden"


class Conflict(DomainError):
    """A stale edit or a state that does not allow the action."""

    code = "conflict"


class ClassInUse(Conflict):
    """A class that examples or detections still use, so it cannot be deleted."""

    code = "class_in_use"


class LastManager(Conflict):
    """A change that would leave a project without a manager."""

    code = "last_manager"


class SceneNotReady(DomainError):
    """A scene that has not finished its ingest."""

    code = "scene_not_ready"


class TooManyRequests(DomainError):
    """A user who already has as much queued work as the server allows."""

    code = "too_many_requests"


class QueueUnavailable(DomainError):
    """The job queue (the Celery broker) cannot be reached, so a job cannot be started now."""

    code = "queue_unavailable"


def error_body(code: str, message: str, detail=None) -> dict:
    """The API's error shape: {"error": {"code", "message", "detail"}}."""
    return {"error": {"code": code, "message": message, "detail": detail}}
