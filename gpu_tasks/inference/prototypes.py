"""Class prototypes: mask-pooled patch tokens inside example polygons (positives) and rejected ones (negatives)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .grid import GridMeta

# One polygon in native px: [exterior, *holes], each ring a sequence of (x, y).
PolygonPx = Sequence[Sequence[Sequence[float]]]


@dataclass
class ClassPrototypes:
    """Prototype vectors of one class: L2-normalised float32 rows, (k, dim) positives and (m, dim) negatives."""

    class_id: int
    positives: np.ndarray
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


def mean_direction(tokens: np.ndarray) -> np.ndarray:
    """L2-normalised mean of L2-normalised rows: the average direction, not dominated by high-norm tokens."""
    tokens = np.asarray(tokens, dtype=np.float32)
    unit = tokens / np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-12)
    mean = unit.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def _inside_even_odd(xs: np.ndarray, ys: np.ndarray, rings: list[np.ndarray]) -> np.ndarray:
    """Even-odd point-in-polygon over all rings at once, so holes subtract without knowing orientation."""
    inside = np.zeros(np.broadcast(xs, ys).shape, dtype=bool)
    for ring in rings:
        xa, ya = ring[:, 0], ring[:, 1]
        xb, yb = np.roll(xa, -1), np.roll(ya, -1)
        for x0, y0, x1, y1 in zip(xa, ya, xb, yb, strict=True):
            if y0 == y1:
                continue
            crosses = (y0 > ys) != (y1 > ys)
            x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (xs < x_at)
    return inside


def polygon_patch_mask(polygon_px: PolygonPx, meta: GridMeta) -> tuple[slice, slice, np.ndarray]:
    """Grid cells whose centre lies inside the polygon, as (row slice, col slice, bool mask of that block).

    A polygon smaller than a cell still yields its nearest cell, so every example contributes a token.
    """
    rings = [np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in polygon_px if len(r) >= 3]
    if not rings:
        raise ValueError("polygon has no ring with at least 3 points")
    cell = meta.cell_px
    ext = rings[0]
    (x_min, y_min), (x_max, y_max) = ext.min(axis=0), ext.max(axis=0)
    c0 = min(max(math.floor(x_min / cell), 0), meta.grid_w - 1)
    r0 = min(max(math.floor(y_min / cell), 0), meta.grid_h - 1)
    c1 = min(max(math.ceil(x_max / cell), c0 + 1), meta.grid_w)
    r1 = min(max(math.ceil(y_max / cell), r0 + 1), meta.grid_h)
    xs = ((np.arange(c0, c1) + 0.5) * cell)[None, :]
    ys = ((np.arange(r0, r1) + 0.5) * cell)[:, None]
    mask = _inside_even_odd(xs, ys, rings)
    if mask.any():
        return slice(r0, r1), slice(c0, c1), mask
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    col = min(max(int(cx // cell), 0), meta.grid_w - 1)
    row = min(max(int(cy // cell), 0), meta.grid_h - 1)
    return slice(row, row + 1), slice(col, col + 1), np.ones((1, 1), dtype=bool)


def prototype_from_polygon(grid: np.ndarray, meta: GridMeta, polygon_px: PolygonPx) -> np.ndarray:
    """(dim,) float32 L2-normalised mean direction of the grid tokens inside a polygon in native px."""
    rows, cols, mask = polygon_patch_mask(polygon_px, meta)
    tokens = np.asarray(grid[rows, cols], dtype=np.float32)[mask]
    return mean_direction(tokens)


def stack_prototypes(vectors: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """(k, dim) float32 array from a list of (dim,) vectors (k may be 0)."""
    if not vectors:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32).reshape(dim) for v in vectors])


def condense_prototypes(vectors: np.ndarray, max_k: int, iterations: int = 10) -> np.ndarray:
    """At most max_k unit rows summarising (k, dim) prototypes (spherical k-means, farthest-point start).

    Search cost grows with the number of prototypes; hundreds of accepted examples of one class say little
    more than a few dozen well-spread directions. Deterministic: same input, same output.
    """
    unit = np.asarray(vectors, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    if len(unit) <= max_k:
        return unit
    # Farthest-point seeding: start from the row closest to the mean, add the least similar row each time.
    chosen = [int(np.argmax(unit @ mean_direction(unit)))]
    best_sim = unit @ unit[chosen[0]]
    for _ in range(max_k - 1):
        nxt = int(np.argmin(best_sim))
        chosen.append(nxt)
        best_sim = np.maximum(best_sim, unit @ unit[nxt])
    centres = unit[chosen].copy()
    for _ in range(iterations):
        assign = np.argmax(unit @ centres.T, axis=1)
        for j in range(max_k):
            members = unit[assign == j]
            if len(members):
                centres[j] = mean_direction(members)
    return centres.astype(np.float32)
