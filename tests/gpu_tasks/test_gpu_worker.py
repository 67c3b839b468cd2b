"""GPU jobs on a real Celery worker (gpu queue, solo pool) with a tiny random DINOv2 loaded from disk."""

import signal

import pytest

from annotate.models import Annotation, Detection, DetectionSource
from gpu_tasks.models import Job, JobStatus, PatchGrid
from tests.conftest import client_for
from tests.gpu_tasks.conftest import wait_for_job
from tests.gpu_tasks.support import PLANTED, planted_scene, px_box_to_polygon

pytestmark = [pytest.mark.slow, pytest.mark.worker]


def test_a_killed_worker_leaves_a_failed_job_that_reruns_cleanly(
    start_worker, tiny_dinov2_dir, ingested, manager, tmp_path, settings
):
    # No automatic re-queue here (tests/faults/test_dead_workers.py has those): the job is left failed.
    settings.JOB_MAX_AUTO_RETRIES = 0
    # 2800 px with batch 1 gives the tiny model ~60 tiles: long enough to kill the worker midway.
    scene = ingested(planted_scene(tmp_path / "big.tif", size_px=2800))
    Annotation.objects.create(
        scene=scene,
        object_class=scene.project.classes.get(name="Brick Kiln"),
        author=manager,
        geometry=px_box_to_polygon(scene, PLANTED[0].box_px, inset=8),
    )
    env = {"DINO_MODEL": tiny_dinov2_dir, "EMBED_BATCH_SIZE": 1, "JOB_MAX_AUTO_RETRIES": 0, "TORCH_DEVICE": "cpu"}
    first = start_worker("gpu", **env)
    api = client_for(manager)
    response = api.post(f"/api/scenes/{scene.pk}/search/", {"default_threshold": 0.9}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    wait_for_job(job_id, timeout_s=180, until=lambda j: j.status == JobStatus.RUNNING and j.progress > 0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.RUNNING and job.progress < 0.8  # killed midway, mid-embedding

    # Its worker's pid is gone from this host: the next read ends it failed, saying why, and it can be run again.
    failed = wait_for_job(
        job_id, timeout_s=10, until=lambda j: api.get(f"/api/jobs/{j.pk}/").json()["status"] == JobStatus.FAILED
    )
    failed.refresh_from_db()  # as the read left it
    assert "stopped" in failed.error
    retry = api.post(f"/api/jobs/{job_id}/retry/")
    assert retry.status_code == 202, retry.content
    start_worker("gpu", **env)
    job = wait_for_job(job_id, timeout_s=300)
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.message)
    assert job.attempts == 2
    # One grid, complete; the detections are this job's, written once.
    assert PatchGrid.objects.filter(scene=scene).count() == 1
    dets = list(scene.detections.filter(job_id=job_id))
    assert len(dets) == job.result["detections"]
    assert len({d.geometry.wkb.hex() for d in dets}) == len(dets)
    assert set(job.result["timings"]) >= {"read", "forward", "similarity"}

    # Retrying a finished job is refused with 409: there is nothing to redo.
    assert api.post(f"/api/jobs/{job_id}/retry/").status_code == 409


def test_refine_this_is_served_by_the_interactive_worker_while_the_gpu_queue_is_busy(
    start_worker, random_sam2_checkpoint, ingested, manager, tmp_path
):
    scene = ingested(planted_scene(tmp_path / "planted.tif"))
    kiln = scene.project.classes.get(name="Brick Kiln")
    Annotation.objects.create(
        scene=scene, object_class=kiln, author=manager, geometry=px_box_to_polygon(scene, PLANTED[0].box_px, inset=8)
    )
    drawn = px_box_to_polygon(scene, PLANTED[1].box_px, inset=-6)
    det = Detection.objects.create(
        scene=scene, object_class=kiln, geometry=drawn, bbox=drawn.envelope, source=DetectionSource.MANUAL
    )
    # Only the interactive worker runs: a search queued on `gpu` waits, as behind a long job.
    start_worker("gpu_interactive", SAM2_MODEL=random_sam2_checkpoint, TORCH_DEVICE="cpu")
    api = client_for(manager)
    search = api.post(f"/api/scenes/{scene.pk}/search/", {}, format="json")
    assert search.status_code == 202, search.content
    response = api.post(f"/api/detections/{det.pk}/refine/")
    assert response.status_code == 202, response.content

    job = wait_for_job(response.json()["id"], timeout_s=120)
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.message)
    assert job.params["interactive"] is True
    assert Job.objects.get(pk=search.json()["id"]).status == JobStatus.QUEUED
    det.refresh_from_db()
    assert det.version == 2 and det.geometry.valid
