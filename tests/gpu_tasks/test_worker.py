"""An upload goes through real Redis to a real Celery worker process, which ingests it and reports progress."""

from django.conf import settings

from gpu_tasks.models import JobStatus
from tests.conftest import NEON, client_for
from tests.gpu_tasks.conftest import wait_for_job


def test_upload_is_ingested_by_a_real_worker(start_worker, project, manager):
    worker = start_worker("default")
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
