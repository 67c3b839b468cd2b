"""Live updates through the production set-up (issue 10 §3, §5): nginx in front of gunicorn with 3 workers; a decision
posted through the proxy by one reviewer is in the other's poll (through the proxy) within 2 s, every time, with the
polls spread over the workers; and each reviewer's presence is seen by the other.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.contrib.gis.geos import Polygon
from rest_framework.authtoken.models import Token

from annotate.models import Detection, Role, Scene, SceneStatus
from annotate.services import membership_set, project_create
from tests.conftest import make_user

WORKERS = 3
ROUNDS = 12
POLL_S = 1.0  # what the page does (frontend/src/review/live.ts)
BURST = 4


@pytest.fixture(scope="module")
def three_workers():
    """The Procfile's gunicorn line reads WEB_WORKERS: three, set before the servers start."""
    before = os.environ.get("WEB_WORKERS")
    os.environ["WEB_WORKERS"] = str(WORKERS)
    yield
    if before is None:
        os.environ.pop("WEB_WORKERS", None)
    else:
        os.environ["WEB_WORKERS"] = before


@pytest.fixture(scope="module")
def served(three_workers, served):
    """tests/serving/conftest.py's servers, started with three web workers."""
    return served


def _procs() -> dict[int, tuple[int, str, int]]:
    """Every process: (parent pid, command line, CPU ticks)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(entry.name)] = (int(stat[1]), cmd, int(stat[11]) + int(stat[12]))  # ppid, argv, utime + stime
    return out


def workers_cpu(direct_port: int) -> dict[int, int]:
    """CPU ticks of each gunicorn worker of the server on `direct_port`, by pid (workers share the master's argv)."""
    procs = _procs()
    ours = {pid for pid, (_, cmd, _) in procs.items() if "gunicorn" in cmd and f"127.0.0.1:{direct_port}" in cmd}
    return {pid: procs[pid][2] for pid in ours if procs[pid][0] in ours}


def client(served, user) -> requests.Session:
    http = requests.Session()
    http.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    http.base = served.proxy
    return http


def test_a_decision_through_the_proxy_reaches_the_other_reviewers_poll_within_two_seconds(served, transactional_db):
    manager = make_user("lead")
    project = project_create(name="Live", user=manager)
    rita, bob = make_user("rita"), make_user("bob")
    for user in (rita, bob):
        membership_set(project=project, user=user, role=Role.REVIEWER)
    footprint = Polygon.from_bbox((10.0, 50.0, 10.1, 50.1))
    footprint.srid = 4326
    scene = Scene.objects.create(project=project, name="s", status=SceneStatus.READY, footprint=footprint)
    cls = project.classes.order_by("index").first()
    dets = []
    for i in range(ROUNDS):
        g = Polygon.from_bbox((10.01 + i * 0.001, 50.01, 10.0105 + i * 0.001, 50.0105))
        g.srid = 4326
        dets.append(Detection.objects.create(scene=scene, object_class=cls, geometry=g, bbox=g, score=0.9))
    r, b = client(served, rita), client(served, bob)
    live = f"{served.proxy}/api/scenes/{scene.pk}/live/"

    # Both open the scene: no history, a cursor to start from; each is then seen by the other.
    cursor = b.get(live, params={"x": 10.05, "y": 50.05}, timeout=10).json()["cursor"]
    seen_by_bob = []
    first = r.get(live, params={"x": 10.02, "y": 50.02}, timeout=10)
    assert first.status_code == 200, first.text[:300]
    assert [p["name"] for p in first.json()["presence"]] == ["bob"]

    cpu_before = workers_cpu(served.direct_port)
    assert len(cpu_before) == WORKERS, cpu_before
    delays = []
    pool = ThreadPoolExecutor(BURST)
    for i, det in enumerate(dets):
        answer = r.post(f"{served.proxy}/api/detections/{det.pk}/review/", timeout=10,
                        json={"verdict": "accepted", "expected_version": 1, "client_id": f"live-{i}"})
        assert answer.status_code == 200, answer.text[:300]
        answered = time.monotonic()
        # Bob polls as the page does, every POLL_S; his next poll comes somewhere in the second after the decision.
        # Each poll goes as BURST parallel requests (his open tabs): nginx then needs several upstream connections,
        # which land on different workers, and every one of them must carry the event.
        time.sleep(POLL_S * ((i * 7) % 10) / 10)
        while True:
            query = {"since": cursor, "x": 10.05, "y": 50.05}
            pages = list(pool.map(lambda _, q=query: b.get(live, params=q, timeout=10), range(BURST)))
            assert all(p.status_code == 200 for p in pages), [p.text[:200] for p in pages]
            bodies = [p.json() for p in pages]
            got = [any(e["detection"] == det.pk and e["version_after"] == 2 for e in body["events"]) for body in bodies]
            seen_by_bob = bodies[0]["presence"]
            if any(got):
                assert all(got), f"decision {i}: some workers' answers lack it"
                delays.append(time.monotonic() - answered)
                assert {e["actor_name"] for body in bodies for e in body["events"]} == {"rita"}
                cursor = bodies[0]["cursor"]
                break
            assert time.monotonic() - answered < 2.0, f"decision {i} not seen in 2 s"
            time.sleep(POLL_S)
        r.get(live, params={"x": 10.02, "y": 50.02}, timeout=10)  # Rita's page polls too
        time.sleep(0.05 * (i % 4))
    assert [p["name"] for p in seen_by_bob] == ["rita"]
    # Several workers answered: the event and the presence came through whichever one nginx chose.
    cpu_after = workers_cpu(served.direct_port)
    busy = [pid for pid, t in cpu_after.items() if t > cpu_before.get(pid, 0)]
    pool.shutdown()
    assert len(busy) >= 2, (cpu_before, cpu_after)
    print(f"\n{ROUNDS} decisions through nginx + {WORKERS} gunicorn workers: seen after "
          f"max {max(delays):.2f} s; workers busy: {len(busy)}")
