"""The Celery application; queues are `default` (ingest, export) and `gpu` (search, refine, train)."""

import os

from celery import Celery

# The one place outside config.settings that touches the environment: Celery needs to know which
# settings module to import before Django is set up.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("georeview")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
