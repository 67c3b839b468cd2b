"""Outages users see: Redis (cache, sessions) or PostgreSQL down answer 503 "try again", and recover by themselves.

Redis: a server of the test's own, stopped and started. PostgreSQL: the shared cluster stays up; the test points
this process's database connection at a closed port (what a stopped server looks like to Django: connection
refused), then back.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connections

from tests.conftest import ROOT, client_for
from tests.faults.private_redis import PrivateRedis, free_port

pytestmark = [pytest.mark.slow]


def _no_raise(client):
    """The client returns the response Django sends instead of re-raising the error behind a 500/503."""
    client.raise_request_exception = False
    return client


def _assert_unavailable(api_response, page_response):
    assert api_response.status_code == 503, api_response.content[:300]
    error = api_response.json()["error"]
    assert error["code"] == "service_unavailable" and "try again" in error["message"]
    assert api_response["Retry-After"]
    assert page_response.status_code == 503, page_response.content[:300]
    page = page_response.content.decode()
    assert "Temporarily unavailable" in page and "try again" in page


@pytest.mark.django_db(transaction=True)
def test_redis_down_answers_503_and_recovers(tmp_path, settings, manager):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": server.url()}}
        client = _no_raise(client_for(manager))  # its session is in this Redis (and the database)
        assert client.get("/api/projects/").status_code == 200
        server.stop()
        # Every request reads the session from Redis first.
        _assert_unavailable(client.get("/api/projects/"), client.get("/"))
        # Raised where no view catches it (as a middleware's session read is): the 500 handler answers 503 too.
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "config.outage.OutageMiddleware"]
        _assert_unavailable(client.get("/api/projects/"), client.get("/"))

        server.start()  # empty: the session comes back from the database
        started = time.monotonic()
        assert client.get("/api/projects/").status_code == 200
        print(f"\nfirst request after Redis came back answered in {time.monotonic() - started:.2f} s")
        assert client.get("/").status_code == 200
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_database_down_answers_503_and_recovers(manager):
    client = _no_raise(client_for(manager))
    assert client.get("/api/projects/").status_code == 200
    conn = connections["default"]
    port = conn.settings_dict["PORT"]
    conn.close()
    conn.settings_dict["PORT"] = str(free_port())  # nothing listens: "connection refused", as with a stopped server
    try:
        _assert_unavailable(client.get("/api/projects/"), client.get("/"))
    finally:
        conn.close()
        conn.settings_dict["PORT"] = port
    started = time.monotonic()
    assert client.get("/api/projects/").status_code == 200
    print(f"\nfirst request after the database came back answered in {time.monotonic() - started:.2f} s")


def _gunicorn(data_dir, port: int) -> subprocess.Popen:
    """The Procfile's web command (its control-socket flag) on a port of its own, with DATA_DIR set."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--control-socket", f"{data_dir}/gunicorn.ctl"],
        cwd=ROOT,
        env={**os.environ, "DATA_DIR": str(data_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_procfile_gives_each_gunicorn_its_own_control_socket(tmp_path):
    procfile = (ROOT / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    assert "--control-socket ${DATA_DIR:-var}/gunicorn.ctl" in web
    assert "--control-socket ${DATA_DIR:-/data}/gunicorn.ctl" in (ROOT / "docker" / "Dockerfile").read_text()

    first, second = tmp_path / "one", tmp_path / "two"
    procs = [_gunicorn(first, free_port()), _gunicorn(second, free_port())]
    try:
        deadline = time.monotonic() + 60
        sockets = [first / "gunicorn.ctl", second / "gunicorn.ctl"]
        while time.monotonic() < deadline and not all(s.is_socket() for s in sockets):
            time.sleep(0.2)
        # Both instances keep their own: the second did not replace the first's.
        assert all(s.is_socket() for s in sockets), [s.exists() for s in sockets]
        time.sleep(1)
        assert all(p.poll() is None for p in procs)
        assert all(s.is_socket() for s in sockets)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
