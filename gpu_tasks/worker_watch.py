"""The dead-worker watch each Celery worker runs: at start, then every JOB_RECONCILE_S from a thread."""

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, connection

from . import services

log = logging.getLogger(__name__)

_stop = threading.Event()
_thread: list[threading.Thread] = []


def reconcile_once() -> list[int]:
    """Re-queue the jobs of dead workers now; never raises (a worker must start while the database is away)."""
    try:
        changed = services.jobs_reconcile()
    except DatabaseError:
        log.warning("dead-worker reconcile skipped: database unavailable")
        connection.close()
        return []
    except Exception:  # housekeeping must never take the worker down
        log.exception("dead-worker reconcile failed")
        return []
    if changed:
        log.warning("jobs of dead workers re-queued or ended: %s", changed)
    return changed


def _loop() -> None:
    try:
        reconcile_once()
        while not _stop.wait(settings.JOB_RECONCILE_S):
            reconcile_once()
    finally:
        connection.close()  # this thread's own connection


def start() -> None:
    """Start the watch thread (once per process)."""
    if _thread and _thread[0].is_alive():
        return
    _stop.clear()
    thread = threading.Thread(target=_loop, name="dead-worker-watch", daemon=True)
    _thread[:] = [thread]
    thread.start()


def stop() -> None:
    """Stop the watch thread (worker shutdown)."""
    _stop.set()
    if _thread:
        _thread[0].join(timeout=10)
