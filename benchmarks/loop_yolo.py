#!/usr/bin/env python
"""Detector-loop benchmark (issue 12 §6), the YOLO part: tiled YOLO inference over a large scene and the cost of
verifying its boxes on the cached grid against a fresh backbone pass per box.

1. Tiled detection: a synthetic RGB COG (--side px square, tiled JPEG, written window by window) read through the
   product's rasterio reader, `detect_tiled` + `ultralytics_predictor` over a random-weight YOLOv8n
   (`yolov8n.yaml`, no download): tiles/s, total time, peak RSS, seam NMS time.
2. Seam NMS on a realistic load: the same tiling with a predictor that returns planted boxes (--seam-boxes objects,
   every tile reporting the ones it sees, cut at its edges), since a random YOLO finds few or no boxes.
3. Verification per box: `box_vectors` + `verify_boxes` on a cached float16 grid of the scene's size, against a
   fresh pass of a random-weight DINOv2-small (ViT-S/14, loaded through Embedder.load) per box on a 224 px crop.

Figures, never pass/fail. Django-free (the inference package only). `run(args)` returns the lines it would print
(progress goes to stderr), so benchmarks/loop.py can print them beside its own.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

# Before transformers is imported: never reach for the hub, every model here is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before ultralytics: its import sets OMP_NUM_THREADS=1 for a torch not yet loaded)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_tasks.inference.box_verification import box_vectors, verify_boxes  # noqa: E402
from gpu_tasks.inference.grid import GridMeta, GridStore, open_grid  # noqa: E402
from gpu_tasks.inference.prototypes import ClassPrototypes, mean_direction  # noqa: E402
from gpu_tasks.inference.scene_embedding import rasterio_rgb_reader  # noqa: E402
from gpu_tasks.inference.tiled_detection import detect_tiled, tile_windows, ultralytics_predictor  # noqa: E402

PATCH = 14
FULL_SIDE = 10_000  # the scene: figures at a smaller --side are extrapolated to it
# dinov2-small's architecture (ViT-S/14), as benchmarks/search.py builds it.
VIT_S = {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4,
         "patch_size": 14, "image_size": 518}
MB = 2**20


def add_arguments(parser: argparse.ArgumentParser, standalone: bool = False) -> None:
    """This benchmark's options, all --yolo-* (benchmarks/loop.py has a --side of its own); run alone, the short
    names (--side, --skip, ...) work too. Values land in args.yolo_*."""
    g = parser.add_argument_group("YOLO part (loop_yolo.py)")

    def opt(name: str, **kwargs) -> None:
        names = [f"--yolo-{name}"] + ([f"--{name}"] if standalone else [])
        g.add_argument(*names, dest=f"yolo_{name.replace('-', '_')}", **kwargs)

    opt("side", type=int, default=FULL_SIDE, help="scene side in px (10000: the issue's scene)")
    opt("tile", type=int, default=640, help="YOLO input tile px")
    opt("overlap", type=int, default=128, help="tile overlap in native px")
    opt("batch", type=int, default=8, help="tiles per predict call")
    opt("conf", type=float, default=0.25, help="YOLO confidence threshold")
    opt("threads", type=int, default=0, help="torch threads for YOLO (0: as ultralytics sets them on CPU, cores - 1)")
    opt("seam-boxes", type=int, default=20_000, help="planted objects for the seam NMS load")
    opt("seam-classes", type=int, default=8, help="classes of the planted objects (seam NMS runs per class)")
    opt("verify-boxes", type=int, default=1000, help="boxes verified on the cached grid")
    opt("fresh-boxes", type=int, default=16, help="boxes given a fresh backbone pass (timed, scaled)")
    opt("grid-dim", type=int, default=VIT_S["hidden_size"],
        help="cached grid's token dim (384: DINOv2-S, the backbone of the fresh pass; 768: ViT-B)")
    opt("skip", default="", help="comma-separated parts to skip: detect, seam, verify")


def progress(msg: str) -> None:
    """Progress to stderr (the figures are the returned lines)."""
    print(msg, file=sys.stderr, flush=True)


class PeakRSS:
    """Peak resident set size of this process while a block runs, sampled every 20 ms (VmRSS from /proc)."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


def write_scene(path: Path, side: int, block: int = 2048, seed: int = 0) -> None:
    """side x side uint8 RGB tiled JPEG GeoTIFF, written window by window (memory bounded by one window)."""
    import cv2
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    low = rng.uniform(60, 180, (block // 64 + 2, block // 64 + 2, 3)).astype(np.float32)
    texture = cv2.resize(low, (block, block), interpolation=cv2.INTER_CUBIC)
    texture = np.clip(texture + rng.normal(0, 10, texture.shape), 0, 255).astype(np.uint8)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32643", "transform": from_origin(500000, 3100000, 0.3, 0.3), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "jpeg", "jpeg_quality": 90,
               "photometric": "ycbcr", "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, side, block):
            for c0 in range(0, side, block):
                h, w = min(block, side - r0), min(block, side - c0)
                # A shifted copy of one texture per window with a few bright squares: varied at no cost.
                win = np.roll(texture, (int(rng.integers(block)), int(rng.integers(block))), axis=(0, 1))[:h, :w].copy()
                for _ in range(30):
                    s = int(rng.integers(12, 64))
                    if h > s and w > s:
                        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
                        win[y:y + s, x:x + s] = rng.integers(0, 256, 3)
                dst.write(win.transpose(2, 0, 1), window=((r0, r0 + h), (c0, c0 + w)))


def n_tiles(side: int, tile: int, overlap: int) -> int:
    """Tiles detect_tiled reads for a side x side scene at scale 1."""
    return len(tile_windows(side, side, tile, min(overlap, tile - 1)))


# ------------------------------------------------------------------------------------ 1. tiled YOLO detection


def part_detect(args: argparse.Namespace, cog: Path, lines: list[str]) -> None:
    """Random-weight YOLOv8n over the COG through detect_tiled."""
    from gpu_tasks.inference.yolo_training import ensure_local_font, load_model

    ensure_local_font()
    from ultralytics.utils import LOGGER

    # ultralytics 8.4 warns on every predict call that `half` (which ultralytics_predictor passes) is deprecated.
    LOGGER.setLevel(logging.ERROR)
    torch.manual_seed(0)
    threads_before = torch.get_num_threads()
    model = load_model("yolov8n.yaml")
    predict = ultralytics_predictor(model, imgsz=args.tile, conf=args.conf, device="cpu")
    t0 = time.perf_counter()
    predict([np.zeros((args.tile, args.tile, 3), np.uint8)])  # builds ultralytics' predictor (and sets threads)
    t_setup = time.perf_counter() - t0
    threads_ultra = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    timings: dict = {}
    n = n_tiles(args.side, args.tile, args.overlap)

    def say_progress(frac: float, msg: str) -> None:
        if round(frac * n) % max(1, n // 10) < args.batch:
            progress(f"  detect: {msg} ({time.perf_counter() - t0:.0f} s)")

    with rasterio_rgb_reader(cog, (1, 2, 3), [(0, 255)] * 3) as read, PeakRSS() as rss:
        t0 = time.perf_counter()
        boxes = detect_tiled(read_rgb=read, width=args.side, height=args.side, predict=predict, tile_px=args.tile,
                             overlap_px=args.overlap, batch=args.batch, timings=timings, progress=say_progress)
        total = time.perf_counter() - t0
    tiles = timings["tiles"]
    full = n_tiles(FULL_SIDE, args.tile, args.overlap)
    side = f"{args.side:,}"
    read_ms, predict_ms = timings["tiles_read"] / tiles * 1000, timings["tiles_predict"] / tiles * 1000
    lines.append(f"1. YOLOv8n (random weights) tiled over a {side} x {side} px COG: {args.tile} px tiles, overlap "
                 f"{args.overlap} px, batch {args.batch}, conf {args.conf}, torch threads {torch.get_num_threads()} "
                 f"(before ultralytics {threads_before}, it set {threads_ultra})")
    lines.append(f"   {tiles} tiles in {total:.1f} s: {tiles / total:.2f} tiles/s ({total / tiles * 1000:.0f} ms/tile: "
                 f"read {read_ms:.0f}, predict {predict_ms:.0f}); predictor set-up {t_setup:.1f} s; "
                 f"{len(boxes)} boxes kept")
    if args.side != FULL_SIDE:
        lines.append(f"   extrapolated to {FULL_SIDE:,} px ({full} tiles): {full / (tiles / total):.0f} s")
    grew = (rss.peak - rss.start) / MB
    lines.append(f"   peak RSS {rss.peak / MB:.0f} MB (at start {rss.start / MB:.0f} MB, +{grew:.0f}); the scene as "
                 f"RGB would be {args.side**2 * 3 / MB:.0f} MB")
    lines.append(f"   seam NMS on YOLO's own boxes: {timings['seam_nms'] * 1000:.1f} ms ({len(boxes)} boxes: "
                 "a random YOLO proposes next to nothing; part 2 is the realistic load)")


# ------------------------------------------------------------------------------------ 2. seam NMS, planted boxes


def planted_objects(side: int, n: int, classes: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) XYXY boxes of 12-48 px, one per cell of a jittered grid (no two overlap), and their classes."""
    rng = np.random.default_rng(seed)
    per_row = max(1, math.ceil(math.sqrt(n)))
    pitch = side / per_row
    idx = np.arange(n)
    size = rng.uniform(12, min(48, 0.8 * pitch), n)
    x0 = (idx % per_row) * pitch + rng.uniform(0, pitch - size)
    y0 = (idx // per_row) * pitch + rng.uniform(0, pitch - size)
    boxes = np.stack([x0, y0, x0 + size, y0 + size], axis=1)
    return boxes, rng.integers(0, classes, n)


def part_seam(args: argparse.Namespace, lines: list[str]) -> None:
    """detect_tiled's seam merge on planted boxes: every tile reports the objects it sees, cut at its edges."""
    objects, classes = planted_objects(args.side, args.seam_boxes, args.seam_classes)
    rng = np.random.default_rng(2)
    window, tile = args.tile, args.tile  # scale 1: tile px = native px
    blank = np.zeros((tile, tile, 3), np.uint8)
    pending: deque[tuple[int, int]] = deque()
    reported = {"boxes": 0, "cut": 0}

    def read(col: int, row: int, w: int, h: int, out_w: int, out_h: int) -> np.ndarray:
        pending.append((col, row))
        return blank

    def predict(tiles: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for _ in tiles:
            col, row = pending.popleft()
            seen = ((objects[:, 2] > col) & (objects[:, 0] < col + window)
                    & (objects[:, 3] > row) & (objects[:, 1] < row + window))
            local = np.clip(objects[seen] - [col, row, col, row], 0, tile)
            cut = (local != objects[seen] - [col, row, col, row]).any(axis=1)
            reported["boxes"] += int(seen.sum())
            reported["cut"] += int(cut.sum())
            out.append((local, rng.uniform(0.3, 0.95, int(seen.sum())), classes[seen]))
        return out

    timings: dict = {}
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        kept = detect_tiled(read_rgb=read, width=args.side, height=args.side, predict=predict, tile_px=tile,
                            overlap_px=args.overlap, batch=args.batch, timings=timings)
        total = time.perf_counter() - t0
    found = {tuple(np.round(b.box_px, 6)) for b in kept}
    once = sum(tuple(np.round(o, 6)) in found for o in objects)
    classes_txt = f"{args.seam_classes} class" + ("es" if args.seam_classes != 1 else "")
    lines.append(f"2. seam merge on planted boxes (a predictor returning {args.seam_boxes:,} objects of 12-48 px, "
                 f"{classes_txt}, as each of {timings['tiles']} tiles sees them)")
    nms = timings["seam_nms"]
    lines.append(f"   {reported['boxes']:,} boxes from the tiles ({reported['cut']:,} cut at a tile edge) -> "
                 f"{len(kept):,} kept, {once:,} of the {args.seam_boxes:,} objects found whole and once")
    lines.append(f"   seam NMS {nms * 1000:.0f} ms ({nms / max(1, reported['boxes']) * 1e6:.1f} us per tile box); "
                 f"whole detect_tiled {total:.1f} s; peak RSS +{(rss.peak - rss.start) / MB:.0f} MB"
                 + (" (memory part 1 freed is reused: `--yolo-skip detect,verify` measures this alone)"
                    if "detect" not in args.skip else ""))


# ------------------------------------------------------------------------------------ 3. verification per box


def cached_grid(directory: Path, side_cells: int, dim: int, seed: int = 3) -> tuple[GridMeta, np.memmap]:
    """A complete product grid of side_cells^2 cells: 12 cover directions plus noise, written in row blocks."""
    rng = np.random.default_rng(seed)
    cover = rng.standard_normal((12, dim)).astype(np.float32)
    meta = GridMeta(grid_h=side_cells, grid_w=side_cells, dim=dim, cell_px=float(PATCH), scale=1.0, tile_px=518,
                    margin_patches=4, scene_width_px=side_cells * PATCH, scene_height_px=side_cells * PATCH,
                    embedder={"model_id": "random/dinov2", "key": "bench"}, key="bench-verify")
    store = GridStore(directory)
    grid = store.create(meta)
    for r0 in range(0, side_cells, 32):
        r1 = min(side_cells, r0 + 32)
        block = cover[rng.integers(0, 12, (r1 - r0, side_cells))]
        block += rng.standard_normal(block.shape, dtype=np.float32)
        grid[r0:r1] = block.astype(np.float16)
    store.mark_complete(meta, grid)
    del grid
    return open_grid(directory)


def per_box_loop(tokens: np.ndarray, meta: GridMeta, boxes_px: np.ndarray) -> np.ndarray:
    """The per-box loop box_vectors replaces (visual_search._box_vectors as it was), for comparison."""
    cell = meta.cell_px
    centres_x = (np.arange(meta.grid_w) + 0.5) * cell
    centres_y = (np.arange(meta.grid_h) + 0.5) * cell
    out = np.empty((len(boxes_px), meta.dim), dtype=np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes_px):
        c0, c1 = np.searchsorted(centres_x, x0, "right"), np.searchsorted(centres_x, x1, "left")
        r0, r1 = np.searchsorted(centres_y, y0, "right"), np.searchsorted(centres_y, y1, "left")
        if c1 <= c0 or r1 <= r0:
            c0 = min(max(int(((x0 + x1) / 2) // cell), 0), meta.grid_w - 1)
            r0 = min(max(int(((y0 + y1) / 2) // cell), 0), meta.grid_h - 1)
            c1, r1 = c0 + 1, r0 + 1
        out[i] = mean_direction(np.asarray(tokens[r0:r1, c0:c1], dtype=np.float32).reshape(-1, meta.dim))
    return out


def best_of(fn, repeats: int) -> tuple[float, float]:
    """(first, fastest of the rest) seconds of fn(): on a shared machine the fastest is the cost, the rest waiting."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], min(times[1:] or times)


def part_verify(args: argparse.Namespace, cog: Path, tmp: Path, lines: list[str]) -> None:
    """Cached-grid verification vs a fresh backbone pass per box."""
    from transformers import Dinov2Config, Dinov2Model

    from gpu_tasks.inference.embedder import Embedder

    side_cells = math.ceil(args.side / PATCH)
    progress(f"  verify: writing a {side_cells} x {side_cells} x {args.grid_dim} float16 grid")
    t0 = time.perf_counter()
    meta, grid = cached_grid(tmp / "grid", side_cells, args.grid_dim)
    t_grid = time.perf_counter() - t0
    rng = np.random.default_rng(4)
    n, n_classes = args.verify_boxes, 8
    size = rng.uniform(12, 64, (n, 2))
    xy = rng.uniform(0, args.side - 64, (n, 2))
    boxes = np.concatenate([xy, xy + size], axis=1)
    proposed = rng.integers(0, n_classes, n)
    flat = np.asarray(grid[rng.integers(0, side_cells, 200), rng.integers(0, side_cells, 200)], dtype=np.float32)
    protos = [ClassPrototypes(c, flat[c * 16:(c + 1) * 16], flat[128 + c * 4:128 + (c + 1) * 4])
              for c in range(n_classes)]

    def cached() -> None:
        verify_boxes(box_vectors(grid, meta, boxes), proposed, protos)

    first, cached_s = best_of(cached, 6)
    _, vec_s = best_of(lambda: box_vectors(grid, meta, boxes), 6)
    vectors = box_vectors(grid, meta, boxes)
    _, ver_s = best_of(lambda: verify_boxes(vectors, proposed, protos), 6)
    _, loop_s = best_of(lambda: per_box_loop(grid, meta, boxes), 3)

    # The fresh path: a 224 px crop of each box through a random-weight DINOv2-small, the production loader.
    torch.set_num_threads(os.cpu_count() or 1)  # ultralytics may have lowered it; the backbone gets every core
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(**VIT_S)).save_pretrained(tmp / "dinov2-small")
    embedder = Embedder.load(tmp / "dinov2-small", model_id="random/dinov2-small", device="cpu")
    m = min(args.fresh_boxes, n)
    # Prototypes in the backbone's own space (the grid's may be wider, --grid-dim): same counts, same scoring cost.
    dim = embedder.spec.hidden_size
    fresh_protos = [ClassPrototypes(c.class_id, rng.standard_normal((len(c.positives), dim), dtype=np.float32),
                                    rng.standard_normal((len(c.negatives), dim), dtype=np.float32)) for c in protos]
    crop = 224
    with rasterio_rgb_reader(cog, (1, 2, 3), [(0, 255)] * 3) as read:
        def crops(idx: range) -> np.ndarray:
            return np.stack([read(int(b[0]), int(b[1]), max(1, int(b[2] - b[0])), max(1, int(b[3] - b[1])), crop, crop)
                             for b in boxes[list(idx)]])

        embedder.embed_region(crops(range(1))[0])  # warm-up: first-call allocations
        t0 = time.perf_counter()
        single = [verify_boxes(embedder.embed_region(crops(range(i, i + 1))[0])[None], proposed[i:i + 1], fresh_protos)
                  for i in range(m)]
        fresh_s = (time.perf_counter() - t0) / m
        del single
        batch = min(16, m)
        t0 = time.perf_counter()
        tiles = crops(range(batch))
        t_read = time.perf_counter() - t0
        tokens = embedder.embed_tiles(tiles)
        vectors_fresh = np.stack([mean_direction(t.reshape(-1, tokens.shape[-1])) for t in tokens])
        verify_boxes(vectors_fresh, proposed[:batch], fresh_protos)
        batched_s = (time.perf_counter() - t0) / batch
    per_box = cached_s / n
    grid_mb = side_cells**2 * args.grid_dim * 2 / MB
    lines.append(f"3. verification of {n:,} boxes (12-64 px, 8 classes x 16 positives + 4 negatives) on a cached "
                 f"{side_cells} x {side_cells} x {args.grid_dim} float16 grid ({grid_mb:.0f} MB, written in "
                 f"{t_grid:.1f} s; in the page cache)")
    lines.append(f"   cached grid: {per_box * 1000:.4f} ms/box ({cached_s * 1000:.1f} ms for all, best of 5; first "
                 f"call {first * 1000:.1f}): box_vectors {vec_s * 1000:.1f} ms, verify_boxes {ver_s * 1000:.1f} ms; "
                 f"the per-box loop it replaces {loop_s * 1000:.1f} ms ({loop_s / vec_s:.1f}x box_vectors)")
    lines.append(f"   fresh DINOv2-S pass per box ({crop} px crop read from the COG + forward + pool + verify, "
                 f"{m} boxes, {torch.get_num_threads()} threads): {fresh_s * 1000:.1f} ms/box; batched {batch} "
                 f"crops at once: {batched_s * 1000:.1f} ms/box (read {t_read / batch * 1000:.1f})")
    lines.append(f"   fresh / cached per box: {fresh_s / per_box:,.0f}x one at a time, {batched_s / per_box:,.0f}x "
                 f"batched; {n:,} boxes fresh would take {fresh_s * n:.0f} s against {cached_s:.2f} s")


def run(args: argparse.Namespace) -> list[str]:
    """Run the parts not skipped; the lines of figures (progress goes to stderr)."""
    args = argparse.Namespace(**{k[len("yolo_"):]: v for k, v in vars(args).items() if k.startswith("yolo_")})
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    lines = [f"YOLO part of the detector-loop benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, "
             f"load average {os.getloadavg()[0]:.2f}"]
    with tempfile.TemporaryDirectory(prefix="loop-yolo-") as tmp_name:
        tmp = Path(tmp_name)
        cog = tmp / "scene.tif"
        if not {"detect", "verify"} <= skip:
            progress(f"  writing a {args.side:,} x {args.side:,} px COG")
            t0 = time.perf_counter()
            write_scene(cog, args.side)
            lines.append(f"scene: {args.side:,} x {args.side:,} px RGB tiled JPEG ({cog.stat().st_size / MB:.0f} MB "
                         f"on disk, written in {time.perf_counter() - t0:.1f} s)")
        if "detect" not in skip:
            part_detect(args, cog, lines)
        if "seam" not in skip:
            part_seam(args, lines)
        if "verify" not in skip:
            part_verify(args, cog, tmp, lines)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, standalone=True)
    for line in run(parser.parse_args()):
        print(line, flush=True)


if __name__ == "__main__":
    main()
