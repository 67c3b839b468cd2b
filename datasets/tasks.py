"""Celery tasks of the datasets app (default queue): ids in, one service call."""

from celery import shared_task

from gpu_tasks.tasks import JOB_TASK, _run

from . import export_services, import_services

# An export of a large project takes minutes, not hours: two hours ends a pathological one, never a normal one.
DATASET_TASK = {**JOB_TASK, "time_limit": 2 * 3600, "soft_time_limit": 2 * 3600 - 60}


@shared_task(**DATASET_TASK)
def export_dataset_task(job_id: int) -> None:
    """Write a dataset export and its zip (default queue)."""
    _run(export_services.export_job_run, job_id)


@shared_task(**DATASET_TASK)
def import_labels_task(job_id: int) -> None:
    """Import a stored label file (default queue)."""
    _run(import_services.import_job_run, job_id)
