"""An upload goes through real Redis to a real Celery worker process, which ingests it and reports progress."""

import io
import json
import re
import time
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from config.celery import app as celery_app
from gpu_tasks.models import Job, JobStatus
from tests.conftest import NEON, client_for
from tests.datasets.golden_scene import golden_scene
from tests.gpu_tasks.conftest import wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.worker]


def test_upload_is_ingested_by_a_real_worker(start_worker, project, manager):
    # The producer this test talks through really sends to the broker (an eager app would run the job inline).
    assert celery_app.conf.task_always_eager is False
    with open(NEON, "rb") as fh:
        response = client_for(manager).post(
            f"/api/projects/{project.pk}/scenes/upload/", {"file": fh}, format="multipart"
        )
    assert response.status_code == 202
    body = response.json()
    assert body["job"]["status"] == "queued" and body["scene"]["status"] == "uploaded"
    job_id = body["job"]["id"]
    # No worker yet: nothing may run the job, so it waits in the queue.
    time.sleep(2)
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED

    worker = start_worker("default")
    job = wait_for_job(job_id)
    worker.terminate()
    output = worker.communicate(timeout=30)[0]
    assert job.status == JobStatus.SUCCEEDED, (job.error, output)
    assert job.progress == 1.0 and job.started_at <= job.finished_at
    assert job.scene.status == "ready" and job.scene.max_zoom >= 21
    # The worker process is the one that ran it, once: its own log says it finished the task.
    assert re.search(r"Task gpu_tasks\.tasks\.ingest_scene_task\[[0-9a-f-]+\] succeeded", output), output[-3000:]
    assert job.attempts == 1


def test_an_export_and_an_import_run_on_a_real_worker(start_worker, project, manager):
    """The datasets tasks are found by a worker (autodiscovered by name) and run their jobs on the default queue."""
    golden_scene(project, manager)
    client = client_for(manager)
    worker = start_worker("default")
    response = client.post(f"/api/projects/{project.pk}/exports/", {"format": "geojson", "save": False},
                           format="json")
    assert response.status_code == 202, response.content[:300]
    export = wait_for_job(response.json()["job"]["id"])
    assert export.status == JobStatus.SUCCEEDED, export.error
    download = client.get(f"/api/exports/{export.pk}/download/")
    geojson = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))).read("objects.geojson")
    assert len(json.loads(geojson)["features"]) == 5

    upload = client.post(f"/api/projects/{project.pk}/imports/",
                         {"file": SimpleUploadedFile("objects.geojson", geojson)}, format="multipart")
    assert upload.status_code == 201, upload.content[:300]
    run = client.post(f"/api/imports/{upload.json()['id']}/run/", {"target": "examples"}, format="json")
    assert run.status_code == 202, run.content[:300]
    imported = wait_for_job(run.json()["job"]["id"])
    worker.terminate()
    output = worker.communicate(timeout=30)[0]
    assert imported.status == JobStatus.SUCCEEDED, (imported.error, output[-2000:])
    assert imported.result["imported"] == 5
    assert re.search(r"Task datasets\.tasks\.export_dataset_task\[[0-9a-f-]+\] succeeded", output), output[-3000:]
    assert re.search(r"Task datasets\.tasks\.import_labels_task\[[0-9a-f-]+\] succeeded", output), output[-3000:]
