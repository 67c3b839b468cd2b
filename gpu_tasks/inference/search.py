"""Similarity search over a token grid: per-cell class scores in one matmul per chunk, then boxes and NMS."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import IncompatibleEmbeddings
from .grid import GridMeta
from .prototypes import ClassPrototypes

if TYPE_CHECKING:
    import torch


# A candidate box larger than this many times the class's largest example box is dropped (see SearchParams).
# 8 lets an object up to ~2.8x the largest example's width through; a whole-scene blob is far beyond it.
OVERSIZE_FACTOR = 8.0


@dataclass
class SearchParams:
    """Scoring and candidate-extraction settings of one search."""

    thresholds: dict[int, float] = field(default_factory=dict)  # class_id -> min score; default_threshold otherwise
    default_threshold: float = 0.5
    # Score = max cos to a positive - negative_weight * max(0, max cos to a negative). 0.5 lets a look-alike
    # that matches a rejected example as well as the class drop by about half its similarity, below a typical
    # threshold, while a true object (far less similar to the negatives) loses little.
    negative_weight: float = 0.5
    margin: float = 0.02  # the winning class must beat the runner-up class by this much
    min_cells: int = 1  # components with fewer cells are dropped
    max_candidates: int | None = None  # None = all, ranked by score (no cap that hides recall)
    nms_iou: float = 0.5  # within a class
    cross_class_iou: float = 0.7  # between classes: the lower-scored box goes
    # Touching objects of one class form one component; it is split where its (3 x 3 smoothed) score surface
    # has separate peaks, each rising at least split_prominence above the saddle between them. object_cells
    # (class_id -> typical object area in grid cells, from the examples) guards this: only components larger
    # than 1.5 objects are split, and no part smaller than a quarter of an object is cut off. A class without
    # a known size is never split.
    split_prominence: float | None = 0.05  # None: never split
    object_cells: dict[int, float] = field(default_factory=dict)
    # A candidate whose box covers more than oversize_factor x the largest example's box (class_id -> its area
    # in grid cells, counting every cell the example can touch) is not an object of that class but a region
    # that looks like it (a field of roofs, a whole scene of canopy): after the split above it is dropped and
    # counted. A class without a known size is never dropped; None switches the check off.
    max_object_cells: dict[int, float] = field(default_factory=dict)
    oversize_factor: float | None = OVERSIZE_FACTOR
    # Cells scored per step (~24 MB of float32 tokens at d=384): small enough for the cast, norm and matmul to
    # reuse the cache (64 MB chunks measured ~1.5x slower), large enough that the per-op thread barriers stay
    # few (4k-cell chunks were erratic on an oversubscribed 2-core machine).
    chunk_cells: int = 16384

    def threshold(self, class_id: int) -> float:
        """Threshold of one class."""
        return float(self.thresholds.get(class_id, self.default_threshold))


@dataclass
class Candidate:
    """A detection proposal: one connected component of winning cells of one class.

    score is the highest cell score in the component (peak similarity, so a small object is not diluted
    by its partly covered border cells); mean_score is the average over its cells.
    """

    class_id: int
    score: float
    box_px: tuple[float, float, float, float]  # native px xyxy, clipped to the scene
    cells: int
    mean_score: float = 0.0


def _add_time(timings: dict | None, name: str, seconds: float) -> None:
    """Accumulate seconds under `name`."""
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + seconds


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    a = np.asarray(a, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _padded_block(arrays: Sequence[np.ndarray], dim: int) -> torch.Tensor:
    """(dim, C*k) unit prototype columns, class by class, each class padded to k by repeating its first row."""
    import torch

    k = max(1, max(len(a) if a.size else 0 for a in arrays))
    cols = np.zeros((len(arrays), k, dim), dtype=np.float32)
    for j, a in enumerate(arrays):
        if a.size:
            unit = _unit_rows(a).reshape(-1, dim)
            cols[j, : len(unit)] = unit
            cols[j, len(unit) :] = unit[0]
    return torch.from_numpy(np.ascontiguousarray(cols.reshape(-1, dim).T))


def score_grid(
    tokens: np.ndarray,
    classes: Sequence[ClassPrototypes],
    params: SearchParams,
    row_chunk: int | None = None,
    timings: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(best_class, best_score) per cell of an (h, w, d) grid: class_id (-1 = none) and its score.

    best_score holds the top class score of every cell, accepted or not (a heat map); where no class reaches
    its threshold even before negatives, negatives are skipped and it is that upper bound (still below the
    threshold). best_class is int16 unless a class id does not fit, then int32.

    Runs on the CPU with torch, whose float16 -> float32 cast is ~10x faster than numpy's; the matmul against
    the positives dominates (2*h*w*d*K flop), and on a GPU the grid's transfer would cost about as much.
    """
    # torch is imported here, not at module level: the web process imports this module (via the job services)
    # and must not map libtorch (~1.5 GB RSS per worker).
    import torch

    t0 = time.perf_counter()
    h, w, d = tokens.shape
    ids = [int(c.class_id) for c in classes]
    fits16 = all(-(2**15) < i < 2**15 for i in ids)
    best_class = np.full((h, w), -1, dtype=np.int16 if fits16 else np.int32)
    best_score = np.zeros((h, w), dtype=np.float32)
    classes = [c for c in classes if len(c.positives)]
    if not classes:
        return best_class, best_score
    for c in classes:
        for kind, arr in (("positive", c.positives), ("negative", c.negatives)):
            if arr.size and arr.shape[-1] != d:
                raise IncompatibleEmbeddings(
                    f"class {c.class_id}: {kind} prototypes have dim {arr.shape[-1]} but the grid has {d}; "
                    "they come from another model: rebuild the examples with the grid's model"
                )

    # One (d, C*k) matrix per kind: each class's prototypes padded to a common count by repeating its first
    # row (a max is unchanged by duplicates), so per-class maxima are one reshape + amax, not a Python loop.
    n_classes = len(classes)
    pos_t = _padded_block([c.positives for c in classes], d)
    has_neg = any(c.negatives.size for c in classes)
    # A class without negatives gets a zero vector: cosine 0, hence no penalty after the clamp below.
    neg_t = _padded_block([c.negatives for c in classes], d) if has_neg else None
    k_pos = pos_t.shape[1] // n_classes
    k_neg = neg_t.shape[1] // n_classes if neg_t is not None else 0
    class_ids_t = torch.tensor([c.class_id for c in classes], dtype=torch.int32)
    thresholds_t = torch.tensor([params.threshold(c.class_id) for c in classes], dtype=torch.float32)
    weight = float(params.negative_weight)

    chunk = row_chunk * w if row_chunk else max(1, params.chunk_cells)
    flat_tokens = tokens.reshape(h * w, d)  # a view for the C-ordered grid memmap
    flat_class, flat_score = best_class.reshape(-1), best_score.reshape(-1)
    _add_time(timings, "score_setup", time.perf_counter() - t0)

    x_buf = torch.empty((chunk, d), dtype=torch.float32)
    sims_buf = torch.empty((chunk, pos_t.shape[1]), dtype=torch.float32)
    t0 = time.perf_counter()
    with torch.inference_mode(), warnings.catch_warnings():
        # The memmap is read-only and torch warns about wrapping it; nothing here writes to it.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for start in range(0, h * w, chunk):
            stop = min(h * w, start + chunk)
            n = stop - start
            x = x_buf[:n]
            # Into a reused buffer: a fresh allocation per chunk costs more in page faults than the cast.
            x.copy_(torch.from_numpy(np.asarray(flat_tokens[start:stop])))
            inv_norm = torch.linalg.vector_norm(x, dim=1).clamp_min_(1e-12).reciprocal_()
            sims = torch.mm(x, pos_t, out=sims_buf[:n])  # the matmul is most of the time: ~2*n*d*K flop
            per_class = sims.view(n, n_classes, k_pos).amax(dim=2).mul_(inv_norm[:, None])
            if k_neg:
                # A class's score never exceeds its positive similarity, so negatives only matter where some
                # class reaches its threshold on positives alone: usually a few % of the cells.
                need = (per_class >= thresholds_t).any(dim=1).nonzero().squeeze(1)
                if need.numel():
                    neg_sims = torch.mm(x.index_select(0, need), neg_t)
                    neg = neg_sims.view(-1, n_classes, k_neg).amax(dim=2).mul_(inv_norm[need, None])
                    # Only similar negatives penalise; an unrelated one (cos <= 0) must not raise the score.
                    per_class[need] -= weight * neg.clamp_min_(0)
            score, idx = per_class.max(dim=1)
            if n_classes > 1:
                # Runner-up = max with the winner masked out (half the cost of topk(2) for a few classes).
                runner_up = per_class.scatter_(1, idx[:, None], float("-inf")).amax(dim=1)
                ok = (score - runner_up) >= params.margin
            else:
                ok = torch.ones(n, dtype=torch.bool)
            ok &= score >= thresholds_t[idx]
            chosen = torch.where(ok, class_ids_t[idx], torch.full_like(idx, -1, dtype=torch.int32))
            flat_score[start:stop] = score.numpy()
            flat_class[start:stop] = chosen.numpy()
    _add_time(timings, "score", time.perf_counter() - t0)
    return best_class, best_score


def box_iou_xyxy(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against (n, 4) xyxy boxes."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def _iou_pairs(boxes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box pairs (boxes[a[i]], boxes[b[i]])."""
    ba, bb = boxes[a], boxes[b]
    iw = np.clip(np.minimum(ba[:, 2], bb[:, 2]) - np.maximum(ba[:, 0], bb[:, 0]), 0, None)
    ih = np.clip(np.minimum(ba[:, 3], bb[:, 3]) - np.maximum(ba[:, 1], bb[:, 1]), 0, None)
    inter = iw * ih
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area[a] + area[b] - inter, 1e-12)


def _overlapping_pairs(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a < b) of boxes with overlapping interiors, from an STR-tree (C speed, ~O(n log n))."""
    import shapely

    geoms = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    upper = a < b
    return a[upper], b[upper]


def nms_xyxy(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of boxes kept by greedy non-maximum suppression (IoU > iou suppresses), by descending score.

    Few boxes: the classic loop (one vectorised IoU row per kept box). Many (a whole scene of candidates):
    overlapping pairs from a spatial index, then one pass in score order: O(n log n + pairs), not O(n^2).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if len(order) <= 512:
        return _nms_greedy(boxes, order, iou)
    return _nms_pairs(boxes, order, iou)


def _nms_greedy(boxes: np.ndarray, order: np.ndarray, iou: float) -> np.ndarray:
    """Classic greedy NMS over boxes visited in `order`."""
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou_xyxy(boxes[i], boxes[rest]) <= iou]
    return np.asarray(keep, dtype=np.int64)


def _nms_pairs(boxes: np.ndarray, order: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS from the list of overlapping pairs; same result as _nms_greedy."""
    n = len(boxes)
    a, b = _overlapping_pairs(boxes)
    hit = _iou_pairs(boxes, a, b) > iou
    a, b = a[hit], b[hit]
    # Symmetric adjacency in CSR form: neighbours[ptr[i]:ptr[i+1]] overlap box i above the threshold.
    src, dst = np.concatenate([a, b]), np.concatenate([b, a])
    neighbours = dst[np.argsort(src, kind="stable")]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    suppressed = np.zeros(n, dtype=bool)
    kept = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        kept.append(i)
        # Marking already-visited neighbours is harmless: they were decided before i.
        suppressed[neighbours[ptr[i] : ptr[i + 1]]] = True
    return np.asarray(kept, dtype=np.int64)


# Components larger than this many typical objects are not split: at a threshold that low they are background
# blobs, and the cell-by-cell pass below would cost seconds.
SPLIT_MAX_OBJECTS = 50
SPLIT_MAX_CELLS = 20000
# Cells passed through the sequential pass per class and search (~2 us each): a bound on the worst case.
SPLIT_BUDGET_CELLS = 200_000
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def split_component(inside: np.ndarray, score: np.ndarray, prominence: float, min_part: int) -> np.ndarray:
    """Part labels (-1 outside, 0..k-1 inside) of one 8-connected component, split at saddles between peaks.

    A watershed by persistence: cells join in descending score order; where two regions meet, the lower-peaked
    one merges into the other when its peak is less than `prominence` above the meeting score, or when either
    has fewer than `min_part` cells (no part that small is ever cut off); a cell between regions that stay
    apart goes uphill, to its highest neighbour's region.
    inside (h, w) bool and score (h, w) cover the component's bounding box.
    """
    h, w = inside.shape
    index = np.full((h + 2, w + 2), -1, dtype=np.int64)  # cell index per position, -1 outside (padded)
    ys, xs = np.nonzero(inside)
    n = len(ys)
    index[ys + 1, xs + 1] = np.arange(n)
    # (n, 8) neighbour indices, built at once so that the sequential pass below only follows integers.
    neighbours = np.stack([index[ys + 1 + dy, xs + 1 + dx] for dy, dx in _NEIGHBOURS], axis=1).tolist()
    values = score[ys, xs].astype(np.float64)
    vals = values.tolist()
    parent = [-1] * n  # -1: not reached yet
    size = [0] * n

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for c in np.argsort(-values, kind="stable").tolist():
        best: dict[int, float] = {}  # neighbouring regions -> their highest neighbour's score
        for j in neighbours[c]:
            if j >= 0 and parent[j] >= 0:
                r = root(j)
                if vals[j] > best.get(r, -np.inf):
                    best[r] = vals[j]
        parent[c], size[c] = c, 1
        if not best:
            continue
        ranked = sorted(best, key=lambda r: vals[r], reverse=True)  # a root is its region's peak cell
        high = ranked[0]
        for r in ranked[1:]:
            if vals[r] - vals[c] < prominence or size[r] < min_part or size[high] < min_part:
                parent[r] = high
                size[high] += size[r]
                best[high] = max(best[high], best.pop(r))
        target = root(max(best, key=best.__getitem__))
        parent[c] = target
        size[target] += 1
    part = np.full((h, w), -1, dtype=np.int64)
    _, part[ys, xs] = np.unique([root(i) for i in range(n)], return_inverse=True)
    return part


def _smoothed(inside: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mean of each cell's 3 x 3 neighbourhood within the component: one noisy patch makes no peak."""
    weight = cv2.boxFilter(inside.astype(np.float32), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    total = cv2.boxFilter(
        np.where(inside, score, 0).astype(np.float32), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT
    )
    return np.where(inside, total / np.maximum(weight, 1), -np.inf)


def _has_two_peaks(inside: np.ndarray, smooth: np.ndarray) -> bool:
    """Whether the component has two separate local maxima (a cheap test before the sequential pass)."""
    peaks = inside & (smooth >= cv2.dilate(smooth, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT))
    if peaks.sum() < 2:
        return False
    return cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)[0] > 2  # background + 2 plateaus


def _split_labels(
    labels: np.ndarray, n_labels: int, stats: np.ndarray, score: np.ndarray, params: SearchParams, class_id: int
) -> tuple[np.ndarray, int]:
    """Component labels with touching objects split apart (see SearchParams.split_prominence)."""
    typical = params.object_cells.get(int(class_id))
    if params.split_prominence is None or not typical:
        return labels, n_labels
    area = stats[:, cv2.CC_STAT_AREA]
    todo = np.flatnonzero((area >= 1.5 * typical) & (area <= min(SPLIT_MAX_CELLS, SPLIT_MAX_OBJECTS * typical)))
    todo = todo[todo > 0]
    min_part = max(params.min_cells, 2, int(0.25 * typical))
    copied = False
    budget = SPLIT_BUDGET_CELLS
    for lab in todo:
        x0, y0, w, h = (int(v) for v in stats[lab, :4])  # LEFT, TOP, WIDTH, HEIGHT
        box = (slice(y0, y0 + h), slice(x0, x0 + w))
        inside = labels[box] == lab
        smooth = _smoothed(inside, score[box])
        if not _has_two_peaks(inside, smooth):
            continue
        if area[lab] > budget:
            warnings.warn(
                f"class {class_id}: the split of touching objects stopped at its budget of {SPLIT_BUDGET_CELLS}"
                " cells; the remaining components stay whole (a higher threshold gives fewer, smaller ones)",
                stacklevel=2,
            )
            break
        budget -= int(area[lab])
        part = split_component(inside, smooth, params.split_prominence, min_part)
        k = int(part.max()) + 1
        if k > 1:
            if not copied:
                labels, copied = labels.copy(), True
            # Part 0 keeps the label; the others get new ones.
            sub = labels[box]
            sub[part > 0] = n_labels + part[part > 0] - 1
            n_labels += k - 1
    return labels, n_labels


def find_candidates(
    best_class: np.ndarray,
    best_score: np.ndarray,
    meta: GridMeta,
    params: SearchParams,
    timings: dict | None = None,
    counts: dict | None = None,
) -> list[Candidate]:
    """Connected components (8-connected) of each class's cells -> boxes in native px, NMS'd and ranked.

    counts (when given) receives "dropped_oversize": candidates dropped as far larger than their class's examples.
    """
    t0 = time.perf_counter()
    dropped_oversize = 0
    cell = meta.cell_px
    limit = np.array([meta.scene_width_px, meta.scene_height_px] * 2, dtype=np.float64)
    parts: list[tuple[np.ndarray, ...]] = []  # (class ids, peak scores, boxes, cells, mean scores) per class
    for class_id in np.unique(best_class):
        if class_id < 0:
            continue
        mask = best_class == class_id
        n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if n_labels <= 1:
            continue
        area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
        labels, n_split = _split_labels(labels, n_labels, stats, best_score, params, class_id)
        ys, xs = np.nonzero(mask)
        lab = labels[ys, xs]
        sc = best_score[ys, xs].astype(np.float64)
        peak = np.full(n_split, -np.inf)
        np.maximum.at(peak, lab, sc)
        total = np.bincount(lab, weights=sc, minlength=n_split)
        if n_split != n_labels:  # boxes of the split parts: cv2's stats describe the unsplit components
            area = np.bincount(lab, minlength=n_split)
            x0, y0 = np.full(n_split, np.iinfo(np.int64).max), np.full(n_split, np.iinfo(np.int64).max)
            x1, y1 = np.full(n_split, -1), np.full(n_split, -1)
            np.minimum.at(x0, lab, xs)
            np.minimum.at(y0, lab, ys)
            np.maximum.at(x1, lab, xs + 1)
            np.maximum.at(y1, lab, ys + 1)
        else:
            x0, y0 = stats[:, cv2.CC_STAT_LEFT].astype(np.int64), stats[:, cv2.CC_STAT_TOP].astype(np.int64)
            x1, y1 = x0 + stats[:, cv2.CC_STAT_WIDTH], y0 + stats[:, cv2.CC_STAT_HEIGHT]
        ok = np.flatnonzero(area >= params.min_cells)
        ok = ok[ok > 0]  # label 0 is the background
        largest = params.max_object_cells.get(int(class_id))
        if params.oversize_factor is not None and largest:
            oversize = (x1[ok] - x0[ok]) * (y1[ok] - y0[ok]) > params.oversize_factor * largest
            dropped_oversize += int(oversize.sum())
            ok = ok[~oversize]
        if not ok.size:
            continue
        boxes = np.minimum(np.stack([x0[ok], y0[ok], x1[ok], y1[ok]], axis=1) * cell, limit)
        keep = nms_xyxy(boxes, peak[ok], params.nms_iou)
        ok_idx = ok[keep]
        parts.append(
            (np.full(len(keep), class_id), peak[ok_idx], boxes[keep], area[ok_idx], total[ok_idx] / area[ok_idx])
        )
    if counts is not None:
        counts["dropped_oversize"] = counts.get("dropped_oversize", 0) + dropped_oversize
    if not parts:
        _add_time(timings, "candidates", time.perf_counter() - t0)
        return []
    class_ids, scores, boxes, cells, means = (np.concatenate(col) for col in zip(*parts, strict=True))
    # Across classes one object keeps its best label; boxes at lower overlap may be distinct objects.
    # nms_xyxy returns indices by descending score, which is the ranking we hand out.
    order = nms_xyxy(boxes, scores, params.cross_class_iou)
    if params.max_candidates is not None:
        order = order[: params.max_candidates]
    candidates = [
        Candidate(
            class_id=int(class_ids[i]),
            score=float(scores[i]),
            box_px=(float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
            cells=int(cells[i]),
            mean_score=float(means[i]),
        )
        for i in order
    ]
    _add_time(timings, "candidates", time.perf_counter() - t0)
    return candidates
