"""What the nginx proxy does besides buffering: static files, the upload limit as JSON, what Django sees."""

import json
import socket

import pytest
import requests
from axes.models import AccessAttempt
from django.conf import settings
from rest_framework.authtoken.models import Token

from annotate.services import project_create
from scripts.nginx_conf import MULTIPART_ALLOWANCE
from tests.conftest import make_user

pytestmark = pytest.mark.slow


def test_static_files_come_from_nginx_with_long_caching_for_hashed_bundles(served):
    assets = sorted((settings.STATIC_ROOT / "frontend" / "assets").glob("*.js"))
    assert assets, "no front-end build: run scripts/setup.sh"
    response = requests.get(f"{served.proxy}/static/frontend/assets/{assets[0].name}", timeout=10)
    assert response.status_code == 200 and response.content == assets[0].read_bytes()
    # nginx's own headers (WhiteNoise would send max-age=60 and no Expires far in the future).
    assert response.headers["Server"] == "nginx"
    assert "immutable" in response.headers["Cache-Control"] and "max-age=315360000" in response.headers["Cache-Control"]
    assert requests.get(f"{served.proxy}/static/no-such-file.js", timeout=10).status_code == 404


def test_a_body_over_the_upload_limit_is_refused_with_json_before_it_is_sent(served):
    limit = settings.UPLOAD_MAX_BYTES + MULTIPART_ALLOWANCE
    with socket.create_connection(("127.0.0.1", served.proxy_port), timeout=5) as sock:
        sock.sendall(f"POST /api/projects/1/scenes/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    head, body = answer.split("\r\n\r\n", 1)
    assert "Content-Type: application/json" in head
    error = json.loads(body)["error"]
    assert error["code"] == "upload_too_large" and "UPLOAD_MAX_BYTES" in error["message"]


def test_django_sees_the_host_and_port_the_client_used(served, transactional_db):
    user = make_user("links")
    for name in ("One", "Two"):
        project_create(name=name, user=user)
    token = Token.objects.create(user=user).key
    response = requests.get(f"{served.proxy}/api/projects/?page_size=1", timeout=10,
                            headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200
    # Absolute links name the proxy, not gunicorn's loopback port.
    assert response.json()["next"].startswith(f"{served.proxy}/api/projects/?page=2")


def test_login_throttling_counts_the_address_nginx_saw_not_one_the_client_claims(served, transactional_db):
    """Each attempt claims another X-Forwarded-For; the address lockout still counts them as one client."""
    limit = settings.AXES_FAILURE_LIMIT
    # The failure that reaches the limit is itself answered with the lockout.
    for i in range(limit - 1):
        response = requests.post(f"{served.proxy}/api/auth/token/", timeout=10,
                                 data={"username": f"nobody-{i}", "password": "wrong"},
                                 headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert response.status_code == 400, (i, response.text[:300])
    response = requests.post(f"{served.proxy}/api/auth/token/", timeout=10,
                             data={"username": "someone-else", "password": "wrong"},
                             headers={"X-Forwarded-For": "198.51.100.200"})
    assert response.status_code == 429, response.text[:300]
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}
