#!/usr/bin/env python
"""Review workspace benchmark (issue 9 §6): one reviewer against a scene with 50,000 detections.

Over HTTP through the production set-up (nginx from the repository's template in front of the Procfile's
`web:` gunicorn, free ports): p50/p95 of a decision, a queue-next, a viewport as GeoJSON (the list API) and as
vector tiles (ST_AsMVT), the raw ST_AsMVT query beside the tile endpoint (overhead ratio), at a typical review
zoom (a few hundred objects in view) and for the whole scene. In Chromium (the scene page as it is built now):
the median frame time of a scripted pan and zoom with 10,000 detections in view against the same on a scene
with none, and the time from the N key to the next detection shown. Then benchmarks/review_requery.py's
decision-to-refreshed-proposals, when that file exists. Figures and ratios beside their targets; never pass/fail.
"""

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import morecantile  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.gis.geos import Polygon  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import F  # noqa: E402

from annotate import geo  # noqa: E402
from annotate.models import Detection, DetectionSource, DetectionStatus, Project, Role, Scene, SceneStatus  # noqa: E402
from annotate.services import membership_set, project_create, scene_create_from_path, scene_ingest  # noqa: E402
from benchmarks.tiles import build_mosaic, free_ports, procfile_web_command, proxy_command, start  # noqa: E402

PROJECT = "Review benchmark"
SCENE_NAME = "review 10k x 10k"
EMPTY_NAME = "review 10k x 10k (no detections)"
REVIEWER, PASSWORD = "review-bench", "review-bench-pw"
MOSAIC = 25  # 25 x 25 copies of the 400 px NEON sample: 10,000 px square at 0.1 m
DETECTIONS = 50_000
IN_VIEW_BROWSER = 10_000
TARGETS_MS = {"decision": 100.0, "viewport": 200.0, "key_to_shown": 100.0}
TARGET_FRAME_RATIO = 2.0
BROWSER_CONNECTIONS = 6  # what a browser opens per host over HTTP/1.1: tiles of one viewport load this wide
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
TMS = morecantile.tms.get("WebMercatorQuad")


def say(msg: str = "") -> None:
    print(msg, flush=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def p50_p95(values_ms: list[float]) -> str:
    return f"p50 {pct(values_ms, 50):7.1f} ms  p95 {pct(values_ms, 95):7.1f} ms  (n={len(values_ms)})"


# ---------------------------------------------------------------------------------------------- the data
def scene_frame(scene: Scene):
    """The scene's CRS and pixel -> CRS transform."""
    return geo.crs_from_text(scene.crs), geo.transform_from_gdal(scene.geotransform)


def window_lonlat(scene: Scene, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """A pixel window (x0, y0, x1, y1) of the scene as a lon/lat bbox (minlon, minlat, maxlon, maxlat)."""
    crs, transform = scene_frame(scene)
    lons, lats = geo.px_to_lonlat(crs, transform, np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
    return float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max())


def insert_detections(scene: Scene, count: int, reviewer, seed: int = 9) -> None:
    """`count` small polygons (8 vertices, 12-40 px across) over the scene, mixed classes, status and scores."""
    rng = np.random.default_rng(seed)
    classes = list(scene.project.classes.order_by("index"))
    weights = np.array([0.35, 0.25, 0.15, 0.1, 0.05, 0.04, 0.03, 0.03][: len(classes)])
    class_of = rng.choice(len(classes), count, p=weights / weights.sum())
    cx = rng.uniform(30, scene.width - 30, count)
    cy = rng.uniform(30, scene.height - 30, count)
    radius = rng.uniform(6, 20, count)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)[None, :] + rng.uniform(0, np.pi, (count, 1))
    wobble = 1 + 0.15 * rng.standard_normal((count, 8))
    xs = cx[:, None] + radius[:, None] * wobble * np.cos(angles)
    ys = cy[:, None] + radius[:, None] * wobble * np.sin(angles)
    crs, transform = scene_frame(scene)
    lons, lats = geo.px_to_lonlat(crs, transform, xs.ravel(), ys.ravel())
    lons, lats = lons.reshape(count, 8), lats.reshape(count, 8)
    roll = rng.random(count)
    status = np.where(roll < 0.8, DetectionStatus.PROPOSED, np.where(roll < 0.92, DetectionStatus.ACCEPTED,
                                                                    DetectionStatus.REJECTED))
    manual = (status == DetectionStatus.ACCEPTED) & (rng.random(count) < 0.1)
    score = np.clip(rng.beta(2.5, 2, count), 0.01, 1.0)
    batch = []
    for i in range(count):
        ring = list(zip(lons[i], lats[i], strict=True))
        polygon = Polygon([*ring, ring[0]], srid=4326)
        batch.append(Detection(
            scene=scene, object_class=classes[class_of[i]], geometry=polygon, bbox=polygon.envelope,
            score=None if manual[i] else float(score[i]),
            source=DetectionSource.MANUAL if manual[i] else DetectionSource.SEARCH, status=str(status[i]),
            reviewer=None if status[i] == DetectionStatus.PROPOSED else reviewer,
        ))
        if len(batch) == 5000:
            Detection.objects.bulk_create(batch)
            batch = []
    Detection.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_detection")


def benchmark_scenes() -> tuple[Scene, Scene]:
    """The 10k x 10k scene with its 50,000 detections and a twin without any (built once, reused)."""
    users = get_user_model().objects
    manager, _ = users.get_or_create(username="review-bench-manager")
    reviewer, _ = users.get_or_create(username=REVIEWER)
    reviewer.set_password(PASSWORD)
    reviewer.save()
    project = Project.objects.filter(name=PROJECT).first() or project_create(name=PROJECT, user=manager)
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    scene = project.scenes.filter(name=SCENE_NAME, status=SceneStatus.READY).first()
    if scene is None:
        src = ROOT / "var" / f"bench-review-mosaic-{MOSAIC}.tif"
        src.parent.mkdir(exist_ok=True)
        say(f"building and ingesting a {400 * MOSAIC} px mosaic of the NEON sample (once) ...")
        build_mosaic(src, MOSAIC)
        scene = scene_ingest(scene=scene_create_from_path(project=project, user=manager, source=src, name=SCENE_NAME))
        src.unlink()
    if scene.detections.count() != DETECTIONS:
        say(f"inserting {DETECTIONS:,} detections (once) ...")
        t0 = time.perf_counter()
        scene.detections.all().delete()
        insert_detections(scene, DETECTIONS, manager)
        say(f"  {time.perf_counter() - t0:.1f} s")
    empty = project.scenes.filter(name=EMPTY_NAME).first()
    if empty is None:
        # Same imagery, no detections: a second row on the same COG (the frame-time baseline).
        skip = {"id", "name", "upload_path", "created_at", "updated_at"}
        fields = {f.name: getattr(scene, f.name) for f in Scene._meta.concrete_fields if f.name not in skip}
        empty = Scene.objects.create(**fields, name=EMPTY_NAME)
    return scene, empty


# ---------------------------------------------------------------------------------------------- HTTP
class Reviewer:
    """The reviewer's browser session over HTTP (login form, session cookie, CSRF header)."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        self.http.get(f"{base}/login/", timeout=30)
        answer = self.http.post(f"{base}/login/", data={
            "username": REVIEWER, "password": PASSWORD, "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
        }, timeout=30, allow_redirects=False)
        if answer.status_code != 302:
            raise RuntimeError(f"login failed: HTTP {answer.status_code}")

    def get(self, path: str) -> requests.Response:
        answer = self.http.get(self.base + path, timeout=60)
        if answer.status_code not in (200, 204):
            raise RuntimeError(f"GET {path}: HTTP {answer.status_code} {answer.text[:300]}")
        return answer

    def post(self, path: str, body: dict) -> requests.Response:
        answer = self.http.post(self.base + path, json=body, timeout=60,
                                headers={"X-CSRFToken": self.http.cookies["csrftoken"]})
        if answer.status_code != 200:
            raise RuntimeError(f"POST {path}: HTTP {answer.status_code} {answer.text[:300]}")
        return answer


def timed(call) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = call()
    return (time.perf_counter() - t0) * 1000, out


def measure_decisions(who: Reviewer, scene: Scene, count: int) -> list[float]:
    """Accept / reject the best `count` proposals one after another; put them back as proposed afterwards."""
    chosen = list(scene.detections.filter(status=DetectionStatus.PROPOSED).order_by("-score", "id")
                  .values_list("id", "version")[:count])
    times = []
    try:
        for i, (pk, version) in enumerate(chosen):
            verdict = DetectionStatus.ACCEPTED if i % 2 == 0 else DetectionStatus.REJECTED
            ms, _ = timed(lambda pk=pk, version=version, verdict=verdict: who.post(
                f"/api/detections/{pk}/review/",
                {"verdict": verdict, "expected_version": version, "client_id": str(uuid.uuid4())}))
            times.append(ms)
    finally:
        # Back to proposed, so every run starts from the same scene (the version moves on, as an edit's would).
        Detection.objects.filter(pk__in=[pk for pk, _ in chosen]).update(
            status=DetectionStatus.PROPOSED, reviewer=None, reviewed_at=None, version=F("version") + 1)
    return times


def measure_queue(who: Reviewer, scene: Scene, order: str, steps: int) -> list[float]:
    """Walk the review queue with `after=`, one queue-next per step, as the N key does."""
    times, after = [], None
    for _ in range(steps):
        query = f"order={order}" + (f"&after={after}" if after else "")
        ms, answer = timed(lambda q=query: who.get(f"/api/scenes/{scene.pk}/review-queue/?{q}"))
        times.append(ms)
        found = answer.json()["detections"]
        found = found["features"] if isinstance(found, dict) else found  # a FeatureCollection
        if not found:
            break
        after = found[0]["id"]
    return times


def geojson_viewport(who: Reviewer, scene: Scene, bbox: tuple) -> tuple[float, int, int]:
    """Every page of the list API for the bbox, as the page loads them: ms, features, bytes."""
    url = f"/api/detections/?scene={scene.pk}&bbox={','.join(f'{v:.9f}' for v in bbox)}&page_size=5000"
    t0, features, size = time.perf_counter(), 0, 0
    while url:
        answer = who.get(url)
        size += len(answer.content)
        page = answer.json()
        features += len(page["features"])
        url = None
        if page["next"]:
            parts = urlsplit(page["next"])
            url = f"{parts.path}?{parts.query}"
    return (time.perf_counter() - t0) * 1000, features, size


def tiles_for(bbox: tuple, zoom: int) -> list:
    return list(TMS.tiles(*bbox, [zoom]))


def one_tile(who: Reviewer, scene: Scene, t) -> tuple[float, int, float]:
    """One tile: ms, bytes, and the query's ms inside the request (its Server-Timing `db`)."""
    ms, answer = timed(lambda: who.get(f"/api/scenes/{scene.pk}/detections/tiles/{t.z}/{t.x}/{t.y}.mvt"))
    db = answer.headers.get("Server-Timing", "").partition("db;dur=")[2].split(",")[0]
    return ms, len(answer.content), float(db or "nan")


def tile_viewport(who: Reviewer, scene: Scene, tiles: list, pool: ThreadPoolExecutor) -> tuple[float, int]:
    """The viewport's tiles, `BROWSER_CONNECTIONS` at a time as a browser loads them: wall ms, bytes."""
    t0 = time.perf_counter()
    results = list(pool.map(lambda t: one_tile(who, scene, t), tiles))
    return (time.perf_counter() - t0) * 1000, sum(n for _, n, _ in results)


def raw_mvt_ms(scene: Scene, tiles: list) -> list[float]:
    """The selector's ST_AsMVT query alone, in this process, for each tile."""
    from annotate.vector_tiles import detection_tile

    return [timed(lambda t=t: detection_tile(scene.pk, t.z, t.x, t.y))[0] for t in tiles]


def count_in(scene: Scene, bbox: tuple) -> int:
    return scene.detections.filter(geometry__intersects=Polygon.from_bbox(bbox)).count()


def http_figures(base: str, scene: Scene, args) -> dict:
    """Decision, queue-next and viewport figures through nginx -> gunicorn."""
    who = Reviewer(base)
    rng = random.Random(3)
    lat = (scene.footprint.extent[1] + scene.footprint.extent[3]) / 2
    native = geo.native_zoom(scene.gsd_m, lat)
    # A typical review zoom: about one scene pixel per screen pixel in a ~1000 x 640 px map.
    review_windows = []
    for _ in range(args.viewports):
        x0, y0 = rng.uniform(0, scene.width - 1000), rng.uniform(0, scene.height - 640)
        review_windows.append(window_lonlat(scene, x0, y0, x0 + 1000, y0 + 640))
    whole = window_lonlat(scene, 0, 0, scene.width, scene.height)
    whole_zoom = native - math.ceil(math.log2(max(scene.width, scene.height) / 800))  # the scene in 800 px
    # OpenLayers' vector tile grid has 512 px tiles: at display zoom z the page asks for tiles of zoom z - 1.
    review_tile_zoom, whole_tile_zoom = native - 1, whole_zoom - 1
    in_view = [count_in(scene, b) for b in review_windows]
    out: dict = {"native_zoom": native, "whole_zoom": whole_zoom,
                 "review_in_view_median": statistics.median(in_view)}
    say(f"  review viewports: {len(review_windows)} windows of 1000 x 640 scene px, "
        f"{statistics.median(in_view):.0f} detections in view (median, {min(in_view)}-{max(in_view)}); "
        f"display zoom {native} (tiles z{review_tile_zoom}); whole scene at display zoom {whole_zoom} "
        f"(tiles z{whole_tile_zoom})")

    # Warm-up: every kind of request once (imports, connections, PostgreSQL's caches).
    measure_queue(who, scene, "score", 5)
    geojson_viewport(who, scene, review_windows[0])
    with ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
        tile_viewport(who, scene, tiles_for(review_windows[0], review_tile_zoom), pool)

    out["decision_ms"] = measure_decisions(who, scene, args.decisions)
    say(f"  (a) decision (POST review, expected_version + client_id)      {p50_p95(out['decision_ms'])}"
        f"   target p95 <= {TARGETS_MS['decision']:.0f} ms")
    from review.selectors import QueueOrder

    for order in QueueOrder.CHOICES:
        try:
            out[f"queue_{order}_ms"] = times = measure_queue(who, scene, order, args.queue_steps)
            say(f"  (b) queue-next, order={order:<12}                             {p50_p95(times)}")
        except RuntimeError as exc:
            say(f"  (b) queue-next, order={order}: {exc}")

    geo_review = [geojson_viewport(who, scene, b) for b in review_windows]
    out["geojson_review_ms"] = [ms for ms, _, _ in geo_review]
    say(f"  (c) viewport as GeoJSON, review zoom                           {p50_p95(out['geojson_review_ms'])}"
        f"   {statistics.median(n for _, n, _ in geo_review):.0f} features, "
        f"{statistics.median(s for _, _, s in geo_review) / 1000:.0f} KB"
        f"   target p95 <= {TARGETS_MS['viewport']:.0f} ms")
    geo_whole = [geojson_viewport(who, scene, whole) for _ in range(args.whole_reps)]
    out["geojson_whole_ms"] = [ms for ms, _, _ in geo_whole]
    say(f"  (c) whole scene as GeoJSON (every page of 5,000)               {p50_p95(out['geojson_whole_ms'])}"
        f"   {geo_whole[0][1]:,} features, {geo_whole[0][2] / 1e6:.1f} MB")

    with ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
        for name, windows, zoom, reps in (("review", review_windows, review_tile_zoom, 1),
                                          ("whole", [whole] * args.whole_reps, whole_tile_zoom, 1)):
            walls, sizes, tiles_all = [], [], []
            for _ in range(reps):
                for b in windows:
                    tiles = tiles_for(b, zoom)
                    wall, size = tile_viewport(who, scene, tiles, pool)
                    walls.append(wall)
                    sizes.append(size)
                    tiles_all += tiles
            # The same tiles one at a time (no queueing behind each other), beside the bare query in this process.
            sequential = [one_tile(who, scene, t) for t in tiles_all]
            per_tile, in_request = [ms for ms, _, _ in sequential], [db for _, _, db in sequential]
            raw = raw_mvt_ms(scene, tiles_all)
            out[f"mvt_{name}_viewport_ms"], out[f"mvt_{name}_tile_ms"], out[f"mvt_{name}_raw_ms"] = walls, per_tile, raw
            out[f"mvt_{name}_db_in_request_ms"] = in_request
            n_tiles = len(tiles_all) / len(walls)
            say(f"  (d) viewport as vector tiles, {name:<6} ({n_tiles:.0f} tiles, {BROWSER_CONNECTIONS} at a time) "
                f"{p50_p95(walls)}   {statistics.median(sizes) / 1000:.0f} KB"
                + (f"   target p95 <= {TARGETS_MS['viewport']:.0f} ms" if name == "review" else ""))
            say(f"      one tile at a time through nginx -> gunicorn              {p50_p95(per_tile)}")
            say(f"      its ST_AsMVT query inside the request (Server-Timing)     {p50_p95(in_request)}")
            say(f"      raw ST_AsMVT query (selector, in this process)            {p50_p95(raw)}")
            ratio = pct(per_tile, 50) / pct(raw, 50)
            out[f"mvt_{name}_overhead_ratio"] = ratio
            say(f"      endpoint / raw query, p50: {ratio:.2f}x ({pct(per_tile, 50) - pct(raw, 50):.1f} ms per tile)")
    return out


# ---------------------------------------------------------------------------------------------- Chromium
PAGE_HELPERS = """
window.__bench = {
  map() {
    const map = window.__georeviewMap;
    if (!map) throw new Error("the scene page exposes no window.__georeviewMap");
    return map;
  },
  /** Resolve on the map's next rendercomplete (every source loaded and drawn), or after `ms`. */
  rendered(ms) {
    const map = this.map();
    return new Promise((resolve) => {
      const t0 = performance.now();
      const timer = setTimeout(() => resolve(-1), ms);
      map.once("rendercomplete", () => { clearTimeout(timer); resolve(performance.now() - t0); });
      map.render();
    });
  },
  fit(extent) {
    const map = this.map();
    map.getView().fit(extent, { size: map.getSize() });
    return this.rendered(60000);
  },
  /**
   * A scripted pan (a circle of 20% of the view) with zoom in and out (x2) over `frames` frames, then `settle`
   * frames after it: the rAF deltas. The view is marked as interacted with meanwhile, as OpenLayers' own drag-pan
   * and wheel/pinch zoom mark it (`hinted`); without the hint every frame redraws each tile at full quality.
   */
  panZoom(frames, hinted = true, settle = 20) {
    const map = this.map(), view = map.getView();
    const c0 = view.getCenter(), r0 = view.getResolution(), w = r0 * map.getSize()[0];
    const deltas = [];
    let last = null, i = 0;
    if (hinted) view.beginInteraction();
    return new Promise((resolve) => {
      const step = (t) => {
        if (last !== null) deltas.push(t - last);
        last = t;
        if (i === frames) {
          view.setCenter(c0);
          view.setResolution(r0);
          if (hinted) view.endInteraction();
        }
        if (i >= frames + settle) { resolve(deltas); return; }
        if (i >= frames) { i += 1; requestAnimationFrame(step); return; }
        const phase = i / frames;
        view.setCenter([c0[0] + 0.2 * w * Math.sin(2 * Math.PI * phase),
                        c0[1] + 0.2 * w * (1 - Math.cos(2 * Math.PI * phase))]);
        view.setResolution(r0 * Math.pow(2, 0.5 * Math.sin(4 * Math.PI * phase)));
        i += 1;
        requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    });
  },
  selected() {
    const marked = document.querySelector("[data-selected]");
    return marked ? marked.getAttribute("data-selected") : null;
  },
  /** Arm before a key press: resolves with ms from the keydown to the frame that shows the new selection. */
  arm() {
    const before = this.selected();
    this.result = new Promise((resolve) => {
      let t0 = null;
      window.addEventListener("keydown", (e) => { t0 = e.timeStamp; }, { capture: true, once: true });
      const done = () => {
        const now = this.selected();
        if (t0 === null || !now || now === before) return false;
        observer.disconnect();
        const marked = performance.now() - t0;
        // Shown = the next frame is painted with the selection (rAF, then a task after that frame).
        requestAnimationFrame(() => setTimeout(() => {
          const shown = performance.now() - t0;
          const map = this.map();
          const t1 = performance.now();
          map.once("rendercomplete", () =>
            resolve({ id: now, marked, shown, rendered: shown + performance.now() - t1 }));
          map.render();
        }, 0));
        return true;
      };
      const observer = new MutationObserver(done);
      observer.observe(document.body, { attributes: true, subtree: true, attributeFilter: ["data-selected"] });
      setTimeout(() => { observer.disconnect(); resolve(null); }, 10000);
    });
  },
};
"""


def open_scene(page, base: str, scene: Scene) -> float:
    """Open the scene page and wait until it has loaded its map and panel; seconds it took."""
    t0 = time.perf_counter()
    missing: list[str] = []
    page.on("response", lambda r: r.status == 404 and missing.append(r.url))
    page.goto(f"{base}/scenes/{scene.pk}/")
    try:
        page.wait_for_function("document.getElementById('map')?.dataset.ready === '1'", timeout=120_000)
    except Exception as exc:
        raise RuntimeError(f"the scene page did not start (404s: {missing[:3]}; was the front end rebuilt meanwhile?"
                           " run `cd frontend && npm run build`)") from exc
    if page.locator("#search-panel").count():
        page.wait_for_selector("#search-panel[data-ready='1']", state="attached", timeout=180_000)
    page.evaluate(PAGE_HELPERS)
    return time.perf_counter() - t0


def browser_figures(base: str, scene: Scene, empty: Scene, args) -> dict:
    """Frame times with 10,000 detections in view vs none, and N key -> next detection shown."""
    from playwright.sync_api import sync_playwright

    # The page's bundles as nginx serves them: the current Vite build, collected just before.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    # 10,000 of the 50,000 in view: a centred square of a fifth of the scene's area.
    side = scene.width * math.sqrt(IN_VIEW_BROWSER / DETECTIONS)
    x0, y0 = (scene.width - side) / 2, (scene.height - side) / 2
    bbox = window_lonlat(scene, x0, y0, x0 + side, y0 + side)
    extent = list(TMS.xy(bbox[0], bbox[1])) + list(TMS.xy(bbox[2], bbox[3]))
    in_view = count_in(scene, bbox)
    out: dict = {"browser_in_view": in_view}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"{base}/login/")
        page.fill("input[name=username]", REVIEWER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        frames, raw = {}, {}
        for name, which in (("with", scene), ("none", empty)):
            load_s = open_scene(page, base, which)
            first = page.evaluate("e => __bench.fit(e)", extent)
            page.evaluate("n => __bench.panZoom(n)", 60)  # warm: tiles and caches around the path
            page.evaluate("() => __bench.rendered(30000)")
            frames[name] = deltas = page.evaluate("n => __bench.panZoom(n)", args.frames)
            page.evaluate("() => __bench.rendered(30000)")
            raw[name] = page.evaluate("n => __bench.panZoom(n, false, 0)", args.frames_unhinted)
            label = f"with {in_view:,} detections in view" if name == "with" else "with none"
            say(f"  page {label:<34} frame p50 {pct(deltas, 50):6.1f} ms  p95 {pct(deltas, 95):7.1f} ms"
                f"  max {max(deltas):7.1f} ms  ({len(deltas)} frames; page ready in {load_s:.1f} s,"
                f" first full render {first / 1000:.1f} s)")
            say(f"       the same path without the interaction hint   frame p50 {pct(raw[name], 50):6.1f} ms"
                f"  p95 {pct(raw[name], 95):7.1f} ms  ({len(raw[name])} frames)")
        out["frame_with_ms"], out["frame_none_ms"] = frames["with"], frames["none"]
        out["frame_unhinted_with_ms"], out["frame_unhinted_none_ms"] = raw["with"], raw["none"]
        out["frame_ratio"] = ratio = pct(frames["with"], 50) / pct(frames["none"], 50)
        out["frame_ratio_p95"] = pct(frames["with"], 95) / pct(frames["none"], 95)
        out["frame_ratio_unhinted"] = pct(raw["with"], 50) / pct(raw["none"], 50)
        say(f"  frame time ratio (10,000 in view / none): median {ratio:.2f}x, p95 {out['frame_ratio_p95']:.2f}x"
            f"   target <= {TARGET_FRAME_RATIO:.0f}x;  without the hint: median {out['frame_ratio_unhinted']:.2f}x")

        # N -> next detection shown, at a typical review zoom around the scene's centre.
        open_scene(page, base, scene)
        lat = (scene.footprint.extent[1] + scene.footprint.extent[3]) / 2
        page.evaluate("z => __bench.map().getView().setZoom(z)", geo.native_zoom(scene.gsd_m, lat))
        page.evaluate("() => __bench.rendered(30000)")
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.keyboard.press("n")  # the first selection (also warms the queue)
        page.wait_for_timeout(1500)
        shown, marked, rendered = [], [], []
        for _ in range(args.keys):
            page.evaluate("() => __bench.arm()")
            page.keyboard.press("n")
            got = page.evaluate("() => __bench.result")
            if got is None:
                say("  N pressed, but no new selection was marked within 10 s (is this scene's page reviewable?)")
                break
            shown.append(got["shown"])
            marked.append(got["marked"])
            rendered.append(got["rendered"])
            page.wait_for_timeout(300)
        if shown:
            out["key_shown_ms"], out["key_marked_ms"], out["key_rendered_ms"] = shown, marked, rendered
            say(f"  N -> next detection shown (selection marked, frame painted) {p50_p95(shown)}"
                f"   target < {TARGETS_MS['key_to_shown']:.0f} ms")
            say(f"      selection marked in the page                             {p50_p95(marked)}")
            say(f"      map rendercomplete after it (fly-to, tiles loaded)       {p50_p95(rendered)}")
        if errors:
            say(f"  console errors: {len(errors)} (first: {errors[0][:200]})")
        browser.close()
    return out


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--queue-steps", type=int, default=200)
    parser.add_argument("--viewports", type=int, default=40, help="random review-zoom viewports")
    parser.add_argument("--whole-reps", type=int, default=3, help="whole-scene loads (GeoJSON and tiles)")
    parser.add_argument("--frames", type=int, default=300, help="frames of the scripted pan and zoom")
    parser.add_argument("--frames-unhinted", type=int, default=30,
                        help="frames of the same path without the interaction hint (each may redraw every tile)")
    parser.add_argument("--keys", type=int, default=20, help="N key presses timed")
    parser.add_argument("--requery-runs", type=int, default=5)
    parser.add_argument("--broker-url", default=None,
                        help="a Redis database of its own for review_requery's worker, flushed (default: its own)")
    parser.add_argument("--team-reviewers", type=int, default=20, help="simulated reviewers at once (part team)")
    parser.add_argument("--team-seconds", type=float, default=90, help="how long the team works")
    parser.add_argument("--team-think", type=float, default=1.0, help="seconds a reviewer looks at an item (mean)")
    parser.add_argument("--skip", default="", help="comma list of parts to leave out: http,browser,team,requery")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    scene, empty = benchmark_scenes()
    say(f"Review benchmark: scene {scene.pk} ({scene.width} x {scene.height} px at {scene.gsd_m:.2f} m), "
        f"{scene.detections.count():,} detections ({scene.detections.filter(status='proposed').count():,} proposed); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    figures: dict = {}
    if not {"http", "browser", "team"} <= skip:
        web_port, proxy_port = free_ports(2)
        env = {**os.environ, "WEB_PORT": str(web_port)}
        say(f"server: nginx :{proxy_port} -> {procfile_web_command()}  (WEB_PORT={web_port})")
        servers = []
        with tempfile.TemporaryFile() as web_log, tempfile.TemporaryFile() as proxy_log, \
                tempfile.TemporaryDirectory() as proxy_dir:
            try:
                servers.append(start(["bash", "-c", f"exec {procfile_web_command()}"],
                                     f"http://127.0.0.1:{web_port}/login/", env, web_log))
                nginx = proxy_command(Path(proxy_dir), proxy_port, web_port, Path(proxy_dir) / "access.log")
                servers.append(start(nginx, f"http://127.0.0.1:{proxy_port}/login/", env, proxy_log))
                base = f"http://127.0.0.1:{proxy_port}"
                if "http" not in skip:
                    say("\nHTTP, one reviewer, through nginx -> gunicorn:")
                    figures.update(http_figures(base, scene, args))
                if "browser" not in skip:
                    say("\nChromium (the scene page as built now):")
                    figures.update(browser_figures(base, scene, empty, args))
                if "team" not in skip:
                    from benchmarks import review_team

                    say("\nA team at once, through nginx -> gunicorn (benchmarks/review_team.py):")
                    lat = (scene.footprint.extent[1] + scene.footprint.extent[3]) / 2
                    figures.update(review_team.run(
                        base, scene, reviewers=args.team_reviewers, seconds=args.team_seconds,
                        think_s=args.team_think, tile_zoom=geo.native_zoom(scene.gsd_m, lat) - 1, log=say,
                        access_log=Path(proxy_dir) / "access.log"))
            finally:
                for proc in reversed(servers):
                    proc.terminate()
                    proc.wait(timeout=20)
    requery = ROOT / "benchmarks" / "review_requery.py"
    if "requery" not in skip and requery.exists():
        from benchmarks import review_requery

        say("\nDecision -> refreshed proposals (benchmarks/review_requery.py):")
        try:
            broker = {"broker_url": args.broker_url} if args.broker_url else {}
            figures["requery"] = review_requery.run(runs=args.requery_runs, log=say, **broker)
        except Exception as exc:  # its failure must not lose the figures above
            say(f"  failed: {exc!r}")
    summary(figures)


def summary(f: dict) -> None:
    """The targets and where each stands."""
    say("\nSummary (target: measured)")
    rows = []
    if "decision_ms" in f:
        rows.append(("decision p95 <= 100 ms", pct(f["decision_ms"], 95), TARGETS_MS["decision"]))
        rows.append(("GeoJSON viewport p95 <= 200 ms (review zoom)", pct(f["geojson_review_ms"], 95), 200.0))
        rows.append(("vector-tile viewport p95 <= 200 ms (review zoom)", pct(f["mvt_review_viewport_ms"], 95), 200.0))
        rows.append(("vector-tile viewport p95 <= 200 ms (whole scene)", pct(f["mvt_whole_viewport_ms"], 95), 200.0))
    if "team_decision_ms" in f:
        n = f["team_reviewers"]
        rows.append((f"{n} reviewers: decision p95 <= 100 ms", pct(f["team_decision_ms"], 95), 100.0))
        rows.append((f"{n} reviewers: viewport p95 <= 200 ms", pct(f["team_viewport_ms"], 95), 200.0))
        if f["team_live_delay_s"]:
            rows.append((f"{n} reviewers: live-update delay p95 <= 2 s", pct(f["team_live_delay_s"], 95), 2.0))
        for key, label in (("team_errors", "errors"), ("team_duplicate_serves", "duplicate serves"),
                           ("team_lost_events", "lost updates (events)"),
                           ("team_inconsistent", "lost updates (versions)"), ("team_live_never", "live never came")):
            rows.append((f"{n} reviewers: {label} = 0", float(f[key]), 0.0))
    if "frame_ratio" in f:
        rows.append(("frame time ratio <= 2x", f["frame_ratio"], TARGET_FRAME_RATIO))
    if "key_shown_ms" in f:
        rows.append(("N -> next shown < 100 ms (p50)", pct(f["key_shown_ms"], 50), TARGETS_MS["key_to_shown"]))
    if "requery" in f:
        rows.append(("decision -> refreshed proposals < 2 s (p95)", f["requery"]["p95_s"], f["requery"]["target_s"]))
    for label, value, target in rows:
        say(f"  {label:<52} {value:9.2f}   {'met' if value <= target else 'MISSED'}")
    out = ROOT / "var" / "bench-review.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(f, indent=1, default=float))
    say(f"(all samples in {out.relative_to(ROOT)})")


if __name__ == "__main__":
    if shutil.which("redis-cli") is None:
        sys.exit("Redis is needed: run scripts/setup.sh first")
    main()
