"""Team review benchmark (issue 10 §6): many reviewers at once on the 50,000-detection scene.

Run by benchmarks/review.py (part `team`) against the server it started (nginx -> the Procfile's gunicorn). Each
simulated reviewer logs in, then loops: queue-next (a leased item of their own cells first), a pause (`think`),
the decision, the viewport around the next object (its vector tiles, 6 at a time as a browser loads them); beside
it a live-update poll every second, as the page does. At the end: p50/p95 of each request kind, errors, duplicate
serves (one detection handed to two reviewers), lost updates (a 200 decision without its event, or a detection
whose versions and status disagree with its events), and the delay from a decision's answer to each other
reviewer's poll that brought it.
"""

import random
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from django.contrib.auth import get_user_model
from django.db.models import F

from annotate import geo
from annotate.models import Detection, DetectionStatus, Role, Scene
from annotate.services import membership_set

TEAM_PASSWORD = "team-bench-pw"  # noqa: S105 (the benchmark's own local users)
POLL_S = 1.0  # what frontend/src/review/live.ts does while the page is visible
VIEWPORT_PX = (1000, 640)  # a review viewport at about one scene pixel per screen pixel
CELL_M = 100.0  # work cells of 100 m: 100 cells on the 1 km scene, 5 per reviewer at 20


@dataclass
class Figures:
    """What the reviewers measured, shared between their threads (appends are atomic in CPython)."""

    ms: dict = field(default_factory=lambda: defaultdict(list))
    errors: list = field(default_factory=list)
    served: list = field(default_factory=list)  # (detection, reviewer)
    decided: dict = field(default_factory=dict)  # (detection, version_after) -> (reviewer, answer time, client id)
    conflicts: list = field(default_factory=list)
    seen: dict = field(default_factory=dict)  # (reviewer, detection, version_after) -> first poll time


def team_users(scene: Scene, count: int) -> list[str]:
    """`count` reviewers of the scene's project (created once)."""
    names = []
    for i in range(1, count + 1):
        user, created = get_user_model().objects.get_or_create(username=f"team-bench-{i:02d}")
        if created or not user.check_password(TEAM_PASSWORD):
            user.set_password(TEAM_PASSWORD)
            user.save()
        membership_set(project=scene.project, user=user, role=Role.REVIEWER)
        names.append(user.username)
    return names


def team_cells(scene: Scene, names: list[str], log) -> int:
    """Split the scene into work cells and hand them out round-robin (the manager's two clicks); 0 if no cells."""
    try:
        from review import cells
        from review.cells_models import WorkCell
    except ImportError:
        log("  (no work cells in this tree: every reviewer shares the whole scene)")
        return 0
    users = get_user_model().objects.filter(username__in=names).order_by("username")
    manager = scene.project.memberships.filter(role=Role.MANAGER).select_related("user").first().user
    WorkCell.objects.filter(scene=scene).delete()  # the last run's cells (assigned, so a split would refuse)
    made = cells.cells_split(actor=manager, scene=scene, size_m=CELL_M)
    cells.cells_assign_round_robin(actor=manager, scene=scene, user_ids=[u.pk for u in users])
    return len(made)


class Session:
    """One reviewer's browser session over HTTP (login form, session cookie, CSRF header)."""

    def __init__(self, base: str, username: str, password: str):
        self.base, self.name = base, username
        self.http = requests.Session()
        self.http.get(f"{base}/login/", timeout=30)
        answer = self.http.post(f"{base}/login/", data={
            "username": username, "password": password, "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
        }, timeout=30, allow_redirects=False)
        if answer.status_code != 302:
            raise RuntimeError(f"login of {username} failed: HTTP {answer.status_code}")
        self.csrf = {"X-CSRFToken": self.http.cookies["csrftoken"]}

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, timeout=60)

    def post(self, path: str, body: dict) -> requests.Response:
        return self.http.post(self.base + path, json=body, timeout=60, headers=self.csrf)


def _timed(figures: Figures, kind: str, call, *args) -> requests.Response | None:
    """Run one request, record its ms under `kind`, and any failure (an exception or a 5xx/4xx) as an error."""
    t0 = time.perf_counter()
    try:
        answer = call(*args)
    except requests.RequestException as exc:
        figures.errors.append((kind, repr(exc)))
        return None
    figures.ms[kind].append((time.perf_counter() - t0) * 1000)
    if answer.status_code >= 400 and answer.status_code != 409:
        figures.errors.append((kind, f"HTTP {answer.status_code} {answer.text[:200]}"))
    return answer


class Frame:
    """Scene pixel <-> lon/lat and the vector tiles of a viewport (what the page asks for)."""

    def __init__(self, scene: Scene, tile_zoom: int):
        import morecantile

        self.frame = geo.SceneFrame.of(scene)
        self.scene, self.zoom = scene, tile_zoom
        self.tms = morecantile.tms.get("WebMercatorQuad")

    def tiles_around(self, lon: float, lat: float) -> list:
        """Tiles of a review viewport centred on (lon, lat)."""
        import numpy as np

        xs, ys = self.frame.to_px(np.array([lon]), np.array([lat]))
        w, h = VIEWPORT_PX
        x0, y0 = float(xs[0]) - w / 2, float(ys[0]) - h / 2
        lons, lats = self.frame.to_lonlat(np.array([x0, x0 + w]), np.array([y0, y0 + h]))
        return list(self.tms.tiles(float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max()),
                                   [self.zoom]))


def reviewer_loop(session: Session, scene: Scene, frame: Frame, figures: Figures, stop: threading.Event,
                  think_s: float, seed: int) -> None:
    """One reviewer until `stop`; a failure of this script's own is recorded, never silently ends the thread."""
    try:
        _review(session, scene, frame, figures, stop, think_s, seed)
    except Exception as exc:  # noqa: BLE001 (counted and shown: the run must still report)
        figures.errors.append(("reviewer", f"{session.name}: {exc!r}"))


def _review(session: Session, scene: Scene, frame: Frame, figures: Figures, stop: threading.Event,
            think_s: float, seed: int) -> None:
    """Queue-next, load the item's viewport, think, decide; until `stop`."""
    rng = random.Random(seed)
    tiles = ThreadPoolExecutor(6)
    while not stop.is_set():
        answer = _timed(figures, "queue_next", session.get, f"/api/scenes/{scene.pk}/review-queue/?order=score&limit=1")
        if answer is None or answer.status_code != 200:
            time.sleep(0.5)
            continue
        found = answer.json()["detections"]
        found = found["features"] if isinstance(found, dict) else found
        if not found:
            figures.errors.append(("queue_next", f"{session.name}: queue empty"))
            break
        item = found[0]
        pk = item["id"]
        props = item.get("properties", item)
        figures.served.append((pk, session.name))
        lon, lat = _centre(item)
        # The viewport of the item just served (the map flies there), then the reviewer looks at it.
        t0 = time.perf_counter()
        results = list(tiles.map(lambda t: session.get(
            f"/api/scenes/{scene.pk}/detections/tiles/{t.z}/{t.x}/{t.y}.mvt"), frame.tiles_around(lon, lat)))
        figures.ms["viewport"].append((time.perf_counter() - t0) * 1000)
        for r in results:
            if r.status_code not in (200, 204):
                figures.errors.append(("viewport", f"HTTP {r.status_code}"))
        stop.wait(think_s * rng.uniform(0.5, 1.5))
        verdict = DetectionStatus.ACCEPTED if rng.random() < 0.6 else DetectionStatus.REJECTED
        client_id = str(uuid.uuid4())
        body = {"verdict": verdict, "expected_version": props["version"], "client_id": client_id}
        answer = _timed(figures, "decision", session.post, f"/api/detections/{pk}/review/", body)
        if answer is None:
            continue
        if answer.status_code == 409:
            figures.conflicts.append((pk, session.name, answer.text[:200]))
        elif answer.status_code == 200:
            detection = answer.json()["detection"]  # a GeoJSON feature
            version = detection.get("properties", detection)["version"]
            figures.decided[(pk, version)] = (session.name, time.monotonic(), client_id)
    tiles.shutdown()


def _centre(item: dict) -> tuple[float, float]:
    """A served detection's bbox centre (the queue answers GeoJSON features or plain rows)."""
    geometry = item.get("geometry") or item.get("properties", {}).get("geometry") or item.get("bbox")
    ring = geometry["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return (min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2


def poll_loop(session: Session, scene: Scene, figures: Figures, stop: threading.Event) -> None:
    """The page's live-update poll: every POLL_S, events since the cursor, as browsers do."""
    cursor = None
    while not stop.is_set():
        started = time.monotonic()
        query = f"?since={cursor}" if cursor is not None else ""
        answer = _timed(figures, "live_poll", session.get, f"/api/scenes/{scene.pk}/live/{query}")
        now = time.monotonic()
        if answer is not None and answer.status_code == 200:
            body = answer.json()
            for event in body.get("events", []):
                figures.seen.setdefault((session.name, event["detection"], event["version_after"]), now)
            cursor = body.get("cursor", cursor) if body.get("cursor") is not None else cursor
        stop.wait(max(0.0, POLL_S - (time.monotonic() - started)))


def lost_updates(scene: Scene, figures: Figures) -> tuple[int, int]:
    """(decisions answered 200 without their event, detections whose version/status disagree with their events)."""
    from review.models import ReviewEvent

    missing = 0
    pks = {pk for pk, _ in figures.decided}
    events = defaultdict(list)
    for e in ReviewEvent.objects.filter(detection_id__in=pks).order_by("id").values(
            "detection_id", "version_after", "status_after", "client_id", "actor__username"):
        events[e["detection_id"]].append(e)
    for (pk, version), (name, _, client_id) in figures.decided.items():
        if not any(e["version_after"] == version and e["actor__username"] == name and e["client_id"] == client_id
                   for e in events[pk]):
            missing += 1
    inconsistent = 0
    for d in Detection.objects.filter(pk__in=pks).values("pk", "version", "status"):
        trail = events[d["pk"]]
        versions = [e["version_after"] for e in trail]
        if not trail or versions != sorted(set(versions)) or versions[-1] != d["version"] \
                or trail[-1]["status_after"] != d["status"]:
            inconsistent += 1
    return missing, inconsistent


def live_delays(figures: Figures, names: list[str], started: float, ended: float) -> tuple[list[float], int]:
    """Seconds from each decision's answer to each other reviewer's poll bringing it; and how many never came."""
    delays, never = [], 0
    for (pk, version), (author, answered, _) in figures.decided.items():
        if answered > ended - 3 * POLL_S:
            continue  # too close to the end for every poll to have come round
        for name in names:
            if name == author:
                continue
            seen = figures.seen.get((name, pk, version))
            if seen is None:
                never += 1
            else:
                delays.append(max(0.0, seen - answered))
    return delays, never


_KINDS = (("/review-queue/", "queue_next"), ("/review/", "decision"), ("/live/", "live_poll"), (".mvt", "one_tile"))


def server_times(access_log, offset: int) -> dict[str, list[float]]:
    """Per request kind, the proxy's request times (ms) logged after `offset` (the `timed` log format)."""
    times: dict[str, list[float]] = defaultdict(list)
    with open(access_log, "rb") as fh:
        fh.seek(offset)
        for raw in fh:
            line = raw.decode(errors="replace")
            request = line.partition('"')[2].partition('"')[0]
            rt = line.rpartition(" rt=")[2].split()[0] if " rt=" in line else ""
            path = request.split(" ")[1] if request.count(" ") >= 2 else ""
            for marker, kind in _KINDS:
                if marker in path.split("?")[0] and rt:
                    times[kind].append(float(rt) * 1000)
                    break
    return times


def put_back(scene: Scene, figures: Figures) -> None:
    """Decided detections back to proposed (versions move on, as an edit's would), leases freed: runs start alike."""
    pks = {pk for pk, _ in figures.decided}
    Detection.objects.filter(pk__in=pks).update(
        status=DetectionStatus.PROPOSED, reviewer=None, reviewed_at=None, version=F("version") + 1)
    try:
        from review.queue_leases import leases_release
    except ImportError:
        return
    leases_release(detection_ids=pks | {pk for pk, _ in figures.served})


def run(base: str, scene: Scene, *, reviewers: int, seconds: float, think_s: float, tile_zoom: int, log,
        access_log=None) -> dict:
    """The team run; figures as a dict (samples in ms, delays in s); `access_log`: the proxy's, for server times."""
    names = team_users(scene, reviewers)
    cells = team_cells(scene, names, log)
    frame = Frame(scene, tile_zoom)
    figures = Figures()
    sessions = [Session(base, name, TEAM_PASSWORD) for name in names]
    pollers = [Session(base, name, TEAM_PASSWORD) for name in names]  # the page's poll has its own connection
    stop = threading.Event()
    log(f"  {reviewers} reviewers, {cells} work cells, {seconds:.0f} s, think {think_s:.1f} s per item "
        f"(0.5-1.5x), live poll every {POLL_S:.0f} s")
    threads = [threading.Thread(target=poll_loop, args=(p, scene, figures, stop), daemon=True) for p in pollers]
    threads += [threading.Thread(target=reviewer_loop, args=(s, scene, frame, figures, stop, think_s, i), daemon=True)
                for i, s in enumerate(sessions)]
    for t in threads[:len(pollers)]:  # every page open and holding its cursor before the first decision
        t.start()
    deadline = time.monotonic() + 30
    while len(figures.ms["live_poll"]) < len(pollers) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    log_from = access_log.stat().st_size if access_log and access_log.exists() else 0
    for t in threads[len(pollers):]:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    ended = time.monotonic()
    try:
        missing, inconsistent = lost_updates(scene, figures)
        served = defaultdict(set)
        for pk, name in figures.served:
            served[pk].add(name)
        duplicates = sum(1 for who in served.values() if len(who) > 1)
        delays, never = live_delays(figures, names, started, ended)
    finally:
        put_back(scene, figures)
    out = {
        "team_reviewers": reviewers, "team_cells": cells, "team_seconds": ended - started,
        "team_decisions": len(figures.decided), "team_conflicts": len(figures.conflicts),
        "team_errors": len(figures.errors), "team_error_samples": figures.errors[:10],
        "team_duplicate_serves": duplicates, "team_lost_events": missing, "team_inconsistent": inconsistent,
        "team_live_delay_s": delays, "team_live_never": never,
        **{f"team_{kind}_ms": values for kind, values in figures.ms.items()},
    }
    import numpy as np

    for kind, values in figures.ms.items():
        log(f"  {kind:<12} p50 {np.percentile(values, 50):7.1f} ms  p95 {np.percentile(values, 95):7.1f} ms"
            f"  (n={len(values)})")
    if delays:
        log(f"  live delay   p50 {np.percentile(delays, 50):7.2f} s   p95 {np.percentile(delays, 95):7.2f} s"
            f"  (n={len(delays)} decision x other reviewer; never arrived: {never})")
    log(f"  decisions {len(figures.decided)} ({len(figures.decided) / (ended - started):.1f}/s), "
        f"409 conflicts {len(figures.conflicts)}, errors {len(figures.errors)}, duplicate serves {duplicates}, "
        f"lost events {missing}, detections inconsistent with their events {inconsistent}")
    if access_log is not None:
        server = server_times(access_log, log_from)
        out |= {f"team_server_{kind}_ms": values for kind, values in server.items()}
        log("  the same at the proxy (nginx $request_time: the server's side, without this script's own queueing):")
        for kind, values in server.items():
            log(f"  {kind:<12} p50 {np.percentile(values, 50):7.1f} ms  p95 {np.percentile(values, 95):7.1f} ms"
                f"  (n={len(values)})")
    for kind, text in figures.errors[:5]:
        log(f"    error {kind}: {text}")
    for pk, name, text in figures.conflicts[:5]:
        log(f"    409 on {pk} for {name}: {text}")
    return out
