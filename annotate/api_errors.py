"""The one table that maps domain errors to HTTP status, and the API's single JSON error shape.

Every API error answers `{"error": {"code": str, "message": str, "detail": any}}`.
"""

import sys

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

from .errors import (
    Conflict,
    DomainError,
    IngestError,
    InsufficientStorage,
    NotAllowed,
    QueueUnavailable,
    SceneNotReady,
    TooManyRequests,
    UploadTooLarge,
    error_body,
)

# The one table: domain error -> HTTP status.
HTTP_STATUS_BY_ERROR: dict[type[DomainError], int] = {
    IngestError: status.HTTP_422_UNPROCESSABLE_ENTITY,
    UploadTooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    InsufficientStorage: status.HTTP_507_INSUFFICIENT_STORAGE,
    NotAllowed: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    SceneNotReady: status.HTTP_409_CONFLICT,
    TooManyRequests: status.HTTP_429_TOO_MANY_REQUESTS,
    QueueUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    DomainError: status.HTTP_400_BAD_REQUEST,
}


def http_status_for(exc: DomainError) -> int:
    """The HTTP status of a domain error (the most specific entry of the table)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS_BY_ERROR:
            return HTTP_STATUS_BY_ERROR[cls]
    return status.HTTP_400_BAD_REQUEST


def _first_errors(data, prefix: str = "") -> list[str]:
    """`field: message` for each field of a DRF error structure (nested fields dotted, list items by index)."""
    if isinstance(data, dict):
        return [m for k, v in data.items() for m in _first_errors(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, list):
        if all(not isinstance(v, dict | list) for v in data):
            text = " ".join(str(v) for v in data)
            return [f"{prefix}: {text}" if prefix and prefix != "non_field_errors" else text]
        return [m for i, v in enumerate(data) if v for m in _first_errors(v, f"{prefix}[{i}]")]
    return [f"{prefix}: {data}" if prefix and prefix != "non_field_errors" else str(data)]


def validation_message(data) -> str:
    """One sentence naming the invalid fields and why, so a client that shows only `message` says what to fix."""
    errors = _first_errors(data)
    shown = "; ".join(errors[:3]) + ("; ..." if len(errors) > 3 else "")
    return f"Invalid request: {shown}" if shown else "The request has invalid fields; see detail."


def api_exception_handler(exc, context):
    """DRF exception handler: domain errors via the table, DRF's own errors re-shaped."""
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.detail), status=http_status_for(exc))
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_default_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, drf_exceptions.ValidationError):
        body = error_body("invalid", validation_message(data), data)
    else:
        codes = exc.get_codes() if isinstance(exc, drf_exceptions.APIException) else "error"
        message = data.get("detail", str(exc)) if isinstance(data, dict) else str(exc)
        body = error_body(codes if isinstance(codes, str) else "error", str(message))
    response.data = body
    return response


def json_404(request, exception=None):
    """Django's 404 handler: JSON under /api/, the plain page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_500(request):
    """Django's 500 handler: 503 for a database or Redis outage; JSON under /api/, the plain page elsewhere."""
    from config.outage import is_outage, outage_response

    if is_outage(sys.exc_info()[1]):  # raised outside a view, e.g. a session read with Redis down
        return outage_response(request)
    if request.path.startswith("/api/"):
        return JsonResponse(
            error_body("server_error", "Internal error; it has been logged. Try again or report it."), status=500
        )
    from django.views.defaults import server_error

    return server_error(request)
