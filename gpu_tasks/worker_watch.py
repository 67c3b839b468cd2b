"""Housekeeping each Celery worker runs from a thread: the dead-worker watch (at start, then every JOB_RECONCILE_S)
and the sweep of stale upload temp files (at start, then every UPLOAD_SWEEP_EVERY_S)."""

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from annotate.upload_sweep import uploads_sweep

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


def sweep_uploads_once() -> None:
    """Remove stale upload temp files now; never raises (a database outage must not end the loop)."""
    try:
        uploads_sweep()
    except DatabaseError:
        log.warning("stale upload sweep skipped: database unavailable")
        connection.close()
    except Exception:
        log.exception("stale upload sweep failed")


def _loop() -> None:
    next_sweep = 0.0
    try:
        while True:
            reconcile_once()
            if time.monotonic() >= next_sweep:
                sweep_uploads_once()
                next_sweep = time.monotonic() + max(1.0, float(settings.UPLOAD_SWEEP_EVERY_S))
            if _stop.wait(settings.JOB_RECONCILE_S):
                break
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
