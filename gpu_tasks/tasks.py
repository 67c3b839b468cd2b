"""Celery tasks: ids in, one service call. Queue routing is in settings (gpu_* tasks go to `gpu`)."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def ingest_scene_task(job_id: int) -> None:
    """Ingest an uploaded scene (default queue)."""
    services.ingest_job_run(job_id=job_id)
