"""Job life cycle (create, progress, finish) and the services that start and run jobs."""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate.errors import Conflict, DomainError, QueueUnavailable, SceneNotReady
from annotate.models import Scene, SceneStatus
from annotate.permissions import Action, require, role_allows
from annotate.services import scene_ingest

from . import broker, job_admission
from .embedding import grid_summary, scene_grid_ensure, scene_grids_delete
from .inference.errors import Cancelled, IncompatibleEmbeddings, InsufficientDiskSpace, ModelUnavailable
from .liveness import job_is_stalled, job_worker_dead, this_worker
from .models import Job, JobKind, JobStatus
from .profiling import job_profiling, trace_path
from .refinement import detections_refine
from .requery import requery_params, scene_requery
from .run_context import RunContext
from .visual_search import SearchRequest, scene_search

log = logging.getLogger(__name__)

# Progress is written at most this often, so a fast loop does not hammer the database.
PROGRESS_MIN_INTERVAL_S = 0.5
# A running job looks for a cancel request at most this often (one indexed read).
CANCEL_POLL_S = 1.0


def job_create(
    *,
    kind: str,
    project_id: int,
    scene: Scene | None = None,
    user: AbstractBaseUser | None = None,
    params: dict | None = None,
) -> Job:
    """A queued job."""
    return Job.objects.create(
        kind=kind,
        project_id=project_id,
        scene=scene,
        created_by=user,
        params=params or {},
        message="Waiting for a worker",
    )


def job_claim(*, job: Job) -> bool:
    """Mark a queued job running here; False when a live worker holds it (a duplicate delivery) or it finished.

    A running job whose worker is dead (job_worker_dead), or that this very process held (a retry after a
    database outage), is taken over: a redelivery after a killed worker or pool child must not be dropped.
    """
    job.refresh_from_db()
    host, pid = this_worker()
    mine = job.worker_host == host and job.worker_pid == pid
    takeover = job.status == JobStatus.RUNNING and (mine or job_worker_dead(job))
    claimable = Q(status=JobStatus.QUEUED)
    if takeover:  # compare-and-swap on the heartbeat: of two workers taking it over, one wins
        claimable |= Q(status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at, worker_pid=job.worker_pid)
    now = timezone.now()
    claimed = (
        Job.objects.filter(pk=job.pk)
        .filter(claimable)
        .update(
            status=JobStatus.RUNNING,
            started_at=now,
            finished_at=None,
            heartbeat_at=now,
            progress=0.0,
            error="",
            message="Started",
            attempts=F("attempts") + 1,
            worker_host=host,
            worker_pid=pid,
        )
    )
    if claimed and takeover:
        log.warning("job %s: its worker (%s) is gone; taking it over", job.pk, _worker_label(job))
    job.refresh_from_db()
    return claimed == 1


def job_start(*, job: Job) -> Job:
    """Mark a job running now, whatever its state (used by commands that run a job inline)."""
    now = timezone.now()
    job.status, job.started_at, job.finished_at, job.heartbeat_at = JobStatus.RUNNING, now, None, now
    job.progress, job.error, job.message = 0.0, "", "Started"
    job.worker_host, job.worker_pid = this_worker()
    job.save(
        update_fields=[
            "status", "started_at", "finished_at", "heartbeat_at", "progress", "error", "message", "worker_host",
            "worker_pid",
        ]
    )
    return job


def job_progress_reporter(*, job: Job) -> Callable[[float, str], None]:
    """A progress callback that writes the job row and its heartbeat (throttled; the final 1.0 always lands)."""
    last = {"t": 0.0}

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - last["t"] < PROGRESS_MIN_INTERVAL_S:
            return
        last["t"] = now
        fraction = min(max(float(fraction), 0.0), 1.0)
        Job.objects.filter(pk=job.pk).update(progress=fraction, message=message[:500], heartbeat_at=timezone.now())

    return report


@contextmanager
def job_heartbeat(*, job: Job):
    """Write the job's heartbeat every JOB_HEARTBEAT_S from a thread while the block runs.

    A thread, not the progress reports: one forward pass or a GDAL read may take longer than the dead-worker
    threshold, and a live worker must never look dead. It writes only while this process still holds the job.
    """
    stop = threading.Event()
    mine = Job.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, worker_host=job.worker_host, worker_pid=job.worker_pid
    )

    def beat() -> None:
        try:
            while not stop.wait(settings.JOB_HEARTBEAT_S):
                try:
                    mine.update(heartbeat_at=timezone.now())
                except DatabaseError:  # the database is away: beat again when it is back
                    log.warning("job %s: heartbeat not written (database unavailable)", job.pk)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"job-{job.pk}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def job_cancel_checker(*, job: Job) -> Callable[[], bool]:
    """A should_cancel() for inference loops: true once someone asked to cancel (read at most once a second)."""
    state = {"t": 0.0, "cancel": False}

    def should_cancel() -> bool:
        now = time.monotonic()
        if not state["cancel"] and now - state["t"] >= CANCEL_POLL_S:
            state["t"] = now
            state["cancel"] = Job.objects.filter(pk=job.pk, cancel_requested=True).exists()
        return state["cancel"]

    return should_cancel


def job_succeed(*, job: Job, result: dict | None = None, message: str = "Done") -> Job:
    """Mark a job succeeded."""
    job.status, job.progress, job.message = JobStatus.SUCCEEDED, 1.0, message[:500]
    job.result, job.finished_at = result or {}, timezone.now()
    job.save(update_fields=["status", "progress", "message", "result", "finished_at"])
    return job


def job_fail(*, job: Job, error: str, result: dict | None = None) -> Job:
    """Mark a job failed with an error that says what to do."""
    job.refresh_from_db(fields=["progress"])
    job.status, job.error, job.finished_at = JobStatus.FAILED, error, timezone.now()
    job.message = "Failed"
    if result is not None:
        job.result = result
    job.save(update_fields=["status", "error", "message", "finished_at", "result"])
    return job


def job_mark_cancelled(*, job: Job, result: dict | None = None, message: str = "") -> Job:
    """Mark a job cancelled, saying how far it got."""
    job.refresh_from_db(fields=["progress"])
    job.status, job.finished_at = JobStatus.CANCELLED, timezone.now()
    fallback = f"Cancelled at {job.progress:.0%}; run it again to finish (work already done is kept)"
    job.message = message[:500] or fallback
    if result is not None:
        job.result = result
    job.save(update_fields=["status", "message", "finished_at", "result"])
    return job


# Who may start a job of each kind, and so retry or cancel one (a reviewer may not re-run an ingest).
JOB_KIND_ACTION: dict[str, Action] = {
    JobKind.INGEST: Action.UPLOAD_SCENE,
    JobKind.EMBED: Action.RUN_JOBS,
    JobKind.SEARCH: Action.RUN_JOBS,
    JobKind.REFINE: Action.RUN_JOBS,
    JobKind.EXPORT: Action.EXPORT_DATASET,
    JobKind.IMPORT: Action.IMPORT_EXAMPLES,
    JobKind.TRAIN: Action.RUN_JOBS,
    JobKind.PREDICT: Action.RUN_JOBS,
    JobKind.PROBE: Action.RUN_JOBS,
}
# Update proposals is part of reviewing: whoever may review or draw examples may ask for it (and retry or
# cancel it), whether or not their role may run GPU jobs; it costs a few CPU seconds and no backbone.
JOB_KIND_ANY_ACTION: dict[str, tuple[Action, ...]] = {JobKind.REQUERY: (Action.REVIEW, Action.ANNOTATE)}


def job_kind_require(*, kind: str, role: str | None, params: dict | None = None) -> None:
    """NotAllowed unless the role may start jobs of this kind (kinds not in the tables: managers only)."""
    params = params or {}
    if kind == JobKind.REFINE and params.get("interactive") and len(params.get("detection_ids") or []) == 1:
        return require(role, Action.REFINE_ONE)  # "refine this" (S) is part of reviewing one detection
    if kind in JOB_KIND_ANY_ACTION:
        actions = JOB_KIND_ANY_ACTION[kind]
        if not any(role_allows(role, action) for action in actions):
            require(role, actions[0])
        return
    require(role, JOB_KIND_ACTION.get(kind, Action.EDIT_PROJECT))


def job_cancel(*, job: Job, role: str | None) -> Job:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next batch."""
    job_kind_require(kind=job.kind, role=role, params=job.params)
    if job.status in JobStatus.finished():
        raise Conflict(f"The job has already {job.status}; there is nothing to cancel.")
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    cancelled_now = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled before it started"
    )
    job.refresh_from_db()
    if not cancelled_now and job_worker_dead(job):  # nobody will reach "the next batch": end it now
        cancelled_now = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at).update(
            status=JobStatus.CANCELLED,
            finished_at=timezone.now(),
            message=f"Cancelled (the worker running it had stopped: {_worker_label(job)})",
        )
        job.refresh_from_db()
    if not cancelled_now:
        Job.objects.filter(pk=job.pk).update(message="Cancelling at the next batch")
        job.refresh_from_db()
    return job


def _worker_label(job: Job) -> str:
    return f"pid {job.worker_pid or '?'} on {job.worker_host or 'an unknown host'}"


def _job_interrupt(*, job: Job) -> bool:
    """Re-queue a job whose worker died (or fail it past JOB_MAX_AUTO_RETRIES); False when it changed meanwhile."""
    who, most = _worker_label(job), settings.JOB_MAX_AUTO_RETRIES
    attempt = job.auto_retries + 1
    # Compare-and-swap on the heartbeat: a live worker's beat, or another reconciler, wins.
    unchanged = Job.objects.filter(
        pk=job.pk, status=JobStatus.RUNNING, heartbeat_at=job.heartbeat_at, worker_pid=job.worker_pid
    )
    now = timezone.now()
    if job.cancel_requested:
        done = unchanged.update(
            status=JobStatus.CANCELLED, finished_at=now, message=f"Cancelled (the worker running it stopped: {who})"
        )
    elif attempt <= most:
        with transaction.atomic():
            done = unchanged.update(
                status=JobStatus.QUEUED,
                auto_retries=attempt,
                message=(
                    f"Interrupted: the worker running this job stopped ({who}); "
                    f"re-queued automatically (attempt {attempt} of {most})"
                ),
            )
            if done:
                job.refresh_from_db()
                _enqueue(job)
    else:
        done = unchanged.update(
            status=JobStatus.FAILED,
            finished_at=now,
            message="Failed",
            error=(
                f"The worker running this job stopped ({who}), again after {most} automatic re-queues; it may need "
                "more memory or time than a worker has. Retry it (POST /api/jobs/{id}/retry/) once that is fixed."
            ).replace("{id}", str(job.pk)),
        )
    if done:
        log.warning("job %s: worker %s stopped; now %s", job.pk, who, Job.objects.get(pk=job.pk).status)
    return bool(done)


def jobs_reconcile() -> list[int]:
    """Re-queue (or fail, or cancel) every running job whose worker died; the ids of the jobs it changed."""
    changed = []
    for job in Job.objects.filter(status=JobStatus.RUNNING):
        if job_worker_dead(job):
            try:
                if _job_interrupt(job=job):
                    changed.append(job.pk)
            except QueueUnavailable:  # the broker's own reconcile re-sends it once Redis is back
                log.warning("job %s: worker dead, queue unavailable; the broker reconcile re-sends it", job.pk)
    return changed


_last_reconcile = {"t": float("-inf")}


def jobs_reconcile_throttled() -> None:
    """Dead-worker and lost-message reconcile at most once per JOB_HEARTBEAT_S here: cheap enough for every job read."""
    now = time.monotonic()
    if now - _last_reconcile["t"] < settings.JOB_HEARTBEAT_S:
        return
    _last_reconcile["t"] = now
    try:
        jobs_reconcile()
        broker.jobs_reconcile()  # queued jobs the broker lost are re-sent (it does nothing while the broker is down)
    except DatabaseError:  # a read must not fail because of housekeeping; the read itself says what is wrong
        log.exception("job reconcile failed")


def job_requeue(*, job: Job, role: str | None, user: AbstractBaseUser | None = None) -> Job:
    """Queue a failed, cancelled or stalled job again with the same parameters (its output is replaced).

    Needs the permission to start a job of its kind; a GPU job counts against `user`'s pending jobs.
    """
    job_kind_require(kind=job.kind, role=role, params=job.params)
    # A queued job the broker lost (restarted without its data) may be run again too.
    retryable = job.status in (JobStatus.FAILED, JobStatus.CANCELLED) or job_is_stalled(job)
    # An interrupted job re-queued by itself may be sent again too (a duplicate delivery does nothing).
    retryable = retryable or (job.status == JobStatus.QUEUED and job.auto_retries > 0)
    if not retryable and not broker.job_is_lost(job):
        raise Conflict(f"The job is {job.status}; only failed, cancelled or stalled jobs can be run again.")
    if job.kind in job_admission.GPU_KINDS:
        job_admission.user_pending_check(user=user)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.QUEUED,
        cancel_requested=False,
        progress=0.0,
        error="",
        finished_at=None,
        queued_at=timezone.now(),  # the broker reconcile counts from here
        auto_retries=0,
        message="Waiting for a worker",
    )
    job.refresh_from_db()
    _enqueue(job)
    return job


def _enqueue(job: Job) -> None:
    """Send a job's task once the surrounding transaction commits; QueueUnavailable (503) when the broker is down.

    The broker is asked first, inside the transaction, so a request made while it is down rolls back what it
    created; one that dies between the check and the send leaves the job failed with a retry that works.
    """
    try:
        broker.broker_check()
    except QueueUnavailable:
        if not transaction.get_connection().in_atomic_block:  # nothing to roll back: say so on the row
            broker.job_mark_unsent(job=job)
        raise
    transaction.on_commit(lambda: broker.job_send(job=job), robust=False)


Progress = Callable[[float, str], None]
Work = Callable[[RunContext], tuple[dict, str]]


def job_run(*, job: Job, work: Work, claim: bool = True, progress_extra: Progress | None = None) -> Job:
    """Run `work(run: RunContext) -> (result, message)` under the job row.

    The row ends succeeded, failed (with a message saying what to do) or cancelled; stage timings land in
    result["timings"] in every case. A duplicate delivery of a job another worker holds does nothing.
    """
    if claim:
        if not job_claim(job=job):
            log.info("job %s is %s elsewhere; skipping this delivery", job.pk, job.status)
            return job
    else:
        job_start(job=job)
    timings: dict = {}
    started = time.perf_counter()
    progress = job_progress_reporter(job=job)
    if progress_extra is not None:
        to_row = progress

        def progress(fraction: float, message: str) -> None:
            to_row(fraction, message)
            progress_extra(fraction, message)

    def with_timings(result: dict | None = None) -> dict:
        timings["total"] = time.perf_counter() - started
        extra = {"timings": {k: round(v, 4) for k, v in timings.items()}}
        if settings.GPU_PROFILE and trace_path(job).exists():
            extra["profile_trace"] = str(trace_path(job))
        return {**(result or {}), **extra}

    try:
        with job_heartbeat(job=job), job_profiling(job=job):
            run = RunContext(progress=progress, should_cancel=job_cancel_checker(job=job), timings=timings)
            result, message = work(run)
    except (OperationalError, InterfaceError):
        # The database is away: the failure cannot be recorded. The task retries with backoff and takes the
        # job over (this process still holds it); past its retries the reconcile sees a silent worker.
        log.exception("job %s: database unavailable", job.pk)
        raise
    except Cancelled as exc:
        return job_mark_cancelled(job=job, result=with_timings(exc.result), message=exc.job_message)
    except DomainError as exc:
        return job_fail(job=job, error=exc.message, result=with_timings())
    except (ModelUnavailable, IncompatibleEmbeddings, InsufficientDiskSpace) as exc:
        return job_fail(job=job, error=str(exc), result=with_timings())
    except Exception as exc:
        log.exception("job %s failed", job.pk)
        job_fail(
            job=job,
            error=f"Unexpected error: {exc}. Retry the job; report it if it happens again.",
            result=with_timings(),
        )
        raise
    return job_succeed(job=job, result=with_timings(result), message=message)


# ------------------------------------------------------------------------------------------ ingest
def ingest_job_start(*, scene: Scene, user: AbstractBaseUser | None, rgb_bands: Sequence[int] | None = None) -> Job:
    """Create an ingest job for a scene and queue it once the transaction commits."""
    job = job_create(
        kind=JobKind.INGEST,
        project_id=scene.project_id,
        scene=scene,
        user=user,
        params={"rgb_bands": list(rgb_bands) if rgb_bands else None},
    )
    _enqueue(job)
    return job


def ingest_job_run(*, job_id: int, progress_extra: Callable[[float, str], None] | None = None) -> Job:
    """Run an ingest job: the scene's ingest service under the job row."""
    job = Job.objects.select_related("scene").get(pk=job_id)

    def work(run: RunContext):
        scene = scene_ingest(scene=job.scene, rgb_bands=job.params.get("rgb_bands"), progress=run.progress)
        # New pixels or bands make the scene's cached patch grids stale.
        scene_grids_delete(scene=scene)
        result = {"scene_id": scene.pk, "width": scene.width, "height": scene.height, "gsd_m": scene.gsd_m}
        return result, f"Scene ready: {scene.width} x {scene.height} px at {scene.gsd_m:.2f} m"

    return job_run(job=job, work=work, progress_extra=progress_extra)


# ------------------------------------------------------------------------------------------ embed, search, refine
@dataclass(frozen=True)
class JobStart:
    """The outcome of asking for a job: the job, and whether it is new (else an identical one was pending)."""

    job: Job
    created: bool


def scene_job_submit(
    *, kind: str, scene: Scene, user: AbstractBaseUser | None, role: str | None, params: dict, enqueue: bool = True
) -> JobStart:
    """Admit and queue a GPU job of any kind on a ready scene (another app's kind, e.g. YOLO proposals)."""
    return _scene_job_submit(kind=kind, scene=scene, user=user, role=role, params=params, enqueue=enqueue)


def _scene_job_submit(
    *, kind: str, scene: Scene, user: AbstractBaseUser | None, role: str | None, params: dict, enqueue: bool = True
) -> JobStart:
    """Admit a GPU job for a ready scene (cost, per-user cap, duplicates) and queue it once the transaction commits.

    An identical job already queued or running is returned instead of a new one. enqueue=False: run inline.
    """
    job_kind_require(kind=kind, role=role, params=params)
    if scene.status != SceneStatus.READY:
        raise SceneNotReady(f"Scene {scene.name!r} is {scene.status}; wait until its ingest has finished.")
    with transaction.atomic():
        if enqueue and (existing := job_admission.gpu_job_admit(kind=kind, scene=scene, user=user, params=params)):
            return JobStart(job=existing, created=False)
        if not enqueue:  # run inline by an operator's command or a test: still bounded in cost
            job_admission.job_cost_check(cost=job_admission.job_cost_estimate(kind=kind, scene=scene, params=params))
        job = job_create(kind=kind, project_id=scene.project_id, scene=scene, user=user, params=params)
        if enqueue:
            _enqueue(job)
    return JobStart(job=job, created=True)


def embed_job_submit(
    *, scene: Scene, user: AbstractBaseUser | None, role: str | None, scale: float = 1.0, enqueue: bool = True
) -> JobStart:
    """Ask for the embedding of a scene's patch grid at `scale` (the job does nothing when it exists)."""
    return _scene_job_submit(
        kind=JobKind.EMBED, scene=scene, user=user, role=role, params={"scale": float(scale)}, enqueue=enqueue
    )


def search_job_submit(
    *,
    scene: Scene,
    user: AbstractBaseUser | None,
    role: str | None,
    params: SearchRequest | dict,
    enqueue: bool = True,
) -> JobStart:
    """Ask for a visual search of a scene; `params` is a validated SearchRequest (a dict is validated first)."""
    if isinstance(params, dict):
        from .serializers import search_request_from_dict  # the one validation of search params

        params = search_request_from_dict(params, scene=scene)
    return _scene_job_submit(
        kind=JobKind.SEARCH, scene=scene, user=user, role=role, params=params.to_params(), enqueue=enqueue
    )


def refine_job_submit(
    *,
    scene: Scene,
    user: AbstractBaseUser | None,
    role: str | None,
    detection_ids: Sequence[int] | None = None,
    reverify: bool = True,
    interactive: bool = False,
    enqueue: bool = True,
) -> JobStart:
    """Ask for SAM2 refinement of chosen detections (or all proposed ones) of a scene.

    interactive: a reviewer waits for it ("refine this"): it goes to the gpu_interactive queue, whose worker
    is never busy with a long search.
    """
    ids = sorted({int(i) for i in detection_ids or []})  # normalised, so identical requests compare equal
    if ids and scene.detections.filter(pk__in=ids).count() != len(ids):
        raise DomainError("Some detections are not in this scene (or were deleted); reload and retry.")
    return _scene_job_submit(
        kind=JobKind.REFINE,
        scene=scene,
        user=user,
        role=role,
        params={"detection_ids": ids, "reverify": bool(reverify), "interactive": bool(interactive)},
        enqueue=enqueue,
    )


def requery_job_submit(
    *,
    scene: Scene,
    user: AbstractBaseUser | None,
    role: str | None,
    overrides: dict | None = None,
    enqueue: bool = True,
) -> JobStart:
    """Ask for "Update proposals": the scene's cached grid scored again with the current examples and decisions.

    Runs on the `default` (CPU) queue. `overrides`: validated search fields that replace the last search's
    (gpu_tasks.serializers.RequeryInputSerializer). NoCachedGrid (409) when the scene has never been embedded.
    An identical update still queued is returned instead of a new one.
    """
    job_kind_require(kind=JobKind.REQUERY, role=role)
    if scene.status != SceneStatus.READY:
        raise SceneNotReady(f"Scene {scene.name!r} is {scene.status}; wait until its ingest has finished.")
    with transaction.atomic():
        params = requery_params(scene=scene, overrides=overrides or {})
        if enqueue and (existing := job_admission.requery_admit(scene=scene, params=params)):
            return JobStart(job=existing, created=False)
        job = job_create(kind=JobKind.REQUERY, project_id=scene.project_id, scene=scene, user=user, params=params)
        if enqueue:
            _enqueue(job)
    return JobStart(job=job, created=True)


def _scene_job(job_id: int) -> Job:
    return Job.objects.select_related("scene", "scene__project").get(pk=job_id)


def embed_job_run(*, job_id: int, claim: bool = True, progress_extra: Progress | None = None) -> Job:
    """Run an embed job: build the scene's patch grid unless it exists."""
    job = _scene_job(job_id)

    def work(run: RunContext):
        grid = scene_grid_ensure(
            scene=job.scene,
            scale=job.params.get("scale", 1.0),
            job=job,
            run=run,
        )
        # Tiles an interrupted run had written already and this one did not embed again.
        result = {"grid": grid_summary(grid), "tiles_skipped": int(run.timings.get("tiles_skipped", 0))}
        return result, f"Embedded: {grid.grid_h} x {grid.grid_w} patches of {grid.dim} values ({grid.model_id})"

    return job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)


def search_job_run(*, job_id: int, claim: bool = True, progress_extra: Progress | None = None) -> Job:
    """Run a search job (embedding the scene first when needed)."""
    job = _scene_job(job_id)

    def work(run: RunContext):
        result = scene_search(
            scene=job.scene,
            job=job,
            request=SearchRequest.from_params(job.params),
            run=run,
        )
        return result, f"{result['detections']} candidates found"

    return job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)


def refine_job_run(*, job_id: int, claim: bool = True, progress_extra: Progress | None = None) -> Job:
    """Run a refine job."""
    job = _scene_job(job_id)

    def work(run: RunContext):
        result = detections_refine(
            scene=job.scene,
            job=job,
            detection_ids=job.params.get("detection_ids") or None,
            reverify=job.params.get("reverify", True),
            run=run,
        )
        refined, kept = result["refined"], result["kept_box"]
        return result, f"{refined} outlined by SAM2, {kept} kept {'its' if kept == 1 else 'their'} box"

    return job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)


def requery_job_run(*, job_id: int, claim: bool = True, progress_extra: Progress | None = None) -> Job:
    """Run an Update proposals job: score the cached grid again and replace the unreviewed proposals."""
    job = _scene_job(job_id)
    later: list[Callable[[], None]] = []

    def work(run: RunContext):
        result = scene_requery(
            scene=job.scene, job=job, params=job.params, run=run, index_later=later
        )
        return result, f"Proposals updated: {result['detections']} candidates ({result['replaced']} replaced)"

    job = job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)
    if job.status == JobStatus.SUCCEEDED:
        _after_success(job=job, steps=later)
    return job


def _after_success(*, job: Job, steps: list[Callable[[], None]]) -> None:
    """Run a succeeded job's follow-up steps (indexing the new proposals' vectors) after the reviewer has the result.

    Their time lands in result["timings"]["after_success"]. A failure is logged, not the job's: the proposals are
    out, and a proposal without a vector is pooled again once it is reviewed (object_vectors_sync).
    """
    if not steps:
        return
    started = time.perf_counter()
    try:
        for step in steps:
            step()
    except Exception:
        log.exception("job %s: a follow-up step failed (the job's result stands)", job.pk)
        return
    timings = {**(job.result.get("timings") or {}), "after_success": round(time.perf_counter() - started, 4)}
    job.result = {**job.result, "timings": timings}
    Job.objects.filter(pk=job.pk).update(result=job.result)
