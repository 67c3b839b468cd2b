#!/usr/bin/env python
"""Tile serving benchmark: our endpoint vs TiTiler on the same warm COG, several concurrent HTTP clients.

Prints p50/p95 latency, tiles per second and server CPU per tile for each, measured in the same run, and
their ratios. Ours runs the Procfile's `web:` command, so it measures what users run, twice: directly
("ours") and through the nginx proxy users reach it by ("proxy", docker/nginx/nginx.conf.template rendered
by scripts/nginx_conf.py as the Procfile's `proxy:` line does), with the proxy / direct ratio.
"""

import argparse
import contextlib
import io
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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
from PIL import Image  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rio_tiler.io import Reader  # noqa: E402

from annotate import storage  # noqa: E402
from annotate.models import Project, Scene, SceneStatus  # noqa: E402
from annotate.services import membership_set, project_create, scene_create_from_path, scene_ingest  # noqa: E402

TITILER_VENV = ROOT / ".venv-titiler"
SCENE_NAME = "benchmark mosaic"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def free_ports(count: int) -> list[int]:
    """TCP ports nothing listens on (a fixed port could be answered by a server left over from another run)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def procfile_web_command() -> str:
    """The Procfile's `web:` command line."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise RuntimeError("Procfile has no web: line")


def proxy_command(conf_dir: Path, listen_port: int, upstream_port: int, log: Path) -> list[str]:
    """nginx from the repository's template in front of `upstream_port`, as the Procfile starts it."""
    conf = conf_dir / "nginx.conf"
    subprocess.run([sys.executable, str(ROOT / "scripts/nginx_conf.py"), "--listen", f"127.0.0.1:{listen_port}",
                    "--upstream", f"127.0.0.1:{upstream_port}", "--access-log", str(log), "--out", str(conf)],
                   check=True)
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(conf_dir), "-c", conf.name, "-g", "daemon off;"]


def start(cmd: list[str], health_url: str, env: dict, log) -> subprocess.Popen:
    """Start a server, its stderr into the file `log`, and wait until it answers."""
    # A file rather than a pipe: a pipe nobody reads would stall a server that logs much.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{' '.join(cmd)[:200]} exited: {log.read().decode()[-2000:]}")
        try:
            if requests.get(health_url, timeout=5).status_code < 500:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"{cmd} did not start in 60 s")


def cpu_seconds(root_pid: int) -> float:
    """User + system CPU seconds of a server and all its (live) descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def tiles_of(scene: Scene, zooms: list[int], limit: int, seed: int) -> list[morecantile.Tile]:
    """Tiles that touch the scene at the given zooms, shuffled and capped."""
    tms = morecantile.tms.get("WebMercatorQuad")
    minx, miny, maxx, maxy = scene.footprint.extent
    with Reader(str(storage.absolute(scene.cog_path))) as reader:
        found = [t for t in tms.tiles(minx, miny, maxx, maxy, zooms) if reader.tile_exists(t.x, t.y, t.z)]
    random.Random(seed).shuffle(found)
    return found[:limit]


def run_load(urls: list[str], clients: int, headers: dict) -> tuple[list[float], list[float], float]:
    """Fetch every URL once with `clients` keep-alive threads: latencies (s), Server-Timing renders (ms), wall time."""
    latencies: list[float] = []
    renders: list[float] = []
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
            if found := re.search(r"render;dur=([0-9.]+)", response.headers.get("Server-Timing", "")):
                with lock:
                    renders.append(float(found.group(1)))
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start_t = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, renders, time.perf_counter() - start_t


def compare_pictures(sides: dict, count: int) -> str:
    """How far apart the two servers' first tiles are, as decoded RGBA pixels."""
    worst, alpha_differs, sizes = 0, 0, {name: 0 for name in sides}
    for i in range(count):
        pictures = {}
        for name, (urls, headers) in sides.items():
            body = requests.get(urls[i], headers=headers, timeout=30).content
            sizes[name] += len(body)
            pictures[name] = np.asarray(Image.open(io.BytesIO(body)).convert("RGBA")).astype(int)
        ours, ref = pictures["ours"], pictures["titiler"]
        alpha_differs += int((ours[..., 3] != ref[..., 3]).sum())
        worst = max(worst, int(np.abs(ours[..., :3] - ref[..., :3]).max()))
    mean_kb = ", ".join(f"{name} {size / count / 1000:.1f} KB" for name, size in sizes.items())
    return (f"{count} tiles decoded: largest RGB difference {worst}, alpha differs at {alpha_differs} px;"
            f" mean PNG size {mean_kb}")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--tiles", type=int, default=400, help="distinct tiles per round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per server (interleaved)")
    parser.add_argument("--mosaic", type=int, default=20, help="scene is N x N copies of the 400 px sample")
    parser.add_argument("--workers", type=int, default=2, help="server processes for each side")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per gunicorn worker (ours; default: the Procfile's)")
    args = parser.parse_args()

    scene, token = benchmark_scene(args.mosaic)
    cog = storage.absolute(scene.cog_path)
    zooms = [scene.max_zoom - 2, scene.max_zoom - 1, scene.max_zoom]
    tiles = tiles_of(scene, zooms, args.tiles, seed=1)
    print(f"scene {scene.pk}: {scene.width} x {scene.height} px at {scene.gsd_m:.2f} m, "
          f"COG {cog.stat().st_size / 1e6:.1f} MB; {len(tiles)} tiles at zooms {zooms}; {args.clients} clients; "
          f"{args.workers} workers each side")

    venv = ensure_titiler_venv()
    ours_port, proxy_port, titiler_port = free_ports(3)
    env = {**os.environ, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": "512"}
    # The Procfile's own command line (its ${VAR:-default}s expanded by the shell), so flags cannot drift apart.
    ours_env = {**env, "WEB_PORT": str(ours_port), "WEB_WORKERS": str(args.workers)}
    if args.threads is not None:
        ours_env["WEB_THREADS"] = str(args.threads)
    ours_cmd = ["bash", "-c", f"exec {procfile_web_command()}"]
    titiler_cmd = [str(venv / "bin/uvicorn"), "benchmarks.titiler_app:app", "--port", str(titiler_port),
                   "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"]
    print(f"ours: {procfile_web_command()}  (WEB_WORKERS={args.workers}"
          f"{f', WEB_THREADS={args.threads}' if args.threads is not None else ''})")
    servers = {}
    with (tempfile.TemporaryFile() as ours_log, tempfile.TemporaryFile() as titiler_log,
          tempfile.TemporaryFile() as proxy_log, tempfile.TemporaryDirectory() as proxy_dir):
        try:
            servers["ours"] = start(ours_cmd, f"http://127.0.0.1:{ours_port}/login/", ours_env, ours_log)
            # Its access log goes to a file, as the demo's goes to the terminal: part of what a proxied tile costs.
            nginx_cmd = proxy_command(Path(proxy_dir), proxy_port, ours_port, Path(proxy_dir) / "access.log")
            servers["proxy"] = start(nginx_cmd, f"http://127.0.0.1:{proxy_port}/login/", env, proxy_log)
            servers["titiler"] = start(titiler_cmd, f"http://127.0.0.1:{titiler_port}/healthz", env, titiler_log)
            results = measure(sides_of(scene, tiles, token, cog, ours_port, proxy_port, titiler_port), servers, args)
        finally:
            for proc in servers.values():
                proc.terminate()
                proc.wait(timeout=20)
    report(results)


def sides_of(scene: Scene, tiles: list, token: str, cog: Path, ours_port: int, proxy_port: int,
             titiler_port: int) -> dict:
    """For each server, the URLs of the tiles and the request headers."""
    bands = "".join(f"&bidx={b}" for b in scene.rgb_bands)
    return {
        "ours": ([f"http://127.0.0.1:{ours_port}/api/scenes/{scene.pk}/tiles/{t.z}/{t.x}/{t.y}.png" for t in tiles],
                 {"Authorization": f"Token {token}"}),
        "proxy": ([f"http://127.0.0.1:{proxy_port}/api/scenes/{scene.pk}/tiles/{t.z}/{t.x}/{t.y}.png" for t in tiles],
                  {"Authorization": f"Token {token}"}),
        "titiler": ([f"http://127.0.0.1:{titiler_port}/cog/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"
                     f"?url={cog}{bands}&resampling=bilinear" for t in tiles], {}),
    }


def measure(sides: dict, servers: dict, args) -> dict:
    """Interleaved rounds: per server, latencies, render durations, wall time, tiles and server CPU seconds."""
    # Same picture from both (sanity check), then warm both: every tile once, so the COG is in cache.
    print(compare_pictures({name: sides[name] for name in ("ours", "titiler")}, min(10, len(sides["ours"][0]))))
    for urls, headers in sides.values():
        run_load(urls, args.clients, headers)
    results = {name: ([], [], 0.0, 0, 0.0) for name in sides}
    for _ in range(args.rounds):
        for name, (urls, headers) in sides.items():
            # Through the proxy, gunicorn's CPU counts as well as nginx's.
            pids = [servers[name].pid] + ([servers["ours"].pid] if name == "proxy" else [])
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            lat, renders, wall = run_load(urls, args.clients, headers)
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
            prev = results[name]
            results[name] = (prev[0] + lat, prev[1] + renders, prev[2] + wall, prev[3] + len(urls), prev[4] + cpu)
    return results


def report(results: dict) -> None:
    """The table and the ratios."""
    print(f"\n{'server':<10}{'tiles':>8}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}{'tiles/s':>10}{'cpu ms/tile':>13}")
    rows = {}
    for name, (lat, _, wall, n, cpu) in results.items():
        rows[name] = (pct(lat, 50), pct(lat, 95), statistics.mean(lat) * 1000, n / wall, cpu / n * 1000)
        print(f"{name:<10}{n:>8}" + "".join(f"{v:>10.1f}" for v in rows[name][:4]) + f"{rows[name][4]:>13.1f}")
    if renders := results["ours"][1] + results["proxy"][1]:
        print(f"ours, rendering alone (Server-Timing): p50 {np.percentile(renders, 50):.1f} ms, "
              f"p95 {np.percentile(renders, 95):.1f} ms")
    ours, ref = rows["ours"], rows["titiler"]
    print(f"\nratios (ours / titiler): p50 {ours[0] / ref[0]:.2f}x, p95 {ours[1] / ref[1]:.2f}x, "
          f"throughput {ours[3] / ref[3]:.2f}x (above 1 = ours serves more tiles per second), "
          f"CPU per tile {ours[4] / ref[4]:.2f}x (below 1 = ours needs less)")
    proxied = rows["proxy"]
    print(f"ratios (through nginx / gunicorn directly): p50 {proxied[0] / ours[0]:.2f}x, "
          f"p95 {proxied[1] / ours[1]:.2f}x, "
          f"throughput {proxied[3] / ours[3]:.2f}x (1 or above = the proxy costs nothing), "
          f"CPU per tile {proxied[4] / ours[4]:.2f}x (nginx's included)")


if __name__ == "__main__":
    if shutil.which("redis-cli") is None:
        sys.exit("Redis is needed: run scripts/setup.sh first")
    main()
