"""Housekeeping every Celery worker runs from one thread of its own, each pass on its own schedule.

- dead workers: re-queue jobs whose worker stopped (services.jobs_reconcile), every JOB_RECONCILE_S;
- lost messages: re-send queued jobs the broker lost (broker.jobs_reconcile), every JOB_QUEUE_RECONCILE_S / 4;
- stale uploads: remove upload temp files no request or scene holds (annotate.upload_sweep), every
  UPLOAD_SWEEP_EVERY_S.
A thread, so a long solo-pool task does not hold housekeeping up; every pass runs once at worker start.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection

from annotate.upload_sweep import uploads_sweep

from . import broker, services

log = logging.getLogger(__name__)

_stop = threading.Event()
_thread: list[threading.Thread] = []


@dataclass
class _Pass:
    """One housekeeping pass and how often it runs."""

    name: str
    run: Callable[[], object]
    every_s: Callable[[], float]
    next_at: float = 0.0


def _run_pass(name: str, run: Callable[[], object]) -> object:
    """Run a pass; never raises (a worker must start and keep running while the database is away)."""
    try:
        return run()
    except DatabaseError:
        log.warning("%s skipped: database unavailable", name)
        connection.close()
    except Exception:  # housekeeping must never take the worker down
        log.exception("%s failed", name)
    return None


def reconcile_once() -> list[int]:
    """Re-queue the jobs of dead workers now."""
    changed = _run_pass("dead-worker reconcile", services.jobs_reconcile) or []
    if changed:
        log.warning("jobs of dead workers re-queued or ended: %s", changed)
    return changed


def _passes() -> list[_Pass]:
    return [
        _Pass("dead-worker reconcile", reconcile_once, lambda: settings.JOB_RECONCILE_S),
        _Pass("lost-message reconcile", lambda: _run_pass("lost-message reconcile", broker.jobs_reconcile),
              lambda: settings.JOB_QUEUE_RECONCILE_S / 4),
        _Pass("stale upload sweep", lambda: _run_pass("stale upload sweep", uploads_sweep),
              lambda: settings.UPLOAD_SWEEP_EVERY_S),
    ]


def _loop() -> None:
    passes = _passes()
    try:
        while not _stop.is_set():
            now = time.monotonic()
            for p in passes:
                if now >= p.next_at:
                    p.run()
                    p.next_at = time.monotonic() + max(1.0, float(p.every_s()))
            _stop.wait(max(0.2, min(p.next_at for p in passes) - time.monotonic()))
    finally:
        connection.close()  # this thread's own connection


def start() -> None:
    """Start the housekeeping thread (once per process)."""
    if _thread and _thread[0].is_alive():
        return
    _stop.clear()
    thread = threading.Thread(target=_loop, name="worker-housekeeping", daemon=True)
    _thread[:] = [thread]
    thread.start()


def stop() -> None:
    """Stop the housekeeping thread (worker shutdown)."""
    _stop.set()
    if _thread:
        _thread[0].join(timeout=10)
