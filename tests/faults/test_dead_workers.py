"""Fault: the worker running a job dies (SIGKILL of the worker, or of its prefork child), or the database is away.

Real Celery workers, real PostGIS and Redis, a tiny random DINOv2; the kill is a real SIGKILL by pid.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from celery.utils.time import get_exponential_backoff_interval

from annotate.models import Annotation
from gpu_tasks import tasks
from gpu_tasks.models import Job, JobStatus
from tests.conftest import ROOT, client_for
from tests.gpu_tasks import conftest as gpu_fixtures
from tests.gpu_tasks.conftest import wait_for_job
from tests.gpu_tasks.support import PLANTED, planted_scene, px_box_to_polygon

pytestmark = [pytest.mark.slow, pytest.mark.worker]


# Fast beats so that a death is noticed in a few seconds; batch 1 makes the 2800 px scene ~36 tiles of work.
FAST = {"JOB_HEARTBEAT_S": 1, "JOB_DEAD_AFTER_S": 4, "JOB_RECONCILE_S": 1, "EMBED_BATCH_SIZE": 1, "TORCH_DEVICE": "cpu"}


@pytest.fixture
def big_scene(ingested, manager, tmp_path):
    """A 2800 px planted scene with one example: a search takes several seconds on the tiny model."""
    scene = ingested(planted_scene(tmp_path / "big.tif", size_px=2800))
    Annotation.objects.create(
        scene=scene,
        object_class=scene.project.classes.get(name="Brick Kiln"),
        author=manager,
        geometry=px_box_to_polygon(scene, PLANTED[0].box_px, inset=8),
    )
    return scene


@pytest.fixture
def fast_settings(settings):
    for name, value in FAST.items():
        setattr(settings, name, value)
    return settings


def _search(api, scene) -> int:
    response = api.post(f"/api/scenes/{scene.pk}/search/", {"default_threshold": 0.9}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _past_first_row(job_id: int) -> Job:
    # More than a row of tiles (6 of ~36) is done, so a resume has something to skip.
    return wait_for_job(job_id, timeout_s=180, until=lambda j: j.status == JobStatus.RUNNING and j.progress > 0.3)


def test_a_killed_worker_is_noticed_in_seconds_and_its_job_requeued_and_resumed(
    start_worker, tiny_dinov2_dir, big_scene, manager, fast_settings
):
    env = {"DINO_MODEL": tiny_dinov2_dir, **FAST}
    first = start_worker("gpu", **env)
    api = client_for(manager)
    job_id = _search(api, big_scene)
    running = _past_first_row(job_id)
    assert running.worker_pid == first.pid and running.worker_host

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = time.monotonic()
    # Reading the job notices it (its pid is gone from this host) and re-queues it by itself.
    seen = wait_for_job(
        job_id, timeout_s=10, until=lambda j: api.get(f"/api/jobs/{j.pk}/").json()["status"] == JobStatus.QUEUED
    )
    noticed_s = time.monotonic() - killed_at
    seen = Job.objects.get(pk=job_id)  # as the read left it
    assert f"stopped (pid {first.pid}" in seen.message and "attempt 1 of 2" in seen.message, seen.message
    assert seen.auto_retries == 1
    print(f"\nkilled worker noticed after {noticed_s:.2f} s")

    start_worker("gpu", **env)
    job = wait_for_job(job_id, timeout_s=300)
    recovered_s = time.monotonic() - killed_at
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.message)
    assert job.attempts == 2
    skipped = job.result["timings"]["tiles_skipped"]
    assert skipped >= 6, job.result["timings"]  # resumed from the tiles on disk, not from tile 0
    assert skipped < job.result["timings"]["tiles"]
    print(f"recovered (succeeded) {recovered_s:.1f} s after the kill, {skipped} tiles skipped")


def test_a_job_whose_worker_died_is_noticed_by_a_starting_worker_and_cancel_ends_it_at_once(
    start_worker, tiny_dinov2_dir, big_scene, manager, fast_settings
):
    env = {"DINO_MODEL": tiny_dinov2_dir, **FAST}
    first = start_worker("gpu", **env)
    api = client_for(manager)
    job_id = _search(api, big_scene)
    _past_first_row(job_id)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    t0 = time.monotonic()
    response = api.post(f"/api/jobs/{job_id}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == JobStatus.CANCELLED, response.json()
    assert "stopped" in response.json()["message"]
    print(f"\ncancel with a dead worker answered cancelled in {time.monotonic() - t0:.2f} s")
    # And it can be run again (no 409).
    assert api.post(f"/api/jobs/{job_id}/retry/").status_code == 202


def test_a_killed_prefork_child_is_recovered(tiny_dinov2_dir, big_scene, manager, fast_settings, start_worker):
    # start_worker sets up the broker and database; this worker is a prefork pool of its own.
    start_worker  # noqa: B018
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu", "--pool", "prefork",
         "--concurrency", "1", "--hostname", f"prefork-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
         "--loglevel", "INFO"],
        cwd=ROOT,
        env={**_worker_env(fast_settings), "DINO_MODEL": str(tiny_dinov2_dir), **{k: str(v) for k, v in FAST.items()}},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = _collect(proc)
    try:
        api = client_for(manager)
        job_id = _search(api, big_scene)
        running = _past_first_row(job_id)
        assert running.worker_pid != proc.pid  # a child of the pool runs it
        os.kill(running.worker_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        job = wait_for_job(job_id, timeout_s=300)
        assert job.status == JobStatus.SUCCEEDED, (job.error, job.message, "".join(log))
        assert job.attempts >= 2 and job.worker_pid != running.worker_pid
        assert job.result["timings"].get("tiles_skipped", 0) > 0
        print(f"\nprefork child kill: succeeded {time.monotonic() - killed_at:.1f} s after the kill")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_database_outage_retries_back_off_over_minutes(start_worker, settings):
    task = tasks.gpu_search_task
    schedule = [
        get_exponential_backoff_interval(
            factor=task.retry_backoff, retries=n, maximum=task.retry_backoff_max, full_jitter=task.retry_jitter
        )
        for n in range(task.max_retries)
    ]
    assert schedule == [5, 10, 20, 40, 80, 160, 300, 300]
    assert sum(schedule) >= 10 * 60  # a database restart is ridden out
    # A real worker whose database is a closed port: its task retries in 5 s, then 10 s.
    proc = start_worker("gpu", DATABASE_URL="postgis://nobody:nothing@127.0.0.1:1/none")
    log = _collect(proc)
    tasks.gpu_search_task.delay(424242)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not any("Retry in 10s" in line for line in log):
        time.sleep(0.2)
    text = "".join(log)
    assert "Retry in 5s" in text and "Retry in 10s" in text, text[-3000:]
    assert proc.poll() is None  # the dead-worker watch did not take the worker down


def _worker_env(settings) -> dict:
    from django.db import connection

    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgis://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        "CELERY_BROKER_URL": gpu_fixtures.TEST_BROKER,
        "DATA_DIR": str(settings.DATA_DIR),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }


def _collect(proc: subprocess.Popen) -> list[str]:
    """The worker's output lines, read by a thread as they come (the pipe never fills)."""
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines
