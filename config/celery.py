"""The Celery application; queues are `default` (ingest, export) and `gpu` (search, refine, train)."""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

# The one place outside config.settings that touches the environment: Celery needs to know which
# settings module to import before Django is set up.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("georeview")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _start_housekeeping(**_kwargs) -> None:
    """Every worker runs the housekeeping passes: dead workers, lost messages, stale uploads (worker_watch)."""
    from gpu_tasks import worker_watch

    worker_watch.start()


@worker_shutdown.connect
def _stop_watching(**_kwargs) -> None:
    from gpu_tasks import worker_watch

    worker_watch.stop()
