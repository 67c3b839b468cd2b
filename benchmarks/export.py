#!/usr/bin/env python
"""Chip export benchmark (issue 11 §4): a 10k x 10k px scene with 10,000 accepted detections, per chip format.

Each export runs in a child process of its own (the production writer, `write_chip_dataset`, fed by the export's
own selection stream), so that its peak RSS is its own: chips/s, objects/s, seconds, peak RSS (VmRSS sampled
every 20 ms while the export runs, beside the RSS at its start), beside the 2-minute target. Then each format as
the whole export job a worker runs (selection, writer, manifest, zip); then the writer at 1,000 objects: peak RSS
should not grow with the object count (chips are written one at a time).
Figures, never pass/fail.
"""

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402

from annotate.models import DetectionStatus, Project, Role, Scene, SceneStatus  # noqa: E402
from annotate.services import project_create, scene_create_from_path, scene_ingest  # noqa: E402
from datasets import export_selection as selection  # noqa: E402
from datasets.export_chips import write_chip_dataset  # noqa: E402
from datasets.export_types import CHIP_FORMATS, ChipOptions  # noqa: E402
from gpu_tasks.run_context import RunContext  # noqa: E402

PROJECT = "Export benchmark"
SCENE_NAME = "export 10k x 10k"
MOSAIC = 25  # 25 x 25 copies of the 400 px NEON sample: 10,000 px square
OBJECTS = 10_000
TARGET_S = 120.0
PARAMS = {"statuses": [DetectionStatus.ACCEPTED], "class_ids": [], "sources": [], "include_examples": False}


def say(msg: str = "") -> None:
    print(msg, flush=True)


def benchmark_scene() -> Scene:
    """The 10k x 10k scene with OBJECTS accepted detections (built once, reused)."""
    from benchmarks.review import insert_detections
    from benchmarks.tiles import build_mosaic

    manager, _ = get_user_model().objects.get_or_create(username="export-bench-manager")
    project = Project.objects.filter(name=PROJECT).first() or project_create(name=PROJECT, user=manager)
    scene = project.scenes.filter(name=SCENE_NAME, status=SceneStatus.READY).first()
    if scene is None:
        src = ROOT / "var" / f"bench-export-mosaic-{MOSAIC}.tif"
        src.parent.mkdir(exist_ok=True)
        say(f"building and ingesting a {400 * MOSAIC} px mosaic of the NEON sample (once) ...")
        build_mosaic(src, MOSAIC)
        scene = scene_ingest(scene=scene_create_from_path(project=project, user=manager, source=src, name=SCENE_NAME))
        src.unlink()
    if scene.detections.filter(status=DetectionStatus.ACCEPTED).count() != OBJECTS:
        say(f"inserting {OBJECTS:,} accepted detections (once) ...")
        scene.detections.all().delete()
        insert_detections(scene, OBJECTS, manager, seed=11)  # review.py's polygons: 8 vertices, 12-40 px
        scene.detections.update(status=DetectionStatus.ACCEPTED, reviewer=manager)
    return scene


def rss_mb() -> float:
    """This process's resident set now (VmRSS)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler(threading.Thread):
    """The highest RSS seen while the export runs (ru_maxrss would also hold the import-time peak)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = rss_mb(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_mb())


def child(fmt: str, scene_id: int, objects: int, out: Path) -> None:
    """One export in this process; prints its figures as one JSON line."""
    scene = Scene.objects.get(pk=scene_id)
    classes = selection.export_classes(scene.project)
    start_mb = rss_mb()
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    stats = write_chip_dataset(
        root=out, fmt=fmt, scenes=[scene], objects_of=lambda s: itertools.islice(selection.objects_of(s, PARAMS),
                                                                                 objects),
        classes=classes, options=ChipOptions(), run=RunContext())
    seconds = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    print(json.dumps({"format": fmt, "objects": stats.objects_written, "labels": stats.labels_written,
                      "chips": sum(stats.chips.values()), "seconds": seconds,
                      "peak_rss_mb": max(sampler.peak, rss_mb()), "baseline_rss_mb": start_mb,
                      "process_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def job_child(fmt: str, scene_id: int) -> None:
    """The whole export job as a worker runs it (selection, writer, manifest, zip); prints its figures."""
    from datasets.export_services import export_file, export_job_run, export_submit
    from gpu_tasks.models import JobStatus

    scene = Scene.objects.select_related("project").get(pk=scene_id)
    user = get_user_model().objects.get(username="export-bench-manager")
    start_mb = rss_mb()
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    job, _ = export_submit(project=scene.project, user=user, role=Role.MANAGER,
                           data={"format": fmt, "scene_ids": [scene.pk], "save": False, "name": "benchmark"},
                           enqueue=False)
    job = export_job_run(job_id=job.pk)
    seconds = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    if job.status != JobStatus.SUCCEEDED:
        raise SystemExit(f"the {fmt} export job ended {job.status}: {job.error}")
    path = export_file(job=job)
    size = path.stat().st_size
    shutil.rmtree(path.parent, ignore_errors=True)
    print(json.dumps({"seconds": seconds, "zip_mb": size / 1e6, "peak_rss_mb": sampler.peak,
                      "baseline_rss_mb": start_mb}), flush=True)


def run_child(fmt: str, scene: Scene, objects: int) -> dict:
    """One export in a child process: through the writer (objects > 0) or as the whole job (objects == 0)."""
    out = Path(tempfile.mkdtemp(prefix=f"export-bench-{fmt}-", dir=ROOT / "var"))
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", fmt, str(scene.pk), str(objects), str(out)],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"{fmt} at {objects} objects failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default=",".join(CHIP_FORMATS), help="comma-separated chip formats")
    parser.add_argument("--small", type=int, default=1_000, help="the object count RSS is compared at (0: skip)")
    parser.add_argument("--no-job", action="store_true", help="skip the whole-job runs (selection ... zip)")
    parser.add_argument("--vector-formats", default="geojson,gpkg", help="map-vector formats, run as whole jobs")
    parser.add_argument("--child", nargs=4, metavar=("FORMAT", "SCENE_ID", "OBJECTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fmt, scene_id, objects, out = args.child
        if int(objects):
            child(fmt, int(scene_id), int(objects), Path(out))
        else:
            job_child(fmt, int(scene_id))
        return
    scene = benchmark_scene()
    formats = [f for f in args.formats.split(",") if f]
    say(f"scene {scene.width} x {scene.height} px, {OBJECTS:,} accepted detections; chips {ChipOptions().chip_size} px,"
        f" overlap {ChipOptions().overlap}; one child process per export")
    say(f"{'format':<13} {'objects':>8} {'chips':>6} {'labels':>7} {'seconds':>8} {'chips/s':>8} {'objects/s':>10} "
        f"{'peak RSS MB':>12} {'at start':>9}  target < {TARGET_S:.0f} s")
    rows = {}
    for fmt in formats:
        counts = [OBJECTS] + ([args.small] if args.small else [])
        for n in counts:
            r = run_child(fmt, scene, n)
            rows[(fmt, n)] = r
            say(f"{fmt:<13} {r['objects']:>8,} {r['chips']:>6} {r['labels']:>7,} {r['seconds']:>8.1f} "
                f"{r['chips'] / r['seconds']:>8.1f} {r['objects'] / r['seconds']:>10.0f} {r['peak_rss_mb']:>12.0f} "
                f"{r['baseline_rss_mb']:>9.0f}  {'ok' if r['seconds'] < TARGET_S else 'OVER'}"
                if n == OBJECTS else
                f"{'':<13} {r['objects']:>8,} {r['chips']:>6} {r['labels']:>7,} {r['seconds']:>8.1f} "
                f"{r['chips'] / r['seconds']:>8.1f} {r['objects'] / r['seconds']:>10.0f} {r['peak_rss_mb']:>12.0f} "
                f"{r['baseline_rss_mb']:>9.0f}")
    if not args.no_job:
        say()
        say(f"the whole export job (selection, writer, manifest, zip), as a worker runs it, {OBJECTS:,} objects "
            f"(target < {TARGET_S:.0f} s):")
        for fmt in formats:
            r = run_child(fmt, scene, 0)
            say(f"  {fmt:<13} {r['seconds']:6.1f} s  zip {r['zip_mb']:6.1f} MB  peak RSS {r['peak_rss_mb']:.0f} MB "
                f"(at start {r['baseline_rss_mb']:.0f})  {'ok' if r['seconds'] < TARGET_S else 'OVER'}")
    vectors = [f for f in args.vector_formats.split(",") if f]
    if vectors:
        say()
        say(f"map-vector formats, the whole export job, {OBJECTS:,} objects (target < {TARGET_S:.0f} s):")
        for fmt in vectors:
            r = run_child(fmt, scene, 0)
            say(f"  {fmt:<13} {r['seconds']:6.1f} s  {OBJECTS / r['seconds']:8,.0f} objects/s  "
                f"zip {r['zip_mb']:6.1f} MB  peak RSS {r['peak_rss_mb']:.0f} MB (at start {r['baseline_rss_mb']:.0f})  "
                f"{'ok' if r['seconds'] < TARGET_S else 'OVER'}")
    if args.small:
        say()
        say(f"peak RSS growth from {args.small:,} to {OBJECTS:,} objects (export's own, above the process at start):")
        for fmt in formats:
            big, small = rows[(fmt, OBJECTS)], rows[(fmt, args.small)]
            grow = (big["peak_rss_mb"] - big["baseline_rss_mb"]) - (small["peak_rss_mb"] - small["baseline_rss_mb"])
            say(f"  {fmt:<13} {small['peak_rss_mb']:.0f} MB -> {big['peak_rss_mb']:.0f} MB "
                f"(ratio {big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x, {grow:+.0f} MB)")


if __name__ == "__main__":
    main()
