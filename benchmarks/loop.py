#!/usr/bin/env python
"""Detector-loop benchmark (issue 12 §6): the probe part here, the YOLO part in loop_yolo.py (--parts).

Probe: training and scoring time of the logistic probe and the kNN scorer on a cached grid the size of a 10k x 10k px
scene (DINOv2-S, 14 px patches: 715 x 715 x 384 float16), beside prototype search scoring the same grid. Targets:
training under 10 s, scoring under 1 s. The kNN scorer runs as a cascade (its logistic first stage, the vote on the
cells it passes); --check also times the exact vote on every cell and counts what the cascade changed. Figures,
never pass/fail. Django-free.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpu_tasks.inference.probe import BACKGROUND, score_grid_probe, train_knn, train_logistic  # noqa: E402
from gpu_tasks.inference.prototypes import ClassPrototypes  # noqa: E402
from gpu_tasks.inference.search import SearchParams, score_grid  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loop_yolo  # noqa: E402


def synthetic_grid(path: Path, side: int, dim: int, n_cover: int, seed: int) -> np.memmap:
    """A float16 memmap grid of mixed land-cover directions with noise (built in row blocks)."""
    rng = np.random.default_rng(seed)
    cover = rng.normal(size=(n_cover, dim)).astype(np.float32)
    grid = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(side, side, dim))
    for r in range(0, side, 64):
        rows = min(64, side - r)
        a = rng.integers(0, n_cover, (rows, side))
        block = cover[a] + rng.normal(0, 0.3, (rows, side, dim)).astype(np.float32)
        grid[r:r + rows] = block.astype(np.float16)
    grid.flush()
    return np.load(path, mmap_mode="r")


def reviewed_tokens(grid, per_class: int, classes: int, background: int, seed: int):
    """Training tokens drawn from the grid: `classes` clusters of objects and background cells."""
    rng = np.random.default_rng(seed)
    h, w, d = grid.shape
    tokens, labels = [], []
    for c in range(classes):
        centre = np.asarray(grid[rng.integers(h), rng.integers(w)], dtype=np.float32)
        tokens.append(centre + rng.normal(0, 0.2, (per_class, d)).astype(np.float32))
        labels += [c + 1] * per_class
    rows, cols = rng.integers(0, h, background), rng.integers(0, w, background)
    tokens.append(np.asarray(grid[rows, cols], dtype=np.float32))
    labels += [BACKGROUND] * background
    return np.concatenate(tokens), np.asarray(labels)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=715, help="grid side in cells (715: 10k px at 14 px patches)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=2000, help="reviewed object tokens per class")
    parser.add_argument("--background", type=int, default=20000, help="reviewed background tokens")
    parser.add_argument("--knn-bank", type=int, default=4096,
                        help="kNN bank size (tokens kept, even per column; 4096: train_knn's default)")
    parser.add_argument("--gate", type=float, default=None,
                        help="the cascade's gate (x the threshold; 0: the vote on every cell); default: the scorer's")
    parser.add_argument("--check", action="store_true",
                        help="also score every cell by the vote (exact, 15-60 s) and compare the cascade with it")
    parser.add_argument("--parts", default="probe,yolo", help="probe, yolo or both (the YOLO part: loop_yolo.py)")
    loop_yolo.add_arguments(parser)
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",")}
    if "probe" in parts:
        probe_part(args)
    if "yolo" in parts:
        for line in loop_yolo.run(args):
            print(line)


def probe_part(args) -> None:
    """Training and scoring time of the probes beside prototype search on a grid of a 10k x 10k scene."""
    with tempfile.TemporaryDirectory() as tmp:
        t_build, grid = timed(synthetic_grid, Path(tmp) / "grid.npy", args.side, args.dim, 12, 0)
        tokens, labels = reviewed_tokens(grid, args.per_class, args.classes, args.background, 1)
        cells = args.side * args.side
        print(f"grid {args.side} x {args.side} x {args.dim} float16 ({cells:,} cells, "
              f"{grid.nbytes / 1e6:.0f} MB, built in {t_build:.1f} s); {len(labels):,} reviewed tokens, "
              f"{args.classes} classes")
        float(np.asarray(grid[:]).max())  # page the grid in once, so every scorer reads it from memory alike
        rows = []
        t_train, logistic = timed(train_logistic, tokens, labels)
        t_score, _ = timed(score_grid_probe, grid, logistic)
        rows.append(("logistic probe", t_train, t_score))
        t_train, knn = timed(train_knn, tokens, labels, k=20, max_bank=args.knn_bank)
        counts = {}
        gate = {} if args.gate is None else {"gate": args.gate}
        t_score, (cascade_class, cascade_score) = timed(score_grid_probe, grid, knn, counts=counts, **gate)
        rows.append((f"kNN (k=20, bank {len(knn.bank_labels):,}) cascade", t_train, t_score))
        voted = counts["knn_cells"]
        if args.check:
            t_exact, (exact_class, exact_score) = timed(score_grid_probe, grid, knn, gate=0.0)
            rows.append(("kNN, the vote on every cell", t_train, t_exact))
            reached = cascade_score > 0  # cells the cascade voted on (a vote's object share is > 0 there)
            lost = int(((exact_class >= 0) & (cascade_class < 0)).sum())
            changed = int((cascade_class != exact_class)[reached].sum())
            drift = float(np.abs(cascade_score - exact_score)[reached].max(initial=0.0))
        prototypes = [ClassPrototypes(c, (tokens[labels == c][:8] / np.linalg.norm(tokens[labels == c][:8], axis=1,
                                                                                   keepdims=True)))
                      for c in range(1, args.classes + 1)]
        t_score, _ = timed(score_grid, grid, prototypes, SearchParams())
        rows.append(("prototype search (8 per class)", 0.0, t_score))
        print(f"{'scorer':36} {'train s':>8} {'score s':>8} {'cells/s':>12}  vs targets (train 10 s, score 1 s)")
        for name, train_s, score_s in rows:
            train = f"train x{10 / train_s:.1f}" if train_s else "nothing to train"
            print(f"{name:36} {train_s:8.2f} {score_s:8.2f} {cells / score_s:12,.0f}  "
                  f"{train}, score x{1 / score_s:.2f} (x > 1: inside the target)")
        print(f"kNN cascade: the vote ran on {voted:,} cells ({voted / cells:.2%}); "
              f"{int((cascade_class >= 0).sum()):,} object cells")
        if args.check:
            print(f"  against the vote on every cell: {int((exact_class >= 0).sum()):,} object cells, {lost} of them "
                  f"ruled out by the first stage; where the cascade voted, {changed} classes differ, "
                  f"scores by at most {drift:.1e}")


if __name__ == "__main__":
    main()
