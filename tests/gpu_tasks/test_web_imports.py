"""The web process (gunicorn: config.wsgi, every URL's view, the API modules) never imports the ML stack."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

ML_MODULES = ["torch", "transformers", "sam2", "ultralytics"]

# Run in a fresh interpreter: the test process itself has torch loaded by other tests.
PROBE = """
import importlib, json, pkgutil, sys
from config.wsgi import application
from django.urls import get_resolver

def callbacks(resolver):
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):
            yield from callbacks(pattern)
        else:
            yield pattern.callback

views = list(callbacks(get_resolver()))
# Modules a web request may reach lazily (a view imports a service at call time): import them all too.
web_modules = ("apis", "views", "tile_views", "serializers", "selectors", "services", "urls", "permissions")
for app in ("annotate", "review", "gpu_tasks", "config"):
    package = importlib.import_module(app)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in web_modules:
            importlib.import_module(f"{app}.{info.name}")
print(json.dumps({"views": len(views), "loaded": [m for m in %r if m in sys.modules]}))
"""


def test_the_web_process_imports_no_ml_stack():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE % (ML_MODULES,)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["views"] > 20  # the URL conf was really walked
    # Each of these maps hundreds of MB (libtorch with its CUDA libraries) into every gunicorn worker.
    assert report["loaded"] == [], f"the web process imported {report['loaded']}; import them inside worker code"
