"""Outages of PostgreSQL or Redis answer 503 "temporarily unavailable, try again", never a 500.

Both recover by themselves (Django reconnects on the next request; redis-py on the next command), so the answer
only has to say so. Views' errors arrive through OutageMiddleware; errors raised in other middleware (a session
read from Redis, a lockout check in the database) through the 500 handler (annotate.api_errors.json_500).
"""

import logging

import redis
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from annotate.errors import error_body

log = logging.getLogger(__name__)

# A lost database connection, and Redis (cache, sessions) down or not answering.
OUTAGE_ERRORS = (OperationalError, InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
OUTAGE_MESSAGE = (
    "The service is temporarily unavailable (its database or cache is not answering); try again in a minute."
)
RETRY_AFTER_S = 30


def is_outage(exc: BaseException | None) -> bool:
    """Whether an exception, or one it was raised from, is a database or Redis outage."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OUTAGE_ERRORS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def outage_response(request) -> HttpResponse:
    """503 with Retry-After: the API's JSON error under /api/, a page elsewhere (rendered without the database)."""
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body("service_unavailable", OUTAGE_MESSAGE), status=503)
    else:
        response = HttpResponse(render_to_string("503.html", {"message": OUTAGE_MESSAGE}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


class OutageMiddleware:
    """Turns a database or Redis outage raised by a view into a 503 that says to try again."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        """503 for an outage; anything else goes on to the usual handling."""
        if not is_outage(exception):
            return None
        log.warning("outage on %s: %s", request.path, exception)
        return outage_response(request)
