"""Whether a running job's worker is alive: shared by the job life cycle (services) and the job API (serializers)."""

import os
import socket
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import Job, JobStatus


def this_worker() -> tuple[str, int]:
    """(host name, pid) of this process, as recorded on the jobs it runs."""
    return socket.gethostname(), os.getpid()


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is alive (a zombie, killed but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def job_worker_dead(job: Job) -> bool:
    """A running job whose worker stopped: silent for JOB_DEAD_AFTER_S, or its recorded pid gone on this host."""
    if job.status != JobStatus.RUNNING or job.heartbeat_at is None:
        return False
    if timezone.now() - job.heartbeat_at > timedelta(seconds=settings.JOB_DEAD_AFTER_S):
        return True
    host, _ = this_worker()
    return bool(job.worker_pid) and job.worker_host == host and not pid_alive(job.worker_pid)


def job_is_stalled(job: Job) -> bool:
    """A running job whose worker stopped (killed, out of memory, machine lost): see job_worker_dead."""
    return job_worker_dead(job)
