"""Through the real nginx and the Procfile's gunicorn: the throttle counts the address nginx saw, not a claimed one."""

import pytest
import requests
from axes.models import AccessAttempt

from tests.conftest import make_user
from tests.serving.conftest import served  # noqa: F401 - the fixture: gunicorn behind nginx

pytestmark = pytest.mark.slow

LIMIT = 10  # the Procfile's gunicorn runs with the shipped defaults


def token_post(base: str, username: str, password: str, forwarded_for: str | None = None) -> requests.Response:
    """POST to the token endpoint, optionally claiming an X-Forwarded-For chain."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return requests.post(f"{base}/api/auth/token/", json={"username": username, "password": password},
                         headers=headers, timeout=30)


def test_spoofed_forwarded_for_through_the_proxy_does_not_spread_the_count(served, transactional_db):  # noqa: F811
    make_user("proxied")
    statuses = [
        token_post(served.proxy, f"guess-{i}", "password", forwarded_for=f"192.0.2.{i + 1}").status_code
        for i in range(LIMIT)
    ]
    assert statuses == [400] * (LIMIT - 1) + [429]
    # nginx appended the address it saw (loopback here); the client's own entries counted for nothing.
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}
    locked = token_post(served.proxy, "proxied", "pw-proxied", forwarded_for="198.51.100.9")
    assert locked.status_code == 429
    assert locked.json()["error"]["message"] == "Too many failed attempts: try again in 15 minutes."
    assert int(locked.headers["Retry-After"]) > 14 * 60
    browser = requests.Session()
    browser.get(f"{served.proxy}/login/", timeout=30)
    form = {"username": "proxied", "password": "pw-proxied", "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
    page = browser.post(f"{served.proxy}/login/", data=form, headers={"Referer": f"{served.proxy}/login/"}, timeout=30)
    assert page.status_code == 429 and "Too many failed attempts: try again in 15 minutes." in page.text
