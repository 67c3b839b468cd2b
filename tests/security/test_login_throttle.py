"""Failed logins are throttled per account and per client address, on the login page and the token endpoint."""

import importlib
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client
from rest_framework.test import APIClient

from tests.conftest import make_user

LIMIT = 10
COOL_OFF = timedelta(minutes=15)
TOKEN_URL = "/api/auth/token/"
LOGIN_URL = "/login/"


@pytest.fixture(autouse=True)
def _throttle_settings(settings):
    """The shipped defaults, pinned so that a developer's .env cannot change what is tested."""
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = COOL_OFF


def token_post(username: str, password: str, **extra):
    """POST to the token endpoint as a fresh client (no cookies: an attacker's script)."""
    return APIClient().post(TOKEN_URL, {"username": username, "password": password}, format="json", **extra)


def page_post(username: str, password: str, **extra):
    """POST the login form as a fresh browser."""
    client = Client()
    response = client.post(LOGIN_URL, {"username": username, "password": password, "next": "/"}, **extra)
    return client, response


def move_attempts_back(delta: timedelta) -> None:
    """Age every recorded failure, as if `delta` had passed."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - delta)


def assert_locked_json(response, minutes: int = 15) -> None:
    """The token endpoint's lockout: JSON 429 in the API's error shape, saying when to retry."""
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "login_locked"
    assert error["message"] == f"Too many failed attempts: try again in {minutes} minutes."
    assert 60 * (minutes - 1) < error["detail"]["retry_after_s"] <= 60 * minutes
    assert int(response["Retry-After"]) == error["detail"]["retry_after_s"]


def assert_locked_page(response, minutes: int = 15) -> None:
    """The login page's lockout: the page itself (a template), with the message, status 429."""
    assert response.status_code == 429
    html = response.content.decode()
    assert f"Too many failed attempts: try again in {minutes} minutes." in html
    assert '<form method="post"' in html and 'name="password"' in html
    assert "Your username and password did not match" not in html


def test_token_endpoint_locks_after_the_limit_and_refuses_the_right_password(manager):
    statuses = [token_post("manager", f"wrong-{i}").status_code for i in range(30)]
    assert statuses == [400] * (LIMIT - 1) + [429] * (30 - LIMIT + 1)
    assert_locked_json(token_post("manager", "pw-manager"))
    assert AccessAttempt.objects.get().failures_since_start == LIMIT  # refused attempts do not extend it


def test_login_page_locks_after_the_limit_and_refuses_the_right_password(manager):
    statuses = [page_post("manager", f"wrong-{i}")[1].status_code for i in range(30)]
    assert statuses == [200] * (LIMIT - 1) + [429] * (30 - LIMIT + 1)
    client, response = page_post("manager", "pw-manager")
    assert_locked_page(response)
    assert "_auth_user_id" not in client.session
    assert client.get("/api/projects/").status_code in (401, 403)


def test_failures_on_one_endpoint_lock_the_other(manager):
    for i in range(LIMIT):
        page_post("manager", f"wrong-{i}")
    assert_locked_json(token_post("manager", "pw-manager"))


def test_many_accounts_from_one_address_lock_the_address(manager, outsider):
    for i in range(LIMIT):
        token_post(f"guess-{i}", "password", REMOTE_ADDR="203.0.113.9")
    # A real account with its right password, from the same address: refused on both endpoints.
    assert_locked_json(token_post("outsider", "pw-outsider", REMOTE_ADDR="203.0.113.9"))
    assert_locked_page(page_post("outsider", "pw-outsider", REMOTE_ADDR="203.0.113.9")[1])
    # The same account from another address is not locked: only the address is.
    assert token_post("outsider", "pw-outsider", REMOTE_ADDR="203.0.113.10").status_code == 200


def test_one_account_from_many_addresses_locks_the_account(manager, outsider):
    for i in range(LIMIT):
        token_post("manager", "wrong", REMOTE_ADDR=f"198.51.100.{i + 1}")
    assert_locked_json(token_post("manager", "pw-manager", REMOTE_ADDR="198.51.100.200"))
    # Another account from a fresh address is not affected.
    assert token_post("outsider", "pw-outsider", REMOTE_ADDR="198.51.100.201").status_code == 200


def test_lockout_expires_and_the_message_counts_down(manager):
    for i in range(LIMIT):
        token_post("manager", f"wrong-{i}")
    move_attempts_back(timedelta(minutes=10, seconds=30))
    assert_locked_json(token_post("manager", "pw-manager"), minutes=5)
    _, page = page_post("manager", "pw-manager")
    assert_locked_page(page, minutes=5)
    move_attempts_back(timedelta(minutes=5))
    assert token_post("manager", "pw-manager").status_code == 200
    client, response = page_post("manager", "pw-manager")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(manager.pk)


@pytest.mark.parametrize("endpoint", ["token", "page"])
def test_success_below_the_limit_resets_the_count(manager, endpoint):
    def attempt(password: str) -> int:
        if endpoint == "token":
            return token_post("manager", password).status_code
        return page_post("manager", password)[1].status_code

    ok, failed = (200, 400) if endpoint == "token" else (302, 200)
    assert [attempt("wrong") for _ in range(LIMIT - 1)] == [failed] * (LIMIT - 1)
    assert attempt("pw-manager") == ok
    assert not AccessAttempt.objects.exists()
    assert [attempt("wrong") for _ in range(LIMIT - 1)] == [failed] * (LIMIT - 1)
    assert attempt("pw-manager") == ok


def test_own_account_success_does_not_reset_guesses_on_others(manager, outsider):
    """An attacker holding one account cannot log in with it between guesses to reset the counts."""
    for i in range(LIMIT - 1):
        assert token_post("manager", f"wrong-{i}").status_code == 400
    assert token_post("outsider", "pw-outsider").status_code == 200
    assert_locked_json(token_post("manager", "wrong-last"))


def test_forwarded_for_is_ignored_without_a_trusted_proxy(manager):
    """Directly reachable, X-Forwarded-For is the client's own claim: changing it per try evades nothing."""
    for i in range(LIMIT):
        token_post(f"guess-{i}", "password", HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}
    assert_locked_json(token_post("manager", "pw-manager", HTTP_X_FORWARDED_FOR="192.0.2.77"))


@pytest.fixture
def behind_one_proxy(settings, monkeypatch):
    """The settings config/settings.py derives for TRUSTED_PROXY_COUNT=1 (the bundled nginx), applied."""
    import config.settings as module

    monkeypatch.setenv("TRUSTED_PROXY_COUNT", "1")
    derived = importlib.reload(module)
    try:
        for name in ("AXES_IPWARE_PROXY_COUNT", "AXES_IPWARE_META_PRECEDENCE_ORDER", "IPWARE_STRICT"):
            setattr(settings, name, getattr(derived, name))
    finally:
        monkeypatch.delenv("TRUSTED_PROXY_COUNT")
        importlib.reload(module)


def test_behind_the_proxy_the_address_it_saw_counts(manager, behind_one_proxy):
    """nginx appends the address it saw; entries the client sent before it cannot move the count elsewhere."""
    proxy = {"REMOTE_ADDR": "172.18.0.5"}
    for i in range(LIMIT):
        token_post(f"guess-{i}", "password", HTTP_X_FORWARDED_FOR=f"192.0.2.{i + 1}, 203.0.113.50", **proxy)
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.50"}
    assert_locked_json(token_post("manager", "pw-manager", HTTP_X_FORWARDED_FOR="203.0.113.50", **proxy))
    # Other clients behind the same proxy are not locked with it.
    assert token_post("manager", "pw-manager", HTTP_X_FORWARDED_FOR="10.1.2.3", **proxy).status_code == 200


def test_in_process_login_without_a_request_still_works(manager):
    """Django's test client logs in without a request (nothing to throttle); other test suites rely on it."""
    client = Client()
    assert client.login(username="manager", password="pw-manager")
    assert not client.login(username="manager", password="wrong")


def test_locked_out_user_keeps_working_sessions_and_tokens(manager):
    """The lockout stops password guesses, not a user who is already signed in."""
    token = token_post("manager", "pw-manager").json()["token"]
    for i in range(LIMIT):
        token_post("manager", f"wrong-{i}")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/projects/").status_code == 200
    make_user("late")
    assert token_post("late", "pw-late", REMOTE_ADDR="192.0.2.200").status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [("a" * 151, "password"), ("manager", "p" * 4097), ("man\x00ager", "password"), ("", "password")],
)
def test_malformed_credentials_answer_400_not_500(manager, username, password):
    """A username longer than any account could not even be recorded as a failure (it was a 500)."""
    response = token_post(username, password)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert not AccessAttempt.objects.exists()


@pytest.mark.parametrize("url", [LOGIN_URL, "/admin/login/"])
def test_login_forms_count_an_overlong_username_instead_of_failing(manager, url):
    """Django's login forms do not bound the username; recording it as a failure answered 500."""
    response = Client().post(url, {"username": "a" * 300, "password": "password"})
    assert response.status_code == 200
    assert AccessAttempt.objects.get().username == "a" * 255
