"""Job life cycle (create, progress, finish) and the services that start and run jobs."""

import logging
import time
from collections.abc import Callable, Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from annotate.errors import DomainError
from annotate.models import Scene
from annotate.services import scene_ingest

from .models import Job, JobKind, JobStatus

log = logging.getLogger(__name__)

# Progress is written at most this often, so a fast loop does not hammer the database.
PROGRESS_MIN_INTERVAL_S = 0.5


def job_create(
    *, kind: str, project_id: int, scene: Scene | None = None, user: AbstractBaseUser | None = None,
    params: dict | None = None,
) -> Job:
    """A queued job."""
    return Job.objects.create(
        kind=kind, project_id=project_id, scene=scene, created_by=user, params=params or {},
        message="Waiting for a worker",
    )


def job_start(*, job: Job) -> Job:
    """Mark a job running (again, when a killed worker's job is redelivered)."""
    job.status, job.started_at, job.finished_at = JobStatus.RUNNING, timezone.now(), None
    job.progress, job.error, job.message = 0.0, "", "Started"
    job.save(update_fields=["status", "started_at", "finished_at", "progress", "error", "message"])
    return job


def job_progress_reporter(*, job: Job) -> Callable[[float, str], None]:
    """A progress callback that writes the job row (throttled; the final 1.0 always lands)."""
    last = {"t": 0.0}

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - last["t"] < PROGRESS_MIN_INTERVAL_S:
            return
        last["t"] = now
        fraction = min(max(float(fraction), 0.0), 1.0)
        Job.objects.filter(pk=job.pk).update(progress=fraction, message=message[:500])

    return report


def job_succeed(*, job: Job, result: dict | None = None, message: str = "Done") -> Job:
    """Mark a job succeeded."""
    job.status, job.progress, job.message = JobStatus.SUCCEEDED, 1.0, message[:500]
    job.result, job.finished_at = result or {}, timezone.now()
    job.save(update_fields=["status", "progress", "message", "result", "finished_at"])
    return job


def job_fail(*, job: Job, error: str) -> Job:
    """Mark a job failed with an error that says what to do."""
    job.refresh_from_db(fields=["progress"])
    job.status, job.error, job.finished_at = JobStatus.FAILED, error, timezone.now()
    job.message = "Failed"
    job.save(update_fields=["status", "error", "message", "finished_at"])
    return job


def job_run(*, job: Job, work: Callable[[Callable[[float, str], None]], tuple[dict, str]]) -> Job:
    """Run `work(progress) -> (result, message)` under the job row: running, then succeeded or failed."""
    job_start(job=job)
    try:
        result, message = work(job_progress_reporter(job=job))
    except DomainError as exc:
        return job_fail(job=job, error=exc.message)
    except Exception as exc:
        log.exception("job %s failed", job.pk)
        job_fail(job=job, error=f"Unexpected error: {exc}. Retry the job; report it if it happens again.")
        raise
    return job_succeed(job=job, result=result, message=message)


# ------------------------------------------------------------------------------------------ ingest
def ingest_job_start(*, scene: Scene, user: AbstractBaseUser | None, rgb_bands: Sequence[int] | None = None) -> Job:
    """Create an ingest job for a scene and queue it once the transaction commits."""
    from .tasks import ingest_scene_task

    job = job_create(
        kind=JobKind.INGEST, project_id=scene.project_id, scene=scene, user=user,
        params={"rgb_bands": list(rgb_bands) if rgb_bands else None},
    )
    transaction.on_commit(lambda: ingest_scene_task.delay(job.pk))
    return job


def ingest_job_run(*, job_id: int, progress_extra: Callable[[float, str], None] | None = None) -> Job:
    """Run an ingest job: the scene's ingest service under the job row."""
    job = Job.objects.select_related("scene").get(pk=job_id)
    if job.status in JobStatus.finished():
        return job

    def work(progress):
        def both(fraction, message):
            progress(fraction, message)
            if progress_extra:
                progress_extra(fraction, message)

        scene = scene_ingest(scene=job.scene, rgb_bands=job.params.get("rgb_bands"), progress=both)
        result = {"scene_id": scene.pk, "width": scene.width, "height": scene.height, "gsd_m": scene.gsd_m}
        return result, f"Scene ready: {scene.width} x {scene.height} px at {scene.gsd_m:.2f} m"

    return job_run(job=job, work=work)
