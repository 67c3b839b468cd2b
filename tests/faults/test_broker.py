"""The broker fails for real: a Redis of the test's own, without persistence, stopped and started again.

A job it loses is re-sent by a worker (or retried by the user); enqueueing while it is down answers 503 and
leaves nothing behind that makes the user's next try a duplicate.
"""

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from annotate.errors import QueueUnavailable
from annotate.models import Scene
from annotate.services import scene_create_from_path
from config.celery import app as celery_app
from gpu_tasks import broker
from gpu_tasks.models import Job, JobStatus
from gpu_tasks.services import ingest_job_start
from tests.conftest import NEON, client_for
from tests.faults.private_redis import PrivateRedis
from tests.gpu_tasks.conftest import _use_broker, wait_for_job

pytestmark = [pytest.mark.slow]

# The real-worker fixture lives with the GPU task tests.


@pytest.fixture
def private_broker(tmp_path, settings):
    """A private Redis the producer sends to (for real: not eager); stopped at the end."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    celery_app.conf.task_always_eager = False
    _use_broker(server.url())
    yield server
    server.stop()
    _use_broker(settings.CELERY_BROKER_URL)


def _queued(server: PrivateRedis) -> int:
    return server.client().llen("default")


def _resent_or_ran(job: Job) -> bool:
    return job.status != JobStatus.QUEUED or "Re-sent" in job.message


def _queue_ingest(project, manager) -> Job:
    scene = scene_create_from_path(project=project, user=manager, source=NEON)
    with transaction.atomic():
        return ingest_job_start(scene=scene, user=manager)


@pytest.mark.worker
def test_job_lost_by_a_broker_restart_is_resent_and_run(start_worker, tmp_path, project, manager):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        _use_broker(server.url())  # after start_worker's own broker choice
        job = _queue_ingest(project, manager)
        assert _queued(server) == 1
        # The broker restarts without its data: the job's message is gone, its row still says queued.
        server.stop()
        server.start()
        assert _queued(server) == 0
        assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED

        started = time.monotonic()
        start_worker("default", CELERY_BROKER_URL=server.url(), JOB_QUEUE_RECONCILE_S=1)
        resent = wait_for_job(job.pk, timeout_s=120, until=_resent_or_ran)
        t_resent = time.monotonic() - started
        done = wait_for_job(job.pk, timeout_s=180)
        t_done = time.monotonic() - started
        print(f"\nlost job re-sent {t_resent:.1f} s and succeeded {t_done:.1f} s after the worker was started")
        assert done.status == JobStatus.SUCCEEDED, (done.error, done.message)
        assert done.attempts == 1, "run once"
        assert resent.status != JobStatus.FAILED
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_retry_of_a_job_the_broker_lost_is_accepted(private_broker, project, manager, settings):
    settings.JOB_QUEUE_RECONCILE_S = 1
    job = _queue_ingest(project, manager)
    private_broker.stop()
    private_broker.start()
    client = client_for(manager)
    # Just queued: it may still be on its way, so it is not "lost" yet and a retry would duplicate it.
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now())
    assert client.post(f"/api/jobs/{job.pk}/retry/").status_code == 409
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(seconds=5))
    assert broker.job_is_lost(Job.objects.get(pk=job.pk))
    response = client.post(f"/api/jobs/{job.pk}/retry/")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "queued"
    assert _queued(private_broker) == 1
    # Its message is back in the broker: not lost, and the reconcile leaves it alone.
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(seconds=5))
    assert broker.jobs_reconcile() == []


@pytest.mark.django_db(transaction=True)
def test_reconcile_resends_only_lost_jobs(private_broker, project, manager, settings):
    settings.JOB_QUEUE_RECONCILE_S = 1
    lost = _queue_ingest(project, manager)
    private_broker.stop()
    private_broker.start()
    kept = _queue_ingest(project, manager)
    Job.objects.update(queued_at=timezone.now() - timedelta(seconds=5))
    assert broker.jobs_reconcile() == [lost.pk]
    assert "Re-sent" in Job.objects.get(pk=lost.pk).message
    assert _queued(private_broker) == 2
    assert broker.broker_job_ids() == {lost.pk, kept.pk}
    # Broker down: nothing to compare with, so nothing is touched.
    private_broker.stop()
    Job.objects.update(queued_at=timezone.now() - timedelta(seconds=5))
    assert broker.jobs_reconcile() == []
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.QUEUED}


@pytest.mark.django_db(transaction=True)
def test_upload_while_the_queue_is_down_answers_503_and_keeps_nothing(private_broker, project, manager, settings):
    private_broker.stop()
    client = client_for(manager)
    started = time.monotonic()
    with open(NEON, "rb") as fh:
        response = client.post(f"/api/projects/{project.pk}/scenes/upload/", {"file": fh}, format="multipart")
    elapsed = time.monotonic() - started
    print(f"\nupload with the broker down answered {response.status_code} in {elapsed:.2f} s")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "queue_unavailable" and "try again" in error["message"]
    assert elapsed < 3
    assert Scene.objects.count() == 0 and Job.objects.count() == 0
    assert not any(p.is_file() for p in settings.SCENES_DIR.rglob("*"))

    # Back up: the same upload goes through once, with its message in the broker.
    private_broker.start()
    with open(NEON, "rb") as fh:
        response = client.post(f"/api/projects/{project.pk}/scenes/upload/", {"file": fh}, format="multipart")
    assert response.status_code == 202, response.json()
    assert Scene.objects.count() == 1 and Job.objects.count() == 1
    assert _queued(private_broker) == 1


@pytest.mark.django_db(transaction=True)
def test_starting_a_job_while_the_queue_is_down_answers_503_and_retry_works(private_broker, project, manager):
    scene = scene_create_from_path(project=project, user=manager, source=NEON)
    client = client_for(manager)
    private_broker.stop()
    started = time.monotonic()
    response = client.post(f"/api/scenes/{scene.pk}/ingest/", {}, format="json")
    elapsed = time.monotonic() - started
    print(f"\nstarting a job with the broker down answered {response.status_code} in {elapsed:.2f} s")
    assert response.status_code == 503 and response.json()["error"]["code"] == "queue_unavailable"
    assert Job.objects.count() == 0, "rolled back: no job queued forever"

    # The broker dies between the check and the send (after the commit): the job says so and can be retried.
    private_broker.start()
    with pytest.raises(QueueUnavailable), transaction.atomic():
        job = ingest_job_start(scene=scene, user=manager)
        private_broker.stop()
        started = time.monotonic()
    print(f"a send to the dead broker gave up after {time.monotonic() - started:.2f} s")
    assert time.monotonic() - started < 3
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "queue was unavailable" in job.error
    private_broker.start()
    response = client.post(f"/api/jobs/{job.pk}/retry/")
    assert response.status_code == 202, response.json()
    assert _queued(private_broker) == 1
