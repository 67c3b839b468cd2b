"""Slow clients (declared large bodies, trickled bytes) cannot stall the server behind the nginx proxy.

64 connections declare a large Content-Length on /login/, /api/auth/token/ and the upload endpoint and send
a byte now and then: ordinary requests still answer at once, and the stalled ones are cut off after the
proxy's client timeout. Without the proxy, as many stall gunicorn alone (the failure it fixes).
"""

import contextlib
import selectors
import socket
import threading
import time

import pytest
import requests
from rest_framework.authtoken.models import Token

from annotate.models import Role
from annotate.services import membership_set, project_create
from tests.conftest import make_user
from tests.serving.conftest import CLIENT_TIMEOUT_S

pytestmark = pytest.mark.slow

PROMPT_S = 2.0


def slow_request(path: str, length: int, content_type: str, port: int) -> bytes:
    """Headers declaring `length` bytes of body, and the body's first bytes."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n")
    return head.encode() + b"username="


def open_slow(port: int, requests_: list[bytes]) -> list[socket.socket]:
    """One connection per request, each sent its headers and first bytes."""
    socks = []
    for payload in requests_:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(payload)
        socks.append(sock)
    return socks


class Trickler(threading.Thread):
    """Sends one more body byte on every open connection each `every` seconds, until stopped."""

    def __init__(self, socks: list[socket.socket], every: float):
        super().__init__(daemon=True)
        self.socks, self.every, self.stop = socks, every, threading.Event()
        self.failed: set[int] = set()

    def run(self):
        while not self.stop.wait(self.every):
            for i, sock in enumerate(self.socks):
                if i not in self.failed:
                    try:
                        sock.send(b"x")
                    except OSError:
                        self.failed.add(i)


def closed_after(socks: list[socket.socket], since: float, limit: float) -> dict[int, tuple[float, bytes]]:
    """For each connection the server ends within `limit` s: seconds after `since`, and what it answered."""
    sel = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, i)
    ended: dict[int, tuple[float, bytes]] = {}
    answers: dict[int, bytes] = {}
    deadline = since + limit
    while len(ended) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            i = key.data
            try:
                chunk = key.fileobj.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                answers[i] = answers.get(i, b"") + chunk
                continue
            ended[i] = (time.monotonic() - since, answers.get(i, b""))
            sel.unregister(key.fileobj)
    sel.close()
    return ended


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


@pytest.fixture
def member(transactional_db):
    """A project member with an API token (committed: the servers are other processes)."""
    user = make_user("served")
    project = project_create(name="Served", user=user)
    project_create(name="Served too", user=user)
    membership_set(project=project, user=user, role=Role.MANAGER)
    return project, Token.objects.create(user=user).key


def timed_get(url: str, **kwargs) -> tuple[float, requests.Response]:
    t0 = time.monotonic()
    response = requests.get(url, timeout=10, **kwargs)
    return time.monotonic() - t0, response


def test_slow_clients_do_not_stall_the_proxy_and_are_cut_off(served, member):
    project, token = member
    port = served.proxy_port
    form = "application/x-www-form-urlencoded"
    payloads = (
        [slow_request("/login/", 2_000_000, form, port)] * 22
        + [slow_request("/api/auth/token/", 2_000_000, form, port)] * 21
        + [slow_request(f"/api/projects/{project.pk}/scenes/upload/", 2_000_000_000,
                        "multipart/form-data; boundary=xx", port)] * 21
    )
    assert len(payloads) == 64
    socks = open_slow(port, payloads)
    # Slow headers as well: a request line and half a header block, never finished.
    header_socks = open_slow(port, [f"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()] * 8)
    # A byte each second keeps them inside the 3 s timeout while ordinary requests are made.
    trickler = Trickler(socks, every=1.0)
    trickler.start()
    try:
        time.sleep(1.5)
        latencies = []
        for _ in range(3):
            elapsed, response = timed_get(f"{served.proxy}/api/projects/", headers={"Authorization": f"Token {token}"})
            assert response.status_code == 200, response.text[:300]
            assert {p["name"] for p in response.json()["results"]} == {"Served", "Served too"}
            latencies.append(elapsed)
            elapsed, response = timed_get(f"{served.proxy}/login/")
            assert response.status_code == 200 and "password" in response.text
            latencies.append(elapsed)
        assert max(latencies) < PROMPT_S, latencies
        # All 64 were still open and trickling while those answered (nothing was cut off early).
        time.sleep(1.5)
        assert not trickler.failed, f"{len(trickler.failed)} slow connections ended before they stopped sending"
    finally:
        trickler.stop.set()
        trickler.join()
    stopped = time.monotonic()
    try:
        ended = closed_after(socks, stopped, CLIENT_TIMEOUT_S + 4)
        assert len(ended) == len(socks), f"only {len(ended)} of {len(socks)} stalled bodies were cut off"
        times = sorted(t for t, _ in ended.values())
        print(f"ordinary requests while 64 stalled: max {max(latencies) * 1000:.0f} ms; stalled bodies cut off "
              f"{times[0]:.2f}-{times[-1]:.2f} s after their last byte (timeout {CLIENT_TIMEOUT_S} s)")
        # Cut off once they have been silent for the client timeout, not before (the last byte went out
        # up to 1 s before `stopped`) and not much after.
        assert times[0] > CLIENT_TIMEOUT_S - 1.2 and times[-1] < CLIENT_TIMEOUT_S + 2, times
        for _, answer in ended.values():
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
        # The header-stallers too (their timer runs from when they connected).
        assert len(closed_after(header_socks, stopped, CLIENT_TIMEOUT_S + 2)) == len(header_socks)
        # And the server answers as before.
        elapsed, response = timed_get(f"{served.proxy}/api/projects/", headers={"Authorization": f"Token {token}"})
        assert response.status_code == 200 and elapsed < PROMPT_S
    finally:
        close_all(socks + header_socks)


def test_without_the_proxy_gunicorn_alone_stalls(served, member):
    """The failure the proxy fixes: trickling bodies take gunicorn's threads (2 workers x 4) from ordinary requests.

    Which worker accepts a connection is the kernel's choice, so one worker may be handed fewer stallers than it
    has threads: 64 stallers (8 per thread) and four probes at once make that unlikely, and one probe timing out
    is the stall."""
    _, token = member
    port = served.direct_port
    form = "application/x-www-form-urlencoded"
    payloads = ([slow_request("/login/", 2_000_000, form, port)] * 32
                + [slow_request("/api/auth/token/", 2_000_000, form, port)] * 32)
    socks = open_slow(port, payloads)
    trickler = Trickler(socks, every=1.0)
    trickler.start()
    outcomes: list[str] = []

    def probe():
        try:
            requests.get(f"{served.direct}/api/projects/", headers={"Authorization": f"Token {token}"},
                         timeout=(2, 3))
            outcomes.append("answered")
        except requests.Timeout:
            outcomes.append("timed out")

    try:
        time.sleep(1.0)
        probes = [threading.Thread(target=probe) for _ in range(4)]
        for thread in probes:
            thread.start()
        for thread in probes:
            thread.join()
        print(f"direct to gunicorn with 64 stallers: {sorted(outcomes)}")
        assert "timed out" in outcomes, outcomes
    finally:
        trickler.stop.set()
        trickler.join()
        close_all(socks)
