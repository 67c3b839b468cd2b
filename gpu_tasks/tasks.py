"""Celery tasks: ids in, one service call. Queue routing is in settings (gpu_* to `gpu`, interactive_* to
`gpu_interactive`, the rest to `default`)."""

import logging
from collections.abc import Callable

from celery import shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError

from . import services
from .models import Job

log = logging.getLogger(__name__)

# Only a lost database connection is worth a retry; every other failure is recorded on the Job row.
TRANSIENT = (OperationalError, InterfaceError)
# A killed worker's job is redelivered (acks_late + reject_on_worker_lost); the Job row's claim makes that safe.
# Database retries wait 5, 10, 20 ... s up to JOB_DB_RETRY_MAX_S apart (no jitter, which could make one
# immediate): a PostgreSQL restart or failover is ridden out instead of the retries being spent in a second.
JOB_TASK = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT,
    "max_retries": settings.JOB_DB_RETRIES,
    "retry_backoff": 5,
    "retry_backoff_max": settings.JOB_DB_RETRY_MAX_S,
    "retry_jitter": False,
}
INGEST_TASK = {**JOB_TASK, "time_limit": 6 * 3600, "soft_time_limit": 6 * 3600 - 60}
# Update proposals takes seconds on a cached grid: five minutes ends a pathological one, never a normal one.
REQUERY_TASK = {**JOB_TASK, "time_limit": 300, "soft_time_limit": 240}
GPU_TASK = {
    **JOB_TASK,
    "time_limit": settings.GPU_JOB_TIME_LIMIT_S,
    "soft_time_limit": settings.GPU_JOB_TIME_LIMIT_S - 60,
}


def _run(runner: Callable[..., object], job_id: int) -> None:
    """Run a job's service; a message whose job row was deleted since (with its scene or project) is dropped."""
    try:
        runner(job_id=job_id)
    except Job.DoesNotExist:
        log.warning(
            "job %s no longer exists (deleted with its scene or project?); its queued message is dropped", job_id
        )


@shared_task(**INGEST_TASK)
def ingest_scene_task(job_id: int) -> None:
    """Ingest an uploaded scene (default queue)."""
    _run(services.ingest_job_run, job_id)


@shared_task(**GPU_TASK)
def gpu_embed_task(job_id: int) -> None:
    """Embed a scene's patch grid (gpu queue)."""
    _run(services.embed_job_run, job_id)


@shared_task(**GPU_TASK)
def gpu_search_task(job_id: int) -> None:
    """Visual search of a scene (gpu queue)."""
    _run(services.search_job_run, job_id)


@shared_task(**GPU_TASK)
def gpu_refine_task(job_id: int) -> None:
    """SAM2 refinement of detections (gpu queue)."""
    _run(services.refine_job_run, job_id)


@shared_task(**GPU_TASK)
def interactive_refine_task(job_id: int) -> None:
    """SAM2 refinement of one detection a reviewer is waiting for (gpu_interactive queue)."""
    _run(services.refine_job_run, job_id)


@shared_task(**REQUERY_TASK)
def requery_proposals_task(job_id: int) -> None:
    """Update proposals from a scene's cached grid (default queue: no backbone, never behind an embedding)."""
    _run(services.requery_job_run, job_id)


@worker_process_init.connect
def _warm_scoring(**_kwargs) -> None:
    """Import the scoring code (torch's CPU kernels, no model) when a prefork process starts, not in the first
    Update proposals a reviewer waits for (about 2 s on the 2-core machine). Solo-pool GPU workers load it anyway."""
    import torch  # noqa: F401

    from .inference import search  # noqa: F401
