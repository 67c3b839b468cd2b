"""Verification of detector boxes by the class prototypes, read from a scene's cached token grid.

A box's vector is pooled from the grid (no backbone pass); its class scores are computed as a search scores a cell
(score_grid), so a verification score and a search score mean the same; a box is relabelled only where another
class clearly wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import IncompatibleEmbeddings
from .grid import GridMeta
from .prototypes import ClassPrototypes
from .search import SearchParams

# Same defaults as a search, so a box is relabelled only to a class a search would have accepted by default.
DEFAULT_NEGATIVE_WEIGHT = SearchParams.negative_weight
DEFAULT_MIN_SCORE = SearchParams.default_threshold
# Larger than the search's class margin (0.02): the detector's own class, learnt from the reviewed labels, is
# evidence too, so overruling it takes a clearer win than choosing between classes with no prior.
DEFAULT_RELABEL_MARGIN = 0.05
# Cells gathered per step of box_vectors (~25 MB of float32 at dim 384): bounds memory for any box set.
CHUNK_CELLS = 16384


def _cell_ranges(meta: GridMeta, boxes_px: np.ndarray) -> tuple[np.ndarray, ...]:
    """(r0, r1, c0, c1) per box: the cells whose centre lies inside it, else the one cell under its centre."""
    cell = meta.cell_px
    centres_x = (np.arange(meta.grid_w) + 0.5) * cell
    centres_y = (np.arange(meta.grid_h) + 0.5) * cell
    x0, y0, x1, y1 = boxes_px.T
    c0, c1 = np.searchsorted(centres_x, x0, "right"), np.searchsorted(centres_x, x1, "left")
    r0, r1 = np.searchsorted(centres_y, y0, "right"), np.searchsorted(centres_y, y1, "left")
    small = (c1 <= c0) | (r1 <= r0)
    cc = np.clip(((x0 + x1) / 2) // cell, 0, meta.grid_w - 1).astype(np.int64)
    rc = np.clip(((y0 + y1) / 2) // cell, 0, meta.grid_h - 1).astype(np.int64)
    c0, r0 = np.where(small, cc, c0), np.where(small, rc, r0)
    c1, r1 = np.where(small, cc + 1, c1), np.where(small, rc + 1, r1)
    return r0, r1, c0, c1


def _unit(rows: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero), as mean_direction scales them."""
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _block_unit_sum(tokens: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Sum of the unit tokens of one large block, read a few rows at a time."""
    w, dim = c1 - c0, tokens.shape[2]
    step = max(1, CHUNK_CELLS // max(w, 1))
    total = np.zeros(dim, dtype=np.float64)
    for r in range(r0, r1, step):
        total += _unit(np.asarray(tokens[r : min(r1, r + step), c0:c1]).reshape(-1, dim)).sum(axis=0)
    return total


def box_vectors(tokens: np.ndarray, meta: GridMeta, boxes_px: np.ndarray) -> np.ndarray:
    """(n, dim) float32 L2-normalised vectors of XYXY native-px boxes from the (h, w, dim) token grid.

    Each is the mean direction (prototypes.mean_direction) of the cells whose centre lies inside the box, else of
    the cell under the box's centre: a box pools as an example polygon of the same outline does.
    """
    boxes_px = np.asarray(boxes_px, dtype=np.float64).reshape(-1, 4)
    n, dim = len(boxes_px), tokens.shape[2]
    out = np.zeros((n, dim), dtype=np.float32)
    if not n:
        return out
    r0, r1, c0, c1 = _cell_ranges(meta, boxes_px)
    counts = (r1 - r0) * (c1 - c0)
    flat = tokens.reshape(-1, dim)  # a view of the C-ordered grid memmap
    sums = np.zeros((n, dim), dtype=np.float64)  # float64: a whole-scene box sums ~500k unit vectors
    big = np.flatnonzero(counts > CHUNK_CELLS)
    for i in big:  # a box over a whole chunk of cells: its own block, in rows (bounded memory)
        sums[i] = _block_unit_sum(tokens, int(r0[i]), int(r1[i]), int(c0[i]), int(c1[i]))
    small = np.flatnonzero(counts <= CHUNK_CELLS)
    # Boxes bucketed by cell count (up to the next power of two), each bucket padded to its largest box: one
    # (m, K, dim) gather from the memmap (it reads only those rows) summed over K in one vectorised op, at most
    # twice the cells. No loop per cell; np.add.reduceat per box measured ~2x slower than this whole function (its
    # inner loop runs along a box's few cells, not along the token).
    bucket = np.ceil(np.log2(counts[small])).astype(np.int64)
    for b in np.unique(bucket):
        ids = small[bucket == b]
        k = int(counts[ids].max())
        step = max(1, CHUNK_CELLS // k)
        for s in range(0, len(ids), step):
            part = ids[s : s + step]
            sums[part] = _padded_unit_sum(flat, r0[part], c0[part], c1[part], counts[part], k, meta.grid_w)
    mean = sums / counts[:, None]
    norm = np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    out[:] = mean / norm
    return out


def _padded_unit_sum(flat: np.ndarray, r0: np.ndarray, c0: np.ndarray, c1: np.ndarray, counts: np.ndarray, k: int,
                     grid_w: int) -> np.ndarray:
    """(m, dim) sums of the unit tokens of m row-major blocks of at most k cells each (padding masked out)."""
    widths = (c1 - c0)[:, None]
    pos = np.arange(k)[None, :]
    valid = pos < counts[:, None]
    pos = np.where(valid, pos, 0)  # padding reads the block's first cell, then counts for nothing
    cells = (r0[:, None] + pos // widths) * grid_w + c0[:, None] + pos % widths
    unit = _unit(flat[cells.ravel()]).reshape(len(r0), k, -1)
    unit *= valid[:, :, None]
    return unit.sum(axis=1)


@dataclass
class BoxVerdicts:
    """Per box (n boxes, C classes with positives): the scores of the proposed and the best class, and the verdict.

    A score is NaN where it does not exist: proposed_score for a proposed class without positive prototypes (or
    not among the classes given), best_score when no class has any; best_class is then -1.
    """

    proposed_class: np.ndarray  # (n,) int64: the detector's class ids
    proposed_score: np.ndarray  # (n,) float32, NaN = the proposed class has no prototypes
    best_class: np.ndarray  # (n,) int64, -1 = no class has prototypes
    best_score: np.ndarray  # (n,) float32, NaN when best_class is -1
    relabel: np.ndarray  # (n,) bool: best_class replaces the proposed class
    class_ids: np.ndarray  # (C,) int64: the columns of scores
    scores: np.ndarray  # (n, C) float32: every class's score

    @property
    def final_class(self) -> np.ndarray:
        """(n,) class ids after verification: best_class where relabelled, else the proposed class."""
        return np.where(self.relabel, self.best_class, self.proposed_class)


def class_scores(
    vectors: np.ndarray, prototypes: Sequence[ClassPrototypes], negative_weight: float = DEFAULT_NEGATIVE_WEIGHT
) -> tuple[np.ndarray, np.ndarray]:
    """(class_ids (C,), scores (n, C)) for classes with positives: score_grid's score of a cell, for each vector.

    Max cosine to the positives minus negative_weight * max(0, max cosine to the negatives). Always with the
    negatives: score_grid skips them only where no class reaches its threshold, and there the score matters not.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors = _unit(vectors.reshape(-1, vectors.shape[-1]))
    dim = vectors.shape[1]
    classes = [c for c in prototypes if len(c.positives)]
    blocks, pos_starts, neg_starts = [], [], []
    width = 0
    for c in classes:
        for kind, arr in (("positive", c.positives), ("negative", c.negatives)):
            if arr.size and arr.shape[-1] != dim:
                raise IncompatibleEmbeddings(
                    f"class {c.class_id}: {kind} prototypes have dim {arr.shape[-1]} but the boxes' vectors have "
                    f"{dim}; they come from another model: rebuild the examples with the grid's model"
                )
        pos = _unit(c.positives.reshape(-1, dim))
        # A class without negatives gets one zero column: cosine 0, no penalty after the clamp (as score_grid).
        neg = _unit(c.negatives.reshape(-1, dim)) if c.negatives.size else np.zeros((1, dim), dtype=np.float32)
        pos_starts.append(width)
        neg_starts.append(width + len(pos))
        blocks += [pos, neg]
        width += len(pos) + len(neg)
    if not classes:
        return np.zeros(0, dtype=np.int64), np.zeros((len(vectors), 0), dtype=np.float32)
    # One matmul against every prototype of every class (a few small ones would each pay the BLAS call and
    # use it poorly), then per-class maxima over column runs: positives and negatives alternate class by class.
    sims = vectors @ np.concatenate(blocks).T
    starts = np.ravel(np.column_stack([pos_starts, neg_starts]))
    maxima = np.maximum.reduceat(sims, starts, axis=1) if len(vectors) else np.zeros((0, len(starts)), np.float32)
    scores = maxima[:, 0::2] - np.float32(negative_weight) * np.maximum(maxima[:, 1::2], 0)
    return np.asarray([c.class_id for c in classes], dtype=np.int64), scores.astype(np.float32)


def verify_boxes(
    vectors: np.ndarray,
    proposed_class_ids: np.ndarray,
    prototypes: Sequence[ClassPrototypes],
    *,
    negative_weight: float = DEFAULT_NEGATIVE_WEIGHT,
    relabel_margin: float = DEFAULT_RELABEL_MARGIN,
    min_score: float = DEFAULT_MIN_SCORE,
) -> BoxVerdicts:
    """Score each box's vector against every class's prototypes and decide whether to relabel it.

    relabel: the best class is not the proposed one, scores at least min_score, and beats the proposed class by
    at least relabel_margin; a proposed class without prototypes (score NaN) yields to a class reaching min_score.
    """
    proposed = np.asarray(proposed_class_ids, dtype=np.int64).reshape(-1)
    n = len(proposed)
    if len(vectors) != n:
        raise ValueError(f"{len(vectors)} vectors for {n} proposed classes")
    class_ids, scores = class_scores(vectors, prototypes, negative_weight)
    if not len(class_ids) or not n:
        nan = np.full(n, np.nan, dtype=np.float32)
        return BoxVerdicts(proposed, nan, np.full(n, -1, dtype=np.int64), nan.copy(), np.zeros(n, dtype=bool),
                           class_ids, np.zeros((n, len(class_ids)), dtype=np.float32))
    best = scores.argmax(axis=1)
    best_class, best_score = class_ids[best], scores[np.arange(n), best]
    column = {int(c): j for j, c in enumerate(class_ids)}
    col = np.array([column.get(int(p), -1) for p in proposed], dtype=np.int64)
    known = col >= 0
    proposed_score = np.full(n, np.nan, dtype=np.float32)
    proposed_score[known] = scores[np.flatnonzero(known), col[known]]
    # Where the proposed class has no score, the margin cannot be measured: min_score alone decides.
    beats = ~known | (best_score - np.where(known, proposed_score, 0) >= relabel_margin)
    relabel = (best_class != proposed) & (best_score >= min_score) & beats
    return BoxVerdicts(proposed, proposed_score, best_class.astype(np.int64), best_score.astype(np.float32),
                       relabel, class_ids, scores)
