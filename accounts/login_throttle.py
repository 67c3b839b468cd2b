"""Failed-login throttling on top of django-axes: per account and per client address, with a lockout that expires.

django-axes records failures (database handler) and refuses a locked client in its authentication backend; this
module decides what the refused client sees (the login page or the API's JSON error, both saying when to retry)
and what a successful login forgets.
"""

import math
from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from annotate.errors import error_body

LOCKED_OUT_CODE = "login_locked"
_RECORDED_USERNAME_MAX = AccessAttempt._meta.get_field("username").max_length


def attempt_username(request: HttpRequest, credentials: dict | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the username axes would take, cut to what its table holds.

    Django's login forms do not bound the username (AuthenticationForm sets max_length after the field's
    validators are made), so a 300-character one failed to be recorded as a failure and answered 500.
    """
    field = settings.AXES_USERNAME_FORM_FIELD
    username = credentials.get(field) if credentials else getattr(request, "data", request.POST).get(field)
    return username[:_RECORDED_USERNAME_MAX] if isinstance(username, str) else username


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses logins of a locked-out account or address; authentication itself is left to ModelBackend."""

    def authenticate(self, request: HttpRequest | None, username=None, password=None, **kwargs):
        """Check the lockout of a request; in-process calls without a request (test client, shell) have no client."""
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def login_lockout_remaining(*, request: HttpRequest, credentials: dict | None) -> timedelta:
    """How long the lockout that refused this request still holds.

    A lockout group (one account, or one address) holds while the failures of its rows newer than the cool-off
    reach the limit; rows expire oldest first, so it ends a cool-off after the row at which the newest rows'
    running total reaches the limit.
    """
    cool_off = get_cool_off(request)
    if cool_off is None:
        return timedelta(0)
    limit = get_failure_limit(request, credentials)
    now = timezone.now()
    remaining = timedelta(0)
    for attempts in AxesDatabaseHandler().get_user_attempts(request, credentials):
        total = 0
        for attempt_time, failures in attempts.order_by("-attempt_time").values_list(
            "attempt_time", "failures_since_start"
        ):
            total += failures
            if total >= limit:
                remaining = max(remaining, attempt_time + cool_off - now)
                break
    return remaining


def lockout_message(remaining: timedelta) -> tuple[str, int]:
    """The message a refused client sees, and the whole minutes it states (at least one)."""
    minutes = max(1, math.ceil(remaining.total_seconds() / 60))
    return f"Too many failed attempts: try again in {minutes} minute{'s' if minutes != 1 else ''}.", minutes


def lockout_response(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """django-axes' AXES_LOCKOUT_CALLABLE: JSON 429 under /api/, the login page with the message elsewhere."""
    remaining = login_lockout_remaining(request=request, credentials=credentials)
    message, minutes = lockout_message(remaining)
    retry_after_s = max(1, math.ceil(remaining.total_seconds()))
    if request.path.startswith("/api/"):
        response = JsonResponse(
            error_body(LOCKED_OUT_CODE, message, {"retry_after_s": retry_after_s}), status=429
        )
    else:
        username = get_client_username(request, credentials) or ""
        context = {
            "form": AuthenticationForm(request, initial={"username": username}),
            "next": request.POST.get("next", request.GET.get("next", "")),
            "lockout_message": message,
            "lockout_minutes": minutes,
        }
        response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(retry_after_s)
    return response


def login_failures_forget(*, request: HttpRequest, username: str) -> int:
    """Forget the failures of this account from this address after it proved its password.

    Narrower than django-axes' AXES_RESET_ON_SUCCESS, which also clears every failure from the address: an
    attacker holding one account could then log in with it between guesses to reset the address's count
    and every account's count from that address.
    """
    AxesProxyHandler.update_request(request)
    deleted, _ = AccessAttempt.objects.filter(username=username, ip_address=request.axes_ip_address).delete()
    return deleted


def forget_failures_on_login(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """user_logged_in receiver: a successful page login below the limit resets that account's count."""
    if request is not None:
        login_failures_forget(request=request, username=user.get_username())
