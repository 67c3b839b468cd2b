#!/usr/bin/env python
"""Tile serving benchmark: our endpoint vs TiTiler on the same warm COG, several concurrent HTTP clients.

Prints p50/p95 latency and tiles per second for both, measured in the same run, and their ratios.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import morecantile  # noqa: E402
import rasterio  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rio_tiler.io import Reader  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from annotate import storage  # noqa: E402
from annotate.models import Project, Scene, SceneStatus  # noqa: E402
from annotate.services import membership_set, project_create, scene_create_from_path, scene_ingest  # noqa: E402

TITILER_VENV = ROOT / ".venv-titiler"
OURS_PORT, TITILER_PORT = 8765, 8766
SCENE_NAME = "benchmark mosaic"


def build_mosaic(path: Path, repeat: int) -> None:
    """A repeat x repeat mosaic of the real NEON 0.1 m sample, written window by window."""
    with rasterio.open(ROOT / "data/samples/neon_trees_OSBS_029.tif") as src:
        block = src.read()
        crs, origin_x, origin_y = src.crs, src.transform.c, src.transform.f
    bands, h, w = block.shape
    profile = {"driver": "GTiff", "width": w * repeat, "height": h * repeat, "count": bands, "dtype": "uint8",
               "crs": crs, "transform": from_origin(origin_x, origin_y, 0.1, 0.1), "tiled": True,
               "compress": "deflate", "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(repeat):
            for c in range(repeat):
                # Flip alternate copies so neighbouring tiles differ.
                part = block[:, ::-1 if (r + c) % 2 else 1, :]
                dst.write(part, window=((r * h, (r + 1) * h), (c * w, (c + 1) * w)))


def benchmark_scene(repeat: int) -> tuple[Scene, str]:
    """The benchmark scene (built and ingested once) and an API token of a member."""
    user, _ = get_user_model().objects.get_or_create(username="tile-bench")
    project = Project.objects.filter(name="Tile benchmark").first() or project_create(name="Tile benchmark", user=user)
    membership_set(project=project, user=user, role="viewer")
    name = f"{SCENE_NAME} {repeat}x{repeat}"
    scene = project.scenes.filter(name=name, status=SceneStatus.READY).first()
    if scene is None:
        src = ROOT / "var" / f"bench-mosaic-{repeat}.tif"
        src.parent.mkdir(exist_ok=True)
        print(f"building a {400 * repeat} px mosaic of the NEON sample ...", flush=True)
        build_mosaic(src, repeat)
        scene = scene_ingest(scene=scene_create_from_path(project=project, user=user, source=src, name=name))
        src.unlink()
    token, _ = Token.objects.get_or_create(user=user)
    return scene, token.key


def ensure_titiler_venv() -> Path:
    """A virtualenv of its own for TiTiler, so that it never constrains ours."""
    python = TITILER_VENV / "bin" / "python"
    if not (TITILER_VENV / "bin" / "uvicorn").exists():
        print("creating .venv-titiler (titiler.core + uvicorn) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(TITILER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "titiler.core", "uvicorn"], check=True)
    return TITILER_VENV


def start(cmd: list[str], health_url: str, env: dict) -> subprocess.Popen:
    """Start a server and wait until it answers."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if requests.get(health_url, timeout=5).status_code < 500:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"{cmd} did not start in 60 s")


def tiles_of(scene: Scene, zooms: list[int], limit: int, seed: int) -> list[morecantile.Tile]:
    """Tiles that touch the scene at the given zooms, shuffled and capped."""
    tms = morecantile.tms.get("WebMercatorQuad")
    minx, miny, maxx, maxy = scene.footprint.extent
    with Reader(str(storage.absolute(scene.cog_path))) as reader:
        found = [t for t in tms.tiles(minx, miny, maxx, maxy, zooms) if reader.tile_exists(t.x, t.y, t.z)]
    random.Random(seed).shuffle(found)
    return found[:limit]


def run_load(urls: list[str], clients: int, headers: dict) -> tuple[list[float], float]:
    """Fetch every URL once with `clients` threads on keep-alive sessions: latencies (s) and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(reversed(urls))

    def client():
        session = requests.Session()
        mine = []
        while True:
            with lock:
                if not queue:
                    break
                url = queue.pop()
            t0 = time.perf_counter()
            response = session.get(url, headers=headers, timeout=30)
            mine.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start_t = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start_t


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--tiles", type=int, default=400, help="distinct tiles per round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per server (interleaved)")
    parser.add_argument("--mosaic", type=int, default=20, help="scene is N x N copies of the 400 px sample")
    parser.add_argument("--workers", type=int, default=2, help="server processes for each side")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (ours)")
    args = parser.parse_args()

    scene, token = benchmark_scene(args.mosaic)
    cog = storage.absolute(scene.cog_path)
    zooms = [scene.max_zoom - 2, scene.max_zoom - 1, scene.max_zoom]
    tiles = tiles_of(scene, zooms, args.tiles, seed=1)
    print(f"scene {scene.pk}: {scene.width} x {scene.height} px at {scene.gsd_m:.2f} m, COG {cog.stat().st_size / 1e6:.1f}"
          f" MB; {len(tiles)} tiles at zooms {zooms}; {args.clients} clients; {args.workers} workers each side")

    venv = ensure_titiler_venv()
    env = {**os.environ, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": "512"}
    ours_cmd = [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{OURS_PORT}",
                "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning"]
    titiler_cmd = [str(venv / "bin/uvicorn"), "benchmarks.titiler_app:app", "--port", str(TITILER_PORT),
                   "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"]
    servers = []
    try:
        servers.append(start(ours_cmd, f"http://127.0.0.1:{OURS_PORT}/login/", env))
        servers.append(start(titiler_cmd, f"http://127.0.0.1:{TITILER_PORT}/healthz", env))
        bands = "".join(f"&bidx={b}" for b in scene.rgb_bands)
        sides = {
            "ours": ([f"http://127.0.0.1:{OURS_PORT}/api/scenes/{scene.pk}/tiles/{t.z}/{t.x}/{t.y}.png" for t in tiles],
                     {"Authorization": f"Token {token}"}),
            "titiler": ([f"http://127.0.0.1:{TITILER_PORT}/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
                         f"?url={cog}{bands}&resampling=bilinear" for t in tiles], {}),
        }
        # Same picture from both (sanity check), then warm both: every tile once, so the COG is in cache.
        a = requests.get(sides["ours"][0][0], headers=sides["ours"][1]).content
        b = requests.get(sides["titiler"][0][0]).content
        print(f"first tile: ours {len(a)} bytes, titiler {len(b)} bytes")
        for urls, headers in sides.values():
            run_load(urls, args.clients, headers)
        results = {name: ([], 0.0, 0) for name in sides}
        for _ in range(args.rounds):
            for name, (urls, headers) in sides.items():
                lat, wall = run_load(urls, args.clients, headers)
                prev = results[name]
                results[name] = (prev[0] + lat, prev[1] + wall, prev[2] + len(urls))
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=20)

    print(f"\n{'server':<10}{'tiles':>8}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}{'tiles/s':>10}")
    rows = {}
    for name, (lat, wall, n) in results.items():
        rows[name] = (pct(lat, 50), pct(lat, 95), statistics.mean(lat) * 1000, n / wall)
        print(f"{name:<10}{n:>8}{rows[name][0]:>10.1f}{rows[name][1]:>10.1f}{rows[name][2]:>10.1f}{rows[name][3]:>10.1f}")
    ours, ref = rows["ours"], rows["titiler"]
    print(f"\nratios (ours / titiler): p50 {ours[0] / ref[0]:.2f}x, p95 {ours[1] / ref[1]:.2f}x, "
          f"throughput {ours[3] / ref[3]:.2f}x (above 1 = ours serves more tiles per second)")


if __name__ == "__main__":
    if shutil.which("redis-cli") is None:
        sys.exit("Redis is needed: run scripts/setup.sh first")
    main()
