#!/usr/bin/env python
"""Decision-to-refreshed-proposals (issue 9 §4): reject one proposal, press Update proposals, read the new queue.

On a cached 715 x 715 x 384 float16 grid (a 10k x 10k px scene at ViT-S/14; benchmarks/search.py's object-like
grid), through the product's own paths: the reject and the update are HTTP requests through Django's full
stack (middleware, DRF, the same views), the job runs in a real Celery worker on the `default` queue started as
the Procfile starts it (prefork, 2 processes), and the refreshed proposals are read through the review queue
endpoint. Prints p50/p95 of the whole and the median of each stage, next to the target (under 2 s). Never
passes or fails.

`run(...) -> dict` is what benchmarks/review.py calls (Django set up by the caller); `main()` sets Django up
on the database in DATABASE_URL (a private one is best: `createdb` + `manage.py migrate`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GRID_H = GRID_W = 715  # 10,010 px at 14 px per cell
GRID_DIM = 384  # ViT-S
GRID_SEED = 4  # benchmarks/search.write_cached_grid's default
CELL_PX = 14.0
BLOCK_CELLS = 5  # write_cached_grid plants objects as 5 x 5-cell blocks
EXAMPLES_PER_CLASS = 5
CLASSES = 3
TARGET_S = 2.0
BENCH_PROJECT = "Update proposals benchmark"
# A Redis database of the benchmark's own (flushed at start): not the demo's (0), nor the tests' (10-15), whose
# fixtures flush theirs and whose workers would take this benchmark's jobs.
BROKER_URL = "redis://127.0.0.1:6379/8"
# decision: the reject request; submit: the update request (202); pickup: from its answer to a worker starting the
# job (broker, worker, claim); job_run: the job itself; noticed: from the job's end to this loop seeing it (polls
# every 10 ms); read: the review queue request that shows the new proposals.
STAGES = ("decision", "submit", "pickup", "job_run", "noticed", "read")


def say(msg: str) -> None:
    print(msg, flush=True)


def object_blocks(h: int = GRID_H, w: int = GRID_W, d: int = GRID_DIM, seed: int = GRID_SEED):
    """The cluster of each 5 x 5-cell block of write_cached_grid's grid (0-3 objects, 4-15 ground).

    The same random draws in the same order as write_cached_grid, so examples land on its objects.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    rng.standard_normal((16, d))
    low = rng.integers(4, 16, (-(-h // 5), -(-w // 5)))
    objects = rng.random(low.shape) < 0.08
    low[objects] = rng.integers(0, 4, int(objects.sum()))
    return low


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _project_delete(project) -> None:
    """Delete a benchmark project: scenes first (their examples and detections hold its classes), then itself."""
    for scene in project.scenes.all():
        scene.delete()
    project.delete()


def _scene_with_grid(*, user, log) -> tuple:
    """A ready 10k x 10k scene row (UTM, 1 m) in a fresh project, its cached grid and example polygons."""
    import numpy as np
    from django.conf import settings
    from django.contrib.gis.geos import Polygon

    from annotate import geo, storage
    from annotate.models import Annotation, Project, Scene, SceneStatus
    from annotate.services import project_create
    from benchmarks.search import write_cached_grid
    from gpu_tasks.models import PatchGrid

    for old in Project.objects.filter(name=BENCH_PROJECT):  # a previous run's (kept with --keep, or interrupted)
        _project_delete(old)
    project = project_create(name=BENCH_PROJECT, user=user)
    size_px = int(GRID_W * CELL_PX)
    scene = Scene.objects.create(
        project=project,
        name="10k x 10k (grid only)",
        crs="EPSG:32643",
        geotransform=[500000.0, 1.0, 0.0, 3100000.0, 0.0, -1.0],
        width=size_px,
        height=size_px,
        band_count=3,
        dtype="uint8",
        gsd_m=1.0,
        rgb_bands=[1, 2, 3],
        stretch=[[0.0, 255.0]] * 3,
        status=SceneStatus.READY,
        uploaded_by=user,
    )
    directory = Path(settings.DATA_DIR) / "grids" / str(scene.pk) / "bench-requery"
    t0 = time.perf_counter()
    meta, _ = write_cached_grid(directory, GRID_H, GRID_W, GRID_DIM, seed=GRID_SEED)
    log(f"  wrote a {GRID_H} x {GRID_W} x {GRID_DIM} float16 grid ({GRID_H * GRID_W * GRID_DIM * 2 / 2**20:.0f} MB)"
        f" in {time.perf_counter() - t0:.1f} s")
    grid = PatchGrid.objects.create(
        scene=scene,
        key=meta.key,
        space_key="bench-requery-space",
        model_id="random/dinov2-small",
        path=storage.relative(directory),
        grid_h=GRID_H,
        grid_w=GRID_W,
        dim=GRID_DIM,
        cell_px=CELL_PX,
        scale=1.0,
        embedder=meta.embedder,
        preprocessing=meta.preprocessing,
    )
    blocks = object_blocks()
    crs, transform = geo.crs_from_text(scene.crs), geo.transform_from_gdal(scene.geotransform)
    classes = list(project.classes.order_by("pk")[:CLASSES])
    block_px = BLOCK_CELLS * CELL_PX
    for c, cls in enumerate(classes):
        rows, cols = np.nonzero(blocks == c)
        for r, col in list(zip(rows, cols, strict=True))[:EXAMPLES_PER_CLASS]:
            x0, y0 = col * block_px + 7, r * block_px + 7  # a little inside the object, as a person draws
            ring = geo.rings_px_to_lonlat(crs, transform, [geo.box_px_to_ring((x0, y0, x0 + block_px - 14,
                                                                               y0 + block_px - 14))])[0]
            Annotation.objects.create(scene=scene, object_class=cls, author=user, geometry=Polygon(ring, srid=4326))
    return project, scene, grid, directory


def _start_worker(*, broker_url: str, concurrency: int, log_file) -> subprocess.Popen:
    """A `celery worker -Q default` as the Procfile's `worker:` line starts it, on this process's database."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgis://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        "CELERY_BROKER_URL": broker_url,
        "DATA_DIR": str(settings.DATA_DIR),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default", "--concurrency", str(concurrency),
         "--hostname", f"bench-requery-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
         "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )


def _use_broker(url: str) -> None:
    from config.celery import app as celery_app

    celery_app.conf.broker_url = url
    celery_app.conf.task_always_eager = False
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def _wait_job(job_id: int, timeout_s: float = 120.0, poll_s: float = 0.01):
    from gpu_tasks.models import Job, JobStatus

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.status in JobStatus.finished():
            return job, time.monotonic()
        time.sleep(poll_s)
    raise RuntimeError(f"job {job_id} did not finish in {timeout_s} s ({job.status}: {job.message})")


def run(*, runs: int = 5, broker_url: str = BROKER_URL, concurrency: int = 2, log=say,
        keep: bool = False) -> dict:
    """Time decision -> Update proposals -> job succeeded -> new proposals read, `runs` times; a dict of figures.

    Needs Django set up, PostgreSQL and Redis running; `broker_url` should be a Redis database of its own (it is
    flushed). Creates (and at the end deletes, unless keep) a project named BENCH_PROJECT and its grid.
    """
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import override_settings

    from annotate.models import DetectionStatus, Role
    from annotate.services import membership_set
    from gpu_tasks.models import JobStatus
    from gpu_tasks.services import requery_job_run, requery_job_submit

    subprocess.run(["redis-cli", "-u", broker_url, "flushdb"], check=True, capture_output=True)
    _use_broker(broker_url)
    users = get_user_model().objects
    manager, _ = users.get_or_create(username="bench-requery-manager")
    reviewer, _ = users.get_or_create(username="bench-requery-reviewer")
    project, scene, grid, directory = _scene_with_grid(user=manager, log=log)
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    worker = None
    try:
        # The first proposals, as the search that embedded the scene would have left them (same code path).
        t0 = time.perf_counter()
        first = requery_job_submit(scene=scene, user=manager, role="manager", enqueue=False).job
        first = requery_job_run(job_id=first.pk)
        if first.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"the first scoring failed: {first.error}")
        log(f"  first proposals: {first.result['detections']} from {CLASSES} classes x {EXAMPLES_PER_CLASS} examples"
            f" in {time.perf_counter() - t0:.2f} s in this process")
        worker_log = tempfile.NamedTemporaryFile(prefix="requery-worker-", suffix=".log", delete=False)  # noqa: SIM115
        worker = _start_worker(broker_url=broker_url, concurrency=concurrency, log_file=worker_log)
        client = Client()
        client.force_login(reviewer)
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            # Warm-up: the first job of a fresh worker (its processes import the scoring code then); not counted.
            t0 = time.perf_counter()
            response = client.post(f"/api/scenes/{scene.pk}/update-proposals/", {}, content_type="application/json")
            warm, _ = _wait_job(response.json()["id"], timeout_s=180)
            log(f"  warm-up job (fresh worker, {concurrency} processes): {warm.status} in"
                f" {time.perf_counter() - t0:.2f} s from the request")
            samples = []
            for i in range(runs + 1):  # the first cycle warms this process's request path up; not counted
                target = scene.detections.filter(status=DetectionStatus.PROPOSED).order_by("-score", "pk").first()
                times: dict[str, float] = {}
                start = time.perf_counter()
                response = client.post(
                    f"/api/detections/{target.pk}/review/",
                    {"verdict": DetectionStatus.REJECTED, "expected_version": target.version,
                     "client_id": str(uuid.uuid4())},
                    content_type="application/json",
                )
                assert response.status_code == 200, response.content
                times["decision"] = time.perf_counter() - start
                t = time.perf_counter()
                response = client.post(f"/api/scenes/{scene.pk}/update-proposals/", {},
                                       content_type="application/json")
                assert response.status_code == 202, response.content
                times["submit"] = time.perf_counter() - t
                answered = time.time()  # wall clock, to compare with the job's timestamps (same host)
                job, _ = _wait_job(response.json()["id"])
                seen = time.time()
                if job.status != JobStatus.SUCCEEDED:
                    raise RuntimeError(f"update {job.pk} {job.status}: {job.error}")
                t = time.perf_counter()
                queue = client.get(f"/api/scenes/{scene.pk}/review-queue/?limit=20")
                shown = queue.json().get("detections") or []
                shown = shown.get("features", []) if isinstance(shown, dict) else shown  # GeoJSON when it is one
                if not shown:
                    raise RuntimeError(f"the review queue showed nothing: {queue.status_code} {queue.content[:500]!r}")
                first_id = shown[0]["id"]
                times["read"] = time.perf_counter() - t
                total = time.perf_counter() - start
                assert scene.detections.filter(pk=first_id, job=job).exists(), "the queue shows the new proposals"
                times["pickup"] = job.started_at.timestamp() - answered
                times["job_run"] = (job.finished_at - job.started_at).total_seconds()
                times["noticed"] = seen - job.finished_at.timestamp()
                if i:
                    samples.append({"total": total, **times, "job": job.result.get("timings", {}),
                                    "detections": job.result["detections"], "replaced": job.result["replaced"]})
                # Back to the same starting point, untimed: undo the reject (a new event) and score again here, so
                # every run replaces the same ~1,000 proposals (a true object's rejection empties its class here:
                # the grid's objects of one class are all alike).
                client.post("/api/review/undo/", {"scene": scene.pk, "client_id": str(uuid.uuid4())},
                            content_type="application/json")
                restore = requery_job_submit(scene=scene, user=manager, role="manager", enqueue=False).job
                requery_job_run(job_id=restore.pk)
                label = f"run {i}" if i else "warm-up"
                stages = ", ".join(f"{k} {times[k]:.3f}" for k in STAGES)
                inside = ", ".join(f"{k} {v:.3f}" for k, v in job.result.get("timings", {}).items())
                log(f"    {label}: {total:.3f} s  ({stages}; job: {inside}; {job.result['detections']} proposals,"
                    f" {job.result['replaced']} replaced)")
    except Exception:
        if worker is not None:
            log(f"  worker log (last 3,000 characters of {worker_log.name}):")
            log(Path(worker_log.name).read_text()[-3000:])
        raise
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if not keep:
            _project_delete(project)
            shutil.rmtree(directory.parent, ignore_errors=True)
    totals = [s["total"] for s in samples]
    job_stage_names = sorted({k for s in samples for k in s["job"]})
    result = {
        "runs": len(samples),
        "grid": [GRID_H, GRID_W, GRID_DIM],
        "proposals": statistics.median(s["detections"] for s in samples),
        "p50_s": statistics.median(totals),
        "p95_s": _percentile(totals, 0.95),
        "best_s": min(totals),
        "target_s": TARGET_S,
        "stages_p50_s": {k: statistics.median(s[k] for s in samples) for k in STAGES},
        "job_stages_p50_s": {k: statistics.median(s["job"].get(k, 0.0) for s in samples) for k in job_stage_names},
    }
    verdict = "met" if result["p95_s"] < TARGET_S else "MISSED"
    log(f"  decision -> refreshed proposals, {result['runs']} runs on a {GRID_H} x {GRID_W} x {GRID_DIM} grid,"
        f" {result['proposals']:.0f} proposals: p50 {result['p50_s']:.3f} s, p95 {result['p95_s']:.3f} s,"
        f" best {result['best_s']:.3f} s   (target < {TARGET_S:.0f} s at p95: {verdict})")
    log("  stages (p50): " + ", ".join(f"{k} {v:.3f} s" for k, v in result["stages_p50_s"].items()))
    log("  inside the job (p50): " + ", ".join(f"{k} {v:.3f} s" for k, v in result["job_stages_p50_s"].items()))
    return result


def main() -> None:
    """Set Django up (DATABASE_URL, DATA_DIR from the environment / .env) and run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--broker-url", default=BROKER_URL, help="a Redis database of its own")
    ap.add_argument("--concurrency", type=int, default=2, help="worker processes (the Procfile's: 2)")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark project and grid")
    args = ap.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    say(f"Update proposals benchmark: {args.runs} runs, load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    run(runs=args.runs, broker_url=args.broker_url, concurrency=args.concurrency, keep=args.keep)


if __name__ == "__main__":
    main()
