"""Worker-side housekeeping of the domain core (Celery imports this module in every worker it starts)."""

import logging
import threading
import time

from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections

from .upload_sweep import uploads_sweep

log = logging.getLogger(__name__)


def _sweep_loop(interval_s: float) -> None:
    """Sweep stale uploads now and every interval_s (a thread: a long solo-pool task must not hold it up)."""
    while True:
        try:
            close_old_connections()
            uploads_sweep()
        except Exception:  # a database outage must not end the loop: the next pass tries again
            log.exception("stale upload sweep failed")
        finally:
            close_old_connections()
        time.sleep(interval_s)


@worker_ready.connect
def _start_upload_sweep(**kwargs) -> None:
    """On worker start: sweep stale upload temp files, then every UPLOAD_SWEEP_EVERY_S."""
    interval = max(1.0, float(settings.UPLOAD_SWEEP_EVERY_S))
    threading.Thread(target=_sweep_loop, args=(interval,), name="upload-sweep", daemon=True).start()
