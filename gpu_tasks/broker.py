"""The job queue (Celery's Redis broker): send a job's task, notice a dead broker fast, re-send jobs it lost.

A Job row is the record; the broker only carries "run job N". So a broker that loses its data (a Redis restarted
without persistence) loses no job: a job queued longer than JOB_QUEUE_RECONCILE_S whose message is in neither a
queue list nor the `unacked` hash is sent again (the claim in services.job_claim makes a double delivery harmless).
"""

import base64
import json
import logging
from datetime import timedelta

import redis
from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from annotate.errors import QueueUnavailable

from .models import Job, JobKind, JobStatus

log = logging.getLogger(__name__)

# What a broker that is down, unreachable or not a Redis (something else on its port) raises, via Celery or redis-py.
BROKER_ERRORS = (KombuOperationalError, redis.exceptions.RedisError, OSError)
QUEUE_UNAVAILABLE = "The job queue is unavailable, so the job could not be started; try again in a minute."
# kombu's Redis transport keeps a queue's messages of priority p > 0 in the list "<queue>\x06\x16<p>".
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)
_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis:
    """A redis-py client for the broker's database that gives up within a second (one per broker URL)."""
    url = current_app.conf.broker_url
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    return _clients[url]


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


def broker_check() -> None:
    """QueueUnavailable (503) unless the broker answers a ping within about a second."""
    if _eager():
        return
    try:
        _client().ping()
    except BROKER_ERRORS as exc:
        log.warning("broker unreachable: %s", exc)
        raise QueueUnavailable(QUEUE_UNAVAILABLE) from exc


# Tasks are named, never imported: tasks.py stands above services (each task calls one), so the queue below it
# looks a task up in the Celery app's registry by the name a worker knows it by.
_TASK_NAMES = {
    JobKind.INGEST: "gpu_tasks.tasks.ingest_scene_task",
    JobKind.EMBED: "gpu_tasks.tasks.gpu_embed_task",
    JobKind.SEARCH: "gpu_tasks.tasks.gpu_search_task",
    JobKind.REFINE: "gpu_tasks.tasks.gpu_refine_task",
    JobKind.REQUERY: "gpu_tasks.tasks.requery_proposals_task",
    JobKind.EXPORT: "datasets.tasks.export_dataset_task",
    JobKind.IMPORT: "datasets.tasks.import_labels_task",
    JobKind.TRAIN: "detectors.tasks.gpu_train_task",
    JobKind.PREDICT: "detectors.tasks.gpu_predict_task",
    JobKind.PROBE: "detectors.tasks.probe_proposals_task",
}
_INTERACTIVE_REFINE = "gpu_tasks.tasks.interactive_refine_task"
_TASK_PREFIXES = ("gpu_tasks.tasks.", "datasets.tasks.", "detectors.tasks.")


def _task_for(job: Job):
    """The registered Celery task that runs a job of this kind."""
    interactive = job.kind == JobKind.REFINE and job.params.get("interactive")
    name = _INTERACTIVE_REFINE if interactive else _TASK_NAMES[job.kind]
    if name not in current_app.tasks:
        current_app.loader.import_default_modules()  # the task modules, found as a worker finds them (autodiscover)
    return current_app.tasks[name]


def job_mark_unsent(*, job: Job) -> None:
    """A queued job whose message could not be sent: failed, with a retry that works (not queued forever)."""
    Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        message="Failed",
        error="The job queue was unavailable when this job was sent; retry it in a minute.",
    )


def job_send(*, job: Job) -> None:
    """Send a job's task now; when the broker is down the job ends failed (retry works) and QueueUnavailable rises."""
    try:
        _task_for(job).apply_async((job.pk,))
    except BROKER_ERRORS as exc:
        log.warning("could not send job %s: %s", job.pk, exc)
        job_mark_unsent(job=job)
        raise QueueUnavailable(QUEUE_UNAVAILABLE) from exc


def _job_ids_in(raw: bytes | str) -> int | None:
    """The job id a raw broker message carries (its task's first argument), or None for anything else."""
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # an `unacked` entry: [message, exchange, routing_key]
            message = message[0]
        if not str(message.get("headers", {}).get("task", "")).startswith(_TASK_PREFIXES):
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def broker_job_ids() -> set[int]:
    """Ids of the jobs whose messages the broker holds: waiting in a queue or delivered and not yet acknowledged."""
    client = _client()
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE, *(r["queue"] for r in settings.CELERY_TASK_ROUTES.values())}
    names = [q if p == 0 else f"{q}{_PRIORITY_SEP}{p}" for q in sorted(queues) for p in _PRIORITY_STEPS]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.lrange(name, 0, -1)
    pipe.hvals("unacked")
    found: set[int] = set()
    for raws in pipe.execute():
        found.update(i for raw in raws if (i := _job_ids_in(raw)) is not None)
    return found


def _overdue(now=None):
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.JOB_QUEUE_RECONCILE_S)
    return Job.objects.filter(status=JobStatus.QUEUED, queued_at__lt=cutoff)


def job_is_lost(job: Job) -> bool:
    """A job queued longer than JOB_QUEUE_RECONCILE_S whose message the (reachable) broker does not hold."""
    if _eager() or not _overdue().filter(pk=job.pk).exists():
        return False
    try:
        return job.pk not in broker_job_ids()
    except BROKER_ERRORS:
        return False


def jobs_reconcile() -> list[int]:
    """Re-send queued jobs whose messages the broker lost; returns their ids. Does nothing while the broker is down."""
    candidates = list(_overdue().values_list("pk", flat=True)[:1000])
    if not candidates:
        return []
    try:
        held = broker_job_ids()
    except BROKER_ERRORS as exc:
        log.warning("job queue check skipped, broker unreachable: %s", exc)
        return []
    resent = []
    now = timezone.now()
    for job in Job.objects.filter(pk__in=[pk for pk in candidates if pk not in held], status=JobStatus.QUEUED):
        # The row changes first and only if still queued, so a job claimed meanwhile is not re-sent.
        if not Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            queued_at=now, message="Re-sent: the job queue had lost it (broker restarted); waiting for a worker"
        ):
            continue
        try:
            job_send(job=job)
        except QueueUnavailable:
            continue
        log.warning("job %s was queued but missing from the broker: re-sent", job.pk)
        resent.append(job.pk)
    return resent
