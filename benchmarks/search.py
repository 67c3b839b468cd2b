#!/usr/bin/env python
"""Visual search benchmark: dense product path vs the research scripts' window scan, plus throughput and memory.

Prints figures and ratios measured side by side in one run, each next to its target; never passes or fails.
Models are full-size architectures with random weights (cost does not depend on the weights), built locally
and loaded through the same code path as production (loading.resolve_hf_source + Embedder.load).

Sections: 1 dense search vs window scan, 2 backbone GFLOP/s vs torch.mm, 3 end-to-end vs backbone-only
per tile, 4 re-query on a cached 10k x 10k grid, 5 SAM2 batched vs single-box prompts, 6 peak RSS while
embedding a 20k x 20k scene (in a subprocess).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Before transformers is imported: never reach for the hub, every model here is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_tasks.inference.embedder import Embedder  # noqa: E402
from gpu_tasks.inference.grid import GridMeta, GridStore, open_grid  # noqa: E402
from gpu_tasks.inference.loading import resolve_hf_source  # noqa: E402
from gpu_tasks.inference.prototypes import ClassPrototypes, prototype_from_polygon  # noqa: E402
from gpu_tasks.inference.scene_embedding import embed_scene, rasterio_rgb_reader  # noqa: E402
from gpu_tasks.inference.search import SearchParams, find_candidates, score_grid  # noqa: E402
from gpu_tasks.inference.tiling import plan_tiles  # noqa: E402

TMP_ROOT = ROOT / "var" / "bench-tmp"
SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
# dinov2-small's architecture (ViT-S/14); Dinov2Config() defaults to ViT-B sizes, so every field is explicit.
VIT_S = {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4,
         "patch_size": 14, "image_size": 518}
# A tiny backbone for the 20k x 20k memory run: same product path, ~1/75 of ViT-S's FLOPs per tile.
VIT_TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 4,
            "patch_size": 14, "image_size": 518}
PREPROCESSING = {"rgb_bands": [1, 2, 3], "stretch": [[0.0, 255.0]] * 3, "dtype": "uint8"}

# The scripts' (auto_annotate_dino_nvtx_optimized.py) eight classes and the window sizes each one is scored on.
SCAN_CLASS_SIZES = {
    "STP": [16, 24], "Sheds": [32, 40], "Metro Shed": [48, 64], "Solar Panel": [48, 64],
    "Play Ground": [48, 64], "Pond-1": [24, 32, 40], "Pond-2": [24, 32, 40], "Brick Kiln": [32, 40, 48],
}
SCAN_BATCH = 512  # the scripts' batch_size in extract_dino_features_all
SCAN_INPUT_PX = 224
MB = 2**20


# ---------------------------------------------------------------------------------------------- helpers


def say(msg: str) -> None:
    """Print at once (progress of long sections must show up while they run)."""
    print(msg, flush=True)


def fmt_s(seconds: float) -> str:
    """Seconds, or h/min when long."""
    if seconds >= 3600:
        return f"{seconds:.0f} s ({seconds / 3600:.1f} h)"
    if seconds >= 120:
        return f"{seconds:.1f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.3f} s"


def load_avg() -> str:
    """1-min load average: other processes on this machine skew absolute numbers, less so the ratios."""
    return f"{os.getloadavg()[0]:.2f}"


def vit_flops(cfg: dict, img_px: int, prefix_tokens: int = 1) -> dict:
    """Analytic FLOPs (2 per multiply-add) of one ViT forward at img_px x img_px; see FLOP_FORMULA."""
    d, layers, p = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["patch_size"]
    m = cfg["mlp_ratio"] * d
    n_patch = (img_px // p) ** 2
    n = n_patch + prefix_tokens
    patch_embed = 2 * n_patch * (3 * p * p) * d
    linear = layers * (2 * n * d * 3 * d + 2 * n * d * d + 2 * 2 * n * d * m)
    attention = layers * (2 * 2 * n * n * d)
    return {"tokens": n, "patch_embed": patch_embed, "linear": linear, "attention": attention,
            "total": patch_embed + linear + attention}


FLOP_FORMULA = ("FLOPs = 2*Np*(3*p^2)*d  +  L*[2*N*d*3d (qkv) + 2*N*d*d (proj) + 2*2*N*d*m (mlp)"
                " + 2*2*N^2*d (QK^T, AV)],  N = Np + 1 CLS, m = 4d; norms/softmax/GELU/bias omitted (<1%)")


def build_dinov2(directory: Path, arch: dict) -> Path:
    """A random-weight Dinov2Model saved like a downloaded one (config.json + safetensors)."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(**arch))
    model.save_pretrained(directory)
    return directory


def load_embedder(model_dir: Path, name: str) -> Embedder:
    """Production loading path: resolve the local directory, then Embedder.load with product defaults."""
    source = resolve_hf_source(str(model_dir / name), model_dir)
    return Embedder.load(source, model_id=f"random/{name}", device="cpu")


CLASS_LOOKS = [  # (colour, shape) of the eight planted classes
    ((200, 60, 40), "ring"), ((40, 70, 190), "rect"), ((30, 30, 60), "stripes"), ((170, 170, 175), "rect"),
    ((120, 120, 130), "long"), ((60, 160, 60), "rect"), ((40, 100, 150), "disc"), ((20, 60, 110), "disc"),
]


def base_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 ground: smooth colour fields plus fine grain, like fields and roofs at 3 m."""
    low = rng.uniform(60, 180, (size // 64 + 2, size // 64 + 2, 3)).astype(np.float32)
    tex = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    tex += rng.normal(0, 10, (size, size, 3)).astype(np.float32)
    return np.clip(tex, 0, 255).astype(np.uint8)


def plant(img: np.ndarray, cls: int, x: int, y: int, s: int) -> tuple[int, int, int, int]:
    """Draw one object of class cls with side s at (x, y) in place; its xyxy box."""
    colour, shape = CLASS_LOOKS[cls]
    if shape == "ring":
        cv2.circle(img, (x + s // 2, y + s // 2), s // 2, colour, max(2, s // 6))
    elif shape == "disc":
        cv2.circle(img, (x + s // 2, y + s // 2), s // 2, colour, -1)
    elif shape == "stripes":
        for yy in range(y, y + s, 4):
            cv2.rectangle(img, (x, yy), (x + s - 1, yy + 1), colour, -1)
    elif shape == "long":
        cv2.rectangle(img, (x, y + s // 3), (x + s - 1, y + 2 * s // 3), colour, -1)
    else:
        cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), colour, -1)
    return x, y, x + s, y + s


def write_scene(path: Path, size: int, seed: int = 0, per_class: int = 5) -> list[tuple[int, tuple]]:
    """A size x size 3 m RGB GeoTIFF with planted objects (16-64 px); returns [(class, xyxy box)]."""
    rng = np.random.default_rng(seed)
    img = base_texture(size, rng)
    objects = []
    for cls in range(len(CLASS_LOOKS)):
        for _ in range(per_class):
            s = int(rng.integers(16, 65))
            x, y = (int(v) for v in rng.integers(0, size - s, 2))
            objects.append((cls, plant(img, cls, x, y, s)))
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32643", "transform": from_origin(500000, 3100000, 3.0, 3.0), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate", "photometric": "RGB"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(img.transpose(2, 0, 1))
    return objects


def box_ring(box: tuple) -> list:
    """Polygon [exterior] of an xyxy box (what prototype_from_polygon takes)."""
    x0, y0, x1, y1 = box
    return [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]


def embed_with_progress(label: str, **kwargs) -> GridMeta:
    """embed_scene with a progress line every ~10% of tiles."""
    last = [-1]

    def progress(frac: float, msg: str) -> None:
        step = int(frac * 10)
        if step != last[0]:
            last[0] = step
            say(f"    {label}: {msg}")

    return embed_scene(progress=progress, preprocessing=PREPROCESSING, **kwargs)


# ---------------------------------------------------------------- section 1: the scripts' window scan


def scan_windows(h: int, w: int) -> list[tuple[int, int, int]]:
    """All (x, y, size) windows of extract_dino_features_all: each size at stride = size (stride_frac 1.0)."""
    windows = []
    for ps in sorted({s for sizes in SCAN_CLASS_SIZES.values() for s in sizes}):
        for y in range(0, h - ps + 1, ps):
            for x in range(0, w - ps + 1, ps):
                windows.append((x, y, ps))
    return windows


class WindowScan:
    """The scripts' detection stage on CPU: crops -> Resize 224 -> DINOv2 CLS -> per-window, per-class loop."""

    def __init__(self, model: torch.nn.Module) -> None:
        import torchvision.transforms as T

        self.model = model
        # The scripts' dino_transform, verbatim (Resize on tensors is bilinear).
        self.transform = T.Compose([
            T.ConvertImageDtype(torch.float32),
            T.Resize((SCAN_INPUT_PX, SCAN_INPUT_PX)),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    @staticmethod
    def load_image(path: Path) -> np.ndarray:
        """The scripts' image load: per band, min-max stretch to uint8 (each band read three times, as they do)."""
        with rasterio.open(path) as src:
            return np.stack([(src.read(b).astype(np.float32) - src.read(b).min())
                             / (np.ptp(src.read(b)) + 1e-6) * 255 for b in (1, 2, 3)], -1).astype(np.uint8)

    @torch.inference_mode()
    def embed(self, crops: list[np.ndarray], batch_size: int = SCAN_BATCH) -> torch.Tensor:
        """extract_dino_embeddings_batch: stack, transform, forward, CLS token, L2-normalise."""
        feats = []
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(np.stack(crops[i : i + batch_size])).permute(0, 3, 1, 2)
            x = self.transform(x)
            cls_tok = self.model(pixel_values=x).last_hidden_state[:, 0, :]
            feats.append(torch.nn.functional.normalize(cls_tok, p=2, dim=1))
        return torch.cat(feats, dim=0)

    @staticmethod
    def similarity_cache(feats: torch.Tensor, prototypes: dict[str, list[torch.Tensor]]) -> list[dict]:
        """Stage B of detect_candidates_precomputed, verbatim: per window, per class, max cosine in Python."""
        sim_cache = []
        for feat_t in feats:
            win_sims = {}
            for cls in prototypes:
                proto_list = prototypes.get(cls, [])
                if proto_list:
                    P = torch.stack(proto_list)  # noqa: N806 - the scripts' name
                    sims = torch.matmul(P, feat_t) / (torch.norm(P, dim=1) * torch.norm(feat_t) + 1e-12)
                    win_sims[cls] = float(sims.max())
            sim_cache.append(win_sims)
        return sim_cache


def dense_search(ctx: dict, cog: Path, size: int, out_dir: Path, classes: list | None, objects: list) -> dict:
    """One whole dense search: embed_scene, then score_grid + find_candidates; times and counts."""
    timings: dict = {}
    t0 = time.perf_counter()
    with rasterio_rgb_reader(cog, (1, 2, 3), PREPROCESSING["stretch"]) as read_rgb:
        meta = embed_with_progress("dense", read_rgb=read_rgb, scene_w_px=size, scene_h_px=size,
                                   embedder=ctx["embedder"], out_dir=out_dir, timings=timings)
    t_embed = time.perf_counter() - t0
    _, tokens = open_grid(out_dir)
    if classes is None:
        # Prototypes (not timed, like the scripts' prototype files): two planted examples per class, mask-pooled.
        classes = []
        for cls in range(len(CLASS_LOOKS)):
            boxes = [b for c, b in objects if c == cls][:2]
            pos = np.stack([prototype_from_polygon(tokens, meta, box_ring(b)) for b in boxes])
            classes.append(ClassPrototypes(class_id=cls, positives=pos))
    params = SearchParams()
    t0 = time.perf_counter()
    best_class, best_score = score_grid(tokens, classes, params)
    cands = find_candidates(best_class, best_score, meta, params)
    t_search = time.perf_counter() - t0
    del tokens
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"embed": t_embed, "search": t_search, "total": t_embed + t_search, "timings": timings, "meta": meta,
            "classes": classes, "candidates": len(cands)}


def section_dense_vs_scan(ctx: dict, args: argparse.Namespace) -> None:
    """Section 1: whole dense search vs the window scan (sampled, extrapolated) on one synthetic scene."""
    size = args.scene_px
    tmp: Path = ctx["tmp"]
    embedder: Embedder = ctx["embedder"]
    cog = tmp / f"scene-{size}.tif"
    objects = write_scene(cog, size)
    say(f"  scene: {size} x {size} px GeoTIFF, {len(objects)} planted objects (8 classes, 16-64 px)")

    # Window scan set-up: the image, every window, a random sample, prototypes. Load and enumeration are
    # measured whole; embedding and scoring are measured on the sample and scaled by the window count.
    scan = WindowScan(embedder.model)
    t0 = time.perf_counter()
    img = WindowScan.load_image(cog)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    windows = scan_windows(*img.shape[:2])
    crops_all = [img[y : y + ps, x : x + ps, :] for x, y, ps in windows]  # views, as the scripts' lists
    t_collect = time.perf_counter() - t0
    del crops_all
    n_sample = min(args.scan_sample, len(windows))
    rng = np.random.default_rng(1)
    sample = sorted(rng.choice(len(windows), n_sample, replace=False).tolist())
    by_size: dict[int, list[np.ndarray]] = {}
    for i in sample:
        x, y, ps = windows[i]
        by_size.setdefault(ps, []).append(img[y : y + ps, x : x + ps, :])
    # Scan prototypes: CLS of each planted example crop, then "augmented" copies (the scripts keep 8 per
    # polygon) as small perturbations: 2 examples x 6 = 12 per class, 96 in all. Not timed.
    protos: dict[str, list[torch.Tensor]] = {}
    for cls, name in enumerate(SCAN_CLASS_SIZES):
        boxes = [b for c, b in objects if c == cls][:2]
        base = torch.cat([scan.embed([np.ascontiguousarray(img[y0:y1, x0:x1])]) for x0, y0, x1, y1 in boxes])
        g = torch.Generator().manual_seed(cls)
        protos[name] = [torch.nn.functional.normalize(f + 0.02 * torch.randn(f.shape, generator=g), dim=0)
                        for f in base for _ in range(6)]
    scan.embed([img[:16, :16]] * 2)  # warm-up at this input size

    # Alternating rounds, each side best-of: load from other processes hits both alike.
    dense_runs, scan_runs = [], []
    classes = None
    for r in range(args.rounds):
        say(f"  round {r + 1}/{args.rounds}, dense: embed_scene (product defaults: 518 px tiles, 4-patch margins)"
            " + score_grid + find_candidates")
        run = dense_search(ctx, cog, size, tmp / f"grid-s1-{r}", classes, objects)
        classes = run["classes"]
        dense_runs.append(run)
        say(f"  round {r + 1}/{args.rounds}, window scan: {n_sample} sampled windows"
            f" ({', '.join(f'{k} px: {len(v)}' for k, v in sorted(by_size.items()))}), per size in batches of"
            f" <= {SCAN_BATCH} as the scripts do, Resize {SCAN_INPUT_PX}, CLS, per-class Python loop ...")
        t0 = time.perf_counter()
        feats = torch.cat([scan.embed(v) for v in by_size.values()])
        t_embed_sample = time.perf_counter() - t0
        t0 = time.perf_counter()
        WindowScan.similarity_cache(feats, protos)
        t_sim_sample = time.perf_counter() - t0
        scan_runs.append((t_embed_sample, t_sim_sample))
        per_window = (t_embed_sample + t_sim_sample) / n_sample
        scan_total = t_load + t_collect + per_window * len(windows)
        say(f"    dense {fmt_s(run['total'])}, window scan {per_window * 1000:.1f} ms/window -> {fmt_s(scan_total)},"
            f" ratio {scan_total / run['total']:.0f}x, load average {load_avg()}")

    best = min(dense_runs, key=lambda x: x["total"])
    t_embed_sample, t_sim_sample = min(scan_runs, key=sum)
    per_window = (t_embed_sample + t_sim_sample) / n_sample
    scan_total = t_load + t_collect + per_window * len(windows)
    timings, meta = best["timings"], best["meta"]
    n_tiles = int(timings["tiles"])
    flops_win = vit_flops(VIT_S, SCAN_INPUT_PX)["total"]
    flops_tile = vit_flops(VIT_S, 518)["total"]
    flop_ratio = len(windows) * flops_win / (n_tiles * flops_tile)
    counts = {ps: sum(1 for w in windows if w[2] == ps) for ps in sorted({w[2] for w in windows})}
    say(f"  results (best of {args.rounds} for each side):")
    say(f"    dense: {n_tiles} tiles of 518 px, grid {meta.grid_h} x {meta.grid_w} x {meta.dim}")
    say(f"      embed_scene {fmt_s(best['embed'])} (read {timings.get('read', 0):.1f} s, forward"
        f" {timings.get('forward', 0):.1f} s, write {timings.get('write', 0):.2f} s), score_grid + find_candidates"
        f" {best['search']:.3f} s ({best['candidates']} candidates)")
    say(f"      dense total wall clock: {fmt_s(best['total'])}")
    say(f"    window scan: {len(windows)} windows in total ({', '.join(f'{k} px: {v}' for k, v in counts.items())})")
    say(f"      sampled {n_sample} at random: embed {t_embed_sample:.2f} s"
        f" ({t_embed_sample / n_sample * 1000:.1f} ms/window), similarity loop {t_sim_sample:.3f} s"
        f" ({t_sim_sample / n_sample * 1000:.2f} ms/window, {len(protos)} classes x 12 prototypes)")
    say(f"      measured per-window time {per_window * 1000:.1f} ms; image load {t_load:.2f} s and window"
        f" enumeration {t_collect:.2f} s measured whole; candidate selection loop not counted (favours the scan)")
    say(f"      extrapolated total wall clock: {fmt_s(scan_total)}")
    say(f"    wall-clock ratio scan / dense: {scan_total / best['total']:.0f}x   (target >= 100x)")
    say(f"    FLOP ratio: {len(windows)} windows x {flops_win / 1e9:.2f} GFLOP (ViT-S/14 at 224 px, 257 tokens)"
        f" / {n_tiles} tiles x {flops_tile / 1e9:.1f} GFLOP (518 px, 1370 tokens) = {flop_ratio:.0f}x")
    ctx["results"]["1"] = {"ratio": scan_total / best["total"], "flop_ratio": flop_ratio}


# --------------------------------------------------------------- section 2: backbone GFLOP/s vs torch.mm


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def mm_gflops(n: int, reps: int) -> list[tuple[float, float]]:
    """(wall, per-CPU-second) GFLOP/s of reps fp32 n x n @ n x n products, after one warm call."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    rates = []
    for _ in range(reps):
        c0, t0 = cpu_seconds(), time.perf_counter()
        torch.mm(a, b, out=out)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        rates.append((2 * n**3 / wall / 1e9, 2 * n**3 / max(cpu, 1e-9) / 1e9))
    return rates


def tiles_from_scene(n: int, px: int = 518, seed: int = 2) -> np.ndarray:
    """(n, px, px, 3) uint8 textured tiles with objects (content does not change the cost; realism is free)."""
    rng = np.random.default_rng(seed)
    tex = base_texture(px * 2, rng)
    out = np.empty((n, px, px, 3), dtype=np.uint8)
    for i in range(n):
        y, x = (int(v) for v in rng.integers(0, px, 2))
        out[i] = tex[y : y + px, x : x + px]
        for _ in range(4):
            plant(out[i], int(rng.integers(0, 8)), *(int(v) for v in rng.integers(0, px - 64, 2)), 32)
    return out


def section_backbone(ctx: dict, args: argparse.Namespace) -> None:
    """Section 2: embed_tiles GFLOP/s on 518 px tiles as a share of plain fp32 torch.mm on this CPU."""
    embedder: Embedder = ctx["embedder"]
    n = args.backbone_tiles
    tiles = tiles_from_scene(n)
    flops = vit_flops(VIT_S, 518)
    params = sum(p.numel() for p in embedder.model.parameters())
    say(f"  {FLOP_FORMULA}")
    say(f"  ViT-S/14 at 518 px: N = {flops['tokens']}, patch embed {flops['patch_embed'] / 1e9:.2f} + linear"
        f" {flops['linear'] / 1e9:.1f} + attention {flops['attention'] / 1e9:.1f} = {flops['total'] / 1e9:.1f} GFLOP"
        f" per tile (check: 2 x {params / 1e6:.1f} M params x N = {2 * params * flops['tokens'] / 1e9:.1f} GFLOP,"
        " the non-attention part)")
    embedder.embed_tiles(tiles[: embedder.batch_size])  # warm-up batch
    # Rounds alternate the two so that load from other processes hits both alike; best-of is the least disturbed.
    # Rates per CPU-second (FLOPs / process CPU time, both sides on the same threads) depend less on that load.
    mm_rates: list[tuple[float, float]] = []
    tile_rates: list[tuple[float, float]] = []
    for r in range(args.rounds):
        mm_rates += mm_gflops(2048, 3)
        c0, t0 = cpu_seconds(), time.perf_counter()
        embedder.embed_tiles(tiles)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        tile_rates.append((n * flops["total"] / wall / 1e9, n * flops["total"] / cpu / 1e9))
        say(f"    round {r + 1}/{args.rounds}: torch.mm {statistics.median(x[0] for x in mm_rates[-3:]):.1f} GFLOP/s,"
            f" embed_tiles ({n} tiles, batches of {embedder.batch_size}) {tile_rates[-1][0]:.1f} GFLOP/s,"
            f" load average {load_avg()}")
    mm_best, tile_best = max(x[0] for x in mm_rates), max(x[0] for x in tile_rates)
    mm_med, tile_med = statistics.median(x[0] for x in mm_rates), statistics.median(x[0] for x in tile_rates)
    mm_cpu, tile_cpu = statistics.median(x[1] for x in mm_rates), statistics.median(x[1] for x in tile_rates)
    say("  results:")
    say(f"    torch.mm fp32 2048 x 2048 @ 2048 x 2048: best {mm_best:.1f}, median {mm_med:.1f} GFLOP/s"
        f" ({len(mm_rates)} products; torch threads {torch.get_num_threads()}); {mm_cpu:.1f} GFLOP per CPU-second")
    say(f"    embed_tiles, 518 px tiles, batch {embedder.batch_size} (product CPU default): best {tile_best:.1f}"
        f" GFLOP/s ({flops['total'] / 1e9 / tile_best:.2f} s/tile), median {tile_med:.1f} GFLOP/s;"
        f" {tile_cpu:.1f} GFLOP per CPU-second")
    say(f"    share of torch.mm: {tile_best / mm_best * 100:.0f}% best vs best, {tile_med / mm_med * 100:.0f}% median"
        f" vs median, {tile_cpu / mm_cpu * 100:.0f}% per CPU-second   (target >= 50%)")
    ctx["results"]["2"] = {"share": tile_best / mm_best}


# ------------------------------------------------------------ section 3: end-to-end vs backbone per tile


def section_end_to_end(ctx: dict, args: argparse.Namespace) -> None:
    """Section 3: embed_scene per tile (read + preprocess + forward + write) vs embed_tiles on preloaded tiles."""
    embedder: Embedder = ctx["embedder"]
    tmp: Path = ctx["tmp"]
    size = args.e2e_px
    cog = tmp / f"scene-e2e-{size}.tif"
    write_scene(cog, size, seed=3)
    plans = plan_tiles(size, size, 14, 1.0, 518, 4)
    with rasterio_rgb_reader(cog, (1, 2, 3), PREPROCESSING["stretch"]) as read_rgb:
        tiles = np.stack([read_rgb(p.col_off_px, p.row_off_px, p.width_px, p.height_px, p.out_w_px, p.out_h_px)
                          for p in plans])
    n = len(plans)
    embedder.embed_tiles(tiles[: embedder.batch_size])  # warm, so neither side pays first-call costs
    e2e_runs: list[float] = []
    backbone_runs: list[float] = []
    last: dict = {}
    # Alternating rounds, each side best-of: other processes' load hits both alike.
    for r in range(args.rounds):
        timings: dict = {}
        say(f"  round {r + 1}/{args.rounds}: embed_scene over a {size} x {size} px GeoTIFF ({n} tiles) ...")
        with rasterio_rgb_reader(cog, (1, 2, 3), PREPROCESSING["stretch"]) as read_rgb:
            embed_with_progress("e2e", read_rgb=read_rgb, scene_w_px=size, scene_h_px=size, embedder=embedder,
                                out_dir=tmp / f"grid-s3-{r}", timings=timings)
        shutil.rmtree(tmp / f"grid-s3-{r}", ignore_errors=True)
        e2e_runs.append(timings["total"] / n)
        if e2e_runs[-1] == min(e2e_runs):
            last = timings
        say(f"  round {r + 1}/{args.rounds}: embed_tiles on the same {n} tiles preloaded, batches of"
            f" {embedder.batch_size} ...")
        t0 = time.perf_counter()
        embedder.embed_tiles(tiles)
        backbone_runs.append((time.perf_counter() - t0) / n)
        say(f"    end-to-end {e2e_runs[-1]:.3f} s/tile, backbone only {backbone_runs[-1]:.3f} s/tile, ratio"
            f" {e2e_runs[-1] / backbone_runs[-1]:.3f}x, load average {load_avg()}")
    e2e, backbone = min(e2e_runs), min(backbone_runs)
    say("  results:")
    say(f"    end-to-end (embed_scene): {e2e:.3f} s per tile (best of {len(e2e_runs)}; {n} tiles of 518 px)."
        f" In that run: reader thread read {last.get('read', 0) / n * 1000:.0f} ms/tile (overlapped), forward"
        f" waited {last.get('read_wait', 0) / n * 1000:.0f} ms/tile for it; stack"
        f" {last.get('preprocess', 0) / n * 1000:.1f} ms/tile; forward {last.get('forward', 0) / n:.3f} s/tile;"
        f" write {last.get('write', 0) / n * 1000:.1f} ms/tile")
    say(f"    backbone only (embed_tiles on preloaded tiles): {backbone:.3f} s per tile (best of {len(backbone_runs)})")
    say(f"    ratio end-to-end / backbone: {e2e / backbone:.3f}x   (target <= 1.25x)")
    ctx["results"]["3"] = {"ratio": e2e / backbone}


# ------------------------------------------------------------------ section 4: re-query on a cached grid


def write_cached_grid(directory: Path, h: int, w: int, d: int, seed: int = 4) -> tuple[GridMeta, np.ndarray]:
    """A complete product grid of h x w cells with object-like structure; returns meta and cluster centres.

    Cells belong to one of 16 clusters (4 of them object classes, as 5x5-cell blobs on ~2% of the scene each,
    the rest background); a token is its centre plus noise (cos ~0.7 to it), so a query finds many objects
    and find_candidates has real components and NMS to do. Written in row chunks to bound memory.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((16, d)).astype(np.float32)
    low = rng.integers(4, 16, (-(-h // 5), -(-w // 5)))
    objects = rng.random(low.shape) < 0.08
    low[objects] = rng.integers(0, 4, int(objects.sum()))
    labels = np.repeat(np.repeat(low, 5, axis=0), 5, axis=1)[:h, :w]
    meta = GridMeta(grid_h=h, grid_w=w, dim=d, cell_px=14.0, scale=1.0, tile_px=518, margin_patches=4,
                    scene_width_px=w * 14, scene_height_px=h * 14,
                    embedder={"model_id": "random/dinov2-small", "key": "bench"}, preprocessing=PREPROCESSING,
                    key="bench-requery")
    store = GridStore(directory)
    grid = store.create(meta)
    for r0 in range(0, h, 64):
        r1 = min(h, r0 + 64)
        chunk = centres[labels[r0:r1]] + rng.standard_normal((r1 - r0, w, d), dtype=np.float32)
        grid[r0:r1] = chunk.astype(np.float16)
    store.mark_complete(meta, grid)
    del grid
    return meta, centres


def section_requery(ctx: dict, args: argparse.Namespace) -> None:
    """Section 4: score_grid + find_candidates on a cached 715 x 715 x 384 float16 grid (10k x 10k scene)."""
    tmp: Path = ctx["tmp"]
    h = w = 715
    d = 384
    say(f"  writing a {h} x {w} x {d} float16 grid ({h * w * d * 2 / MB:.0f} MB) in row chunks ...")
    _, centres = write_cached_grid(tmp / "grid-s4", h, w, d)
    meta, tokens = open_grid(tmp / "grid-s4")
    rng = np.random.default_rng(5)

    def near(c: int, k: int) -> np.ndarray:
        return centres[c] + 0.3 * rng.standard_normal((k, d)).astype(np.float32)

    # 3 classes x 5 positives, each with 3 negatives taken from a look-alike (another object cluster).
    classes = [ClassPrototypes(class_id=c, positives=near(c, 5), negatives=near((c + 1) % 4, 3)) for c in range(3)]
    # As the product does: the typical object size per class from the examples (the planted 5 x 5-cell objects),
    # so that components of touching objects are split.
    params = SearchParams(object_cells={c: 25.0 for c in range(3)})
    runs = []
    for i in range(1 + args.requery_runs):
        timings: dict = {}
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        best_class, best_score = score_grid(tokens, classes, params, timings=timings)
        cands = find_candidates(best_class, best_score, meta, params, timings=timings)
        dt = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
        if i:
            runs.append((dt, timings))
        # CPU seconds far above wall x 1 thread mean threads spinning at barriers while another process runs.
        say(f"    {'warm run' if i == 0 else f'run {i}'}: {dt:.3f} s (score {timings.get('score', 0):.3f} s,"
            f" candidates {timings.get('candidates', 0):.3f} s; {cpu:.2f} CPU s), {len(cands)} candidates,"
            f" load average {load_avg()}")
    med = statistics.median(r[0] for r in runs)
    say("  results:")
    say(f"    re-query, 3 classes x 5 positives + 3 negatives each, {h * w} cells: median of {len(runs)} runs"
        f" {med:.3f} s (score_grid {statistics.median(r[1].get('score', 0) for r in runs):.3f} s, find_candidates"
        f" {statistics.median(r[1].get('candidates', 0) for r in runs):.3f} s); best {min(r[0] for r in runs):.3f} s"
        "   (target <= 0.5 s, on the median)")
    ctx["results"]["4"] = {"median_s": med}
    split_cost()


def split_cost() -> None:
    """What splitting touching objects adds to find_candidates: 400 touching pairs of score bumps on the grid."""
    h = w = 715
    yy, xx = np.mgrid[:h, :w]
    score = np.full((h, w), 0.3, dtype=np.float32)
    for k in range(400):  # a 20 x 20 lattice of pairs, 7 cells apart: one component each
        cy, cx = 17 + 35 * (k // 20), 10 + 35 * (k % 20)
        for dx in (0, 7):
            score = np.maximum(score, 0.3 + 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx - dx) ** 2) / 12.5))
    score = (score - np.random.default_rng(8).uniform(0, 0.03, score.shape)).astype(np.float32)
    best_class = np.where(score > 0.5, 0, -1).astype(np.int16)
    meta = GridMeta(grid_h=h, grid_w=w, dim=1, cell_px=14.0, scale=1.0, tile_px=518, margin_patches=4,
                    scene_width_px=w * 14, scene_height_px=h * 14, embedder={}, preprocessing={}, key="split")
    timed = {}
    variants = (("whole", SearchParams(split_prominence=None)), ("split", SearchParams(object_cells={0: 25.0})))
    for name, params in variants:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            n = len(find_candidates(best_class, score, meta, params))
            runs.append(time.perf_counter() - t0)
        timed[name] = (min(runs), n)
    say(f"    touching objects: 400 pairs of score bumps, find_candidates {timed['whole'][0]:.3f} s unsplit"
        f" ({timed['whole'][1]} candidates) vs {timed['split'][0]:.3f} s split at the saddles"
        f" ({timed['split'][1]} candidates): +{(timed['split'][0] - timed['whole'][0]) / 400 * 1000:.2f} ms per"
        " split component")


# ------------------------------------------------------------------------- section 5: SAM2 prompting


def section_sam2(ctx: dict, args: argparse.Namespace) -> None:
    """Section 5: 32 boxes in one predict call vs 32 single-box calls on one 1024 px image embedding."""
    refiner_py = ROOT / "gpu_tasks" / "inference" / "refiner.py"
    deadline = time.monotonic() + args.refiner_wait
    while not refiner_py.exists() and time.monotonic() < deadline:
        say("  waiting for gpu_tasks/inference/refiner.py ...")
        time.sleep(30)
    if not refiner_py.exists():
        say("  skipped: gpu_tasks/inference/refiner.py does not exist")
        return
    from gpu_tasks.inference.refiner import Refiner

    refiner = Refiner.load(SAM2_CONFIG, None, device="cpu", allow_random_weights=True)
    rng = np.random.default_rng(6)
    chip = base_texture(1024, rng)
    boxes = []
    for _ in range(args.sam_boxes):
        s = int(rng.integers(16, 129))
        x, y = (int(v) for v in rng.integers(0, 1024 - s, 2))
        boxes.append(plant(chip, int(rng.integers(0, 8)), x, y, s))
    boxes_xyxy = np.asarray(boxes, dtype=np.float32)
    say("  set_image on a 1024 x 1024 chip (SAM2.1 hiera-tiny, random weights) ...")
    t0 = time.perf_counter()
    refiner.set_image(chip)
    t_set = time.perf_counter() - t0
    n = len(boxes_xyxy)
    # The windows refine_boxes passes: box + 25% of its size + 16 px (it discards mask pixels outside them).
    size = boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]
    slack = np.concatenate([size, size], axis=1) * 0.25 + 16
    keep = np.clip(boxes_xyxy + np.concatenate([-slack[:, :2], slack[:, 2:]], axis=1), 0, 1024)
    stock = refiner.predictor  # SAM2ImagePredictor, same image embedding

    def stock_singles() -> None:
        for i in range(n):
            stock.predict(box=boxes_xyxy[i], multimask_output=True)

    def own_singles() -> None:
        for i in range(n):
            refiner.predict(boxes_xyxy[i : i + 1])

    calls = {
        "stock": stock_singles,  # the reference: SAM2's own predict, one box per call
        "own_single": own_singles,  # our predict, one box per call (stock decoder, best mask upsampled only)
        "product": lambda: refiner.predict(boxes_xyxy, keep_xyxy_px=keep),  # as refine_boxes calls it
        "bare": lambda: refiner.predict(boxes_xyxy),  # the same without keep windows: full 1024 px masks
    }
    for call in calls.values():  # warm every path's first-call costs
        call()
    runs: dict[str, list[float]] = {k: [] for k in calls}
    # Alternating rounds, best-of each: other processes' load hits all alike.
    for r in range(args.rounds):
        for name, call in calls.items():
            refiner.set_image(chip)  # a fresh image each time: the decoder's per-image cache is paid inside
            t0 = time.perf_counter()
            call()
            runs[name].append(time.perf_counter() - t0)
        say(f"    round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items())
            + f", load average {load_avg()}")
    from torch.utils.flop_counter import FlopCounterMode

    # Work per box (counted, not timed): batching can only amortise what is per call.
    refiner.set_image(chip)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:  # the counter's hooks need no autograd
        stock.predict(box=boxes_xyxy[0], multimask_output=True)
    per_box = counter.get_total_flops()
    refiner.set_image(chip)
    with FlopCounterMode(display=False) as counter:
        refiner.predict(boxes_xyxy, keep_xyxy_px=keep)
    per_box_batched = counter.get_total_flops() / n
    best = {k: min(v) for k, v in runs.items()}
    say("  results (best of each):")
    say(f"    set_image {t_set:.2f} s (not part of any figure below); {n} boxes, max_boxes_per_call"
        f" {refiner.max_boxes_per_call}")
    say(f"    {n} single-box SAM2ImagePredictor.predict calls (the reference): {best['stock'] * 1000:.0f} ms"
        f" ({best['stock'] / n * 1000:.1f} ms each)")
    say(f"    {n} boxes in one Refiner.predict as refine_boxes calls it (keep windows box + 25% + 16 px):"
        f" {best['product'] * 1000:.0f} ms ({best['product'] / n * 1000:.1f} ms/box)")
    say(f"    ratio batched / single calls: {best['product'] / best['stock']:.3f}x   (target <= 0.25x)")
    say(f"    for reference: the same batched call against our own single-box path ({best['own_single'] * 1000:.0f}"
        f" ms): {best['product'] / best['own_single']:.3f}x; without keep windows (full 1024 px masks):"
        f" {best['bare'] * 1000:.0f} ms, {best['bare'] / best['stock']:.3f}x")
    say(f"    FLOPs (torch FlopCounterMode): {per_box / 1e9:.2f} GFLOP for one stock single-box call,"
        f" {per_box_batched / 1e9:.2f} GFLOP per box in the batched call (per-image work included)")
    ctx["results"]["5"] = {"ratio": best["product"] / best["stock"], "bare_ratio": best["bare"] / best["stock"]}


# --------------------------------------------------------------------- section 6: peak RSS, subprocess


def write_large_cog(path: Path, size: int, block: int = 2048) -> None:
    """size x size uint8 RGB tiled JPEG GeoTIFF written window by window (memory bounded by one window)."""
    rng = np.random.default_rng(7)
    tex = base_texture(block, rng)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32643", "transform": from_origin(500000, 3100000, 3.0, 3.0), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "jpeg", "jpeg_quality": 90,
               "photometric": "ycbcr", "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, block):
            for c0 in range(0, size, block):
                h, w = min(block, size - r0), min(block, size - c0)
                # A shifted, flipped copy of one texture per window, plus objects: varied at no cost.
                win = np.roll(tex, (int(rng.integers(block)), int(rng.integers(block))), axis=(0, 1))
                win = np.ascontiguousarray(win[:: 1 - 2 * int(rng.integers(2))][:h, :w])
                for _ in range(20):
                    s = int(rng.integers(16, 65))
                    if h > s and w > s:
                        plant(win, int(rng.integers(0, 8)), int(rng.integers(0, w - s)), int(rng.integers(0, h - s)), s)
                dst.write(win.transpose(2, 0, 1), window=((r0, r0 + h), (c0, c0 + w)))


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process in KiB (empty once it has gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def rss_child(spec_json: str) -> None:
    """Subprocess body: embed a scene with the product path, print one JSON line with its own peaks."""
    spec = json.loads(spec_json)
    torch.set_num_threads(spec["threads"])
    embedder = load_embedder(Path(spec["model_dir"]), spec["model"])
    timings: dict = {}
    with rasterio_rgb_reader(spec["cog"], (1, 2, 3), PREPROCESSING["stretch"]) as read_rgb:
        meta = embed_with_progress("child", read_rgb=read_rgb, scene_w_px=spec["size"], scene_h_px=spec["size"],
                                   embedder=embedder, out_dir=Path(spec["out_dir"]), timings=timings)
    status = proc_status(os.getpid())
    print("RESULT " + json.dumps({
        "grid": [meta.grid_h, meta.grid_w, meta.dim], "timings": timings, "vm_hwm_kib": status.get("VmHWM", 0),
    }), flush=True)


def run_rss_child(ctx: dict, model: str, cog: Path, size: int, out_dir: Path) -> dict:
    """Run rss_child in a fresh interpreter, polling its /proc status; its result plus polled peaks."""
    spec = {"model_dir": str(ctx["model_dir"]), "model": model, "cog": str(cog), "size": size,
            "out_dir": str(out_dir), "threads": torch.get_num_threads()}
    proc = subprocess.Popen([sys.executable, __file__, "--rss-child", json.dumps(spec)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    peaks = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            st = proc_status(proc.pid)
            for k in peaks:
                peaks[k] = max(peaks[k], st.get(k, 0))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    result = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
        else:
            say("  " + line.rstrip())
    proc.wait()
    done.set()
    poller.join()
    if proc.returncode:
        raise RuntimeError(f"RSS child exited with {proc.returncode}")
    result["polled_peak_kib"] = peaks
    result["children_maxrss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["grid_bytes"] = (out_dir / "tokens.f16").stat().st_size
    return result


def report_rss(label: str, res: dict) -> None:
    """Print one RSS run."""
    peaks = res["polled_peak_kib"]
    h, w, d = res["grid"]
    t = res["timings"]
    say(f"    {label}: grid {h} x {w} x {d} float16 = {res['grid_bytes'] / MB:.0f} MB on disk"
        f" ({int(t['tiles'])} tiles in {fmt_s(t['total'])})")
    say(f"      peak RSS {res['vm_hwm_kib'] / 1024:.0f} MB (child's VmHWM; polled peak VmRSS"
        f" {peaks['VmRSS'] / 1024:.0f} MB)   (target <= 2.5 GB)")
    say(f"      polled every 50 ms: peak RssAnon {peaks['RssAnon'] / 1024:.0f} MB, peak RssFile"
        f" {peaks['RssFile'] / 1024:.0f} MB (file pages: shared libraries, ~0.4 GB for torch alone, and the token"
        " memmap)")
    say(f"      (ru_maxrss is not used: Linux carries the parent's pre-exec high-water mark into it, here"
        f" {res['children_maxrss_kib'] / 1024:.0f} MB)")


def section_rss(ctx: dict, args: argparse.Namespace) -> None:
    """Section 6: peak RSS of a subprocess embedding a large scene through embed_scene + rasterio_rgb_reader."""
    tmp: Path = ctx["tmp"]
    size = args.rss_px
    cog = tmp / f"large-{size}.tif"
    say(f"  writing a {size} x {size} px uint8 RGB tiled JPEG GeoTIFF window by window ...")
    t0 = time.perf_counter()
    write_large_cog(cog, size)
    say(f"    {cog.stat().st_size / MB:.0f} MB in {fmt_s(time.perf_counter() - t0)}")
    build_dinov2(ctx["model_dir"] / "dinov2-tiny", VIT_TINY)
    say("  embedding it in a subprocess with a TINY random Dinov2 (hidden 64, 2 layers) ...")
    tiny = run_rss_child(ctx, "dinov2-tiny", cog, size, tmp / "grid-s6-tiny")
    shutil.rmtree(tmp / "grid-s6-tiny", ignore_errors=True)
    full = None
    if args.rss_full:
        say("  --rss-full: embedding it again with the full ViT-S/14 ...")
        full = run_rss_child(ctx, "dinov2-small", cog, size, tmp / "grid-s6-full")
        shutil.rmtree(tmp / "grid-s6-full", ignore_errors=True)
    g = -(-size // 14)
    say("  results:")
    report_rss("tiny Dinov2", tiny)
    say(f"      the ViT-S grid of this scene would be {g} x {g} x 384 float16 = {g * g * 384 * 2 / MB:.0f} MB on disk;"
        " memory must not scale with it")
    if full is not None:
        report_rss("ViT-S/14", full)
    ctx["results"]["6"] = {"tiny_peak_mb": tiny["vm_hwm_kib"] / 1024}


# ---------------------------------------------------------------------------------------------- main

SECTIONS = {
    "1": ("dense search vs the scripts' window scan", section_dense_vs_scan),
    "2": ("backbone throughput vs torch.mm", section_backbone),
    "3": ("end-to-end vs backbone-only time per tile", section_end_to_end),
    "4": ("re-query on a cached 10k x 10k grid", section_requery),
    "5": ("SAM2: batched vs single-box prompts", section_sam2),
    "6": ("peak RSS while embedding a large scene (subprocess)", section_rss),
}


def parse_args() -> argparse.Namespace:
    """Command line; --quick shrinks every size for a ~5 minute run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes everywhere (about 5 minutes)")
    ap.add_argument("--only", default="", help="comma-separated sections to run, e.g. 1,4 (default: all)")
    ap.add_argument("--scene-px", type=int, help="section 1 scene side (default 2048, quick 1036)")
    ap.add_argument("--scan-sample", type=int, help="section 1 windows embedded and scored (default 512, quick 32)")
    ap.add_argument("--backbone-tiles", type=int, help="section 2 tiles timed (default 8, quick 4)")
    ap.add_argument("--e2e-px", type=int, help="section 3 scene side (default 1536, quick 1036)")
    ap.add_argument("--rounds", type=int, help="sections 1, 2, 3, 5: alternating rounds, best-of (default 2, quick 1)")
    ap.add_argument("--requery-runs", type=int, default=5, help="section 4 timed runs after the warm one")
    ap.add_argument("--sam-boxes", type=int, default=32, help="section 5 boxes")
    ap.add_argument("--refiner-wait", type=float, default=600, help="section 5: seconds to wait for refiner.py")
    ap.add_argument("--rss-px", type=int, help="section 6 scene side (default 20000, quick 6000)")
    ap.add_argument("--rss-full", action="store_true",
                    help="section 6 also with the full ViT-S (hours on 2 CPU cores for 20k x 20k)")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    defaults = {"scene_px": (2048, 1036), "scan_sample": (512, 32), "backbone_tiles": (8, 4),
                "e2e_px": (1536, 1036), "rounds": (2, 1), "rss_px": (20000, 6000)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main() -> None:
    """Run the chosen sections in one process, sharing one temp dir and one loaded backbone."""
    args = parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    TMP_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="search-", dir=TMP_ROOT))
    say(f"search benchmark ({'quick' if args.quick else 'default'} sizes), sections {','.join(chosen)};"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs,"
        f" load average {load_avg()}; temp dir {tmp}")
    start = time.perf_counter()
    try:
        model_dir = tmp / "models"
        say("building a random-weight ViT-S/14 (dinov2-small architecture) and loading it like production ...")
        build_dinov2(model_dir / "dinov2-small", VIT_S)
        ctx = {"tmp": tmp, "model_dir": model_dir, "results": {},
               "embedder": load_embedder(model_dir, "dinov2-small") if set(chosen) & {"1", "2", "3"} else None}
        for key in chosen:
            title, fn = SECTIONS[key]
            say(f"\n[{key}] {title}  (t = {time.perf_counter() - start:.0f} s, load average {load_avg()})")
            t0 = time.perf_counter()
            fn(ctx, args)
            say(f"  section {key} took {fmt_s(time.perf_counter() - t0)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"\ndone in {fmt_s(time.perf_counter() - start)}; load average {load_avg()}; temp files removed")


if __name__ == "__main__":
    main()
