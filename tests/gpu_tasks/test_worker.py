"""An upload goes through real Redis to a real Celery worker process, which ingests it and reports progress."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from gpu_tasks.models import Job, JobStatus
from tests.conftest import NEON, ROOT, client_for

TEST_BROKER = "redis://127.0.0.1:6379/14"  # a database of its own, away from a running demo


def _use_broker(url: str) -> None:
    """Point the producer at another broker; pooled connections to the old one are dropped."""
    celery_app.conf.broker_url = url
    # Forget the cached pools (as Celery does after a fork); the old ones stay usable for the old URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def worker(transactional_db, settings):
    """A `celery worker` subprocess on the test database and a private Redis database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgis://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                        f"{db['NAME']}",
        "CELERY_BROKER_URL": TEST_BROKER,
        "DATA_DIR": str(settings.DATA_DIR),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    subprocess.run(["redis-cli", "-n", "14", "flushdb"], check=True, capture_output=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default", "--pool", "solo",
         "--hostname", f"test-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    celery_app.conf.task_always_eager = False
    _use_broker(TEST_BROKER)
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    _use_broker(settings.CELERY_BROKER_URL)


def wait_for_job(job_id: int, timeout_s: float = 120) -> Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.status in JobStatus.finished():
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s (status {job.status})")


def test_upload_is_ingested_by_a_real_worker(worker, project, manager):
    assert not settings.CELERY_TASK_ALWAYS_EAGER
    with open(NEON, "rb") as fh:
        response = client_for(manager).post(
            f"/api/projects/{project.pk}/scenes/upload/", {"file": fh}, format="multipart"
        )
    assert response.status_code == 202
    body = response.json()
    assert body["job"]["status"] == "queued" and body["scene"]["status"] == "uploaded"
    job = wait_for_job(body["job"]["id"])
    output = "" if worker.poll() is None else worker.stdout.read()
    assert job.status == JobStatus.SUCCEEDED, (job.error, output)
    assert job.progress == 1.0 and job.started_at <= job.finished_at
    assert job.scene.status == "ready" and job.scene.max_zoom >= 21
