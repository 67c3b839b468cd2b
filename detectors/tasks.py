"""Celery tasks of the detector loop: ids in, one service call (training and YOLO proposals on the gpu queue by the
`gpu_` prefix, probe proposals on the default queue)."""

from celery import shared_task

from gpu_tasks.tasks import GPU_TASK, REQUERY_TASK, _run

from . import probe_proposals, training, yolo_proposals


@shared_task(**GPU_TASK)
def gpu_train_task(job_id: int) -> None:
    """Train a YOLO model version (gpu queue)."""
    _run(training.train_job_run, job_id)


@shared_task(**GPU_TASK)
def gpu_predict_task(job_id: int) -> None:
    """YOLO proposals on a scene (gpu queue)."""
    _run(yolo_proposals.predict_job_run, job_id)


@shared_task(**REQUERY_TASK)
def probe_proposals_task(job_id: int) -> None:
    """Probe proposals from a scene's cached grid (default queue: seconds on the CPU, no backbone)."""
    _run(probe_proposals.probe_job_run, job_id)
