"""Real Celery worker processes for tests: the test database, a private Redis database, chosen queues."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from config.celery import app as celery_app
from gpu_tasks.models import Job, JobStatus
from tests.conftest import ROOT

# A Redis database of its own, away from a running demo; TEST_BROKER_DB lets two test runs on one machine differ.
TEST_BROKER_DB = os.environ.get("TEST_BROKER_DB", "14")
TEST_BROKER = f"redis://127.0.0.1:6379/{TEST_BROKER_DB}"


def _use_broker(url: str) -> None:
    """Point the producer at another broker; pooled connections to the old one are dropped."""
    celery_app.conf.broker_url = url
    # Forget the cached pools (as Celery does after a fork); the old ones stay usable for the old URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def start_worker(transactional_db, settings):
    """`start_worker(queue, **env)`: a `celery worker` subprocess; all are stopped (or found dead) at the end."""
    db = connection.settings_dict
    base_env = {
        **os.environ,
        "DATABASE_URL": f"postgis://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        "CELERY_BROKER_URL": TEST_BROKER,
        "DATA_DIR": str(settings.DATA_DIR),
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    subprocess.run(["redis-cli", "-n", TEST_BROKER_DB, "flushdb"], check=True, capture_output=True)
    celery_app.conf.task_always_eager = False
    _use_broker(TEST_BROKER)
    procs: list[subprocess.Popen] = []

    def start(queue: str = "default", **env) -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queue,
                "--pool",
                "solo",
                "--hostname",
                f"test-{os.getpid()}-{len(procs)}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env={**base_env, **{k: str(v) for k, v in env.items()}},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    _use_broker(settings.CELERY_BROKER_URL)


def wait_for_job(job_id: int, timeout_s: float = 120, until=None) -> Job:
    """Poll a job row until it finishes (or `until(job)` holds); AssertionError on timeout."""
    until = until or (lambda j: j.status in JobStatus.finished())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if until(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s}s (status {job.status}, {job.message})")


@pytest.fixture(scope="session")
def tiny_dinov2_dir(tmp_path_factory):
    """A randomly initialised tiny DINOv2 saved like a fetched model (loaded by the product's loader)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny-dinov2"
    config = Dinov2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=14, image_size=518
    )
    Dinov2Model(config).eval().save_pretrained(path)
    return path
