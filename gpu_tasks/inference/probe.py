"""A probe on frozen patch tokens: a logistic (softmax) head or a kNN scorer trained from reviewed tokens (accepted =
the object's class, rejected and reviewed background = background), scoring a cached grid cell by cell.

Its (best_class, best_score) grids feed search.find_candidates like prototype search's do. Tokens are compared as
unit vectors (the cosine space prototype search works in). Plain numpy and torch on the CPU: seconds to train.
The kNN scorer is a cascade: its own logistic head rules out the cells no vote could make objects, the vote (exactly
as on every cell) decides the rest; a 10k x 10k scene's grid scores in under a second instead of half a minute.
"""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

BACKGROUND = -1  # the label of tokens that are no object


@dataclass
class Probe:
    """A trained probe: `class_ids[i]` is column i of its scores; the last column is the background."""

    kind: str  # "logistic" or "knn"
    class_ids: list[int]
    dim: int
    weight: np.ndarray | None = None  # (dim, K + 1): logistic, or a kNN probe's first stage (None: no cascade)
    bias: np.ndarray | None = None  # (K + 1,), with weight
    bank: np.ndarray | None = None  # (n, dim) unit tokens, knn
    bank_labels: np.ndarray | None = None  # (n,) column index, knn
    k: int = 20
    stats: dict = field(default_factory=dict)


def _unit(tokens: np.ndarray) -> np.ndarray:
    x = np.asarray(tokens, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _columns(labels: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Class ids in column order and each token's column (background last)."""
    class_ids = sorted(int(c) for c in np.unique(labels) if c != BACKGROUND)
    if not class_ids:
        raise ValueError("no object tokens: accept or draw some objects before training a probe")
    if not (labels == BACKGROUND).any():
        raise ValueError("no background tokens: reject some proposals or mark an accuracy area before training")
    column = {c: i for i, c in enumerate(class_ids)}
    return class_ids, np.array([column.get(int(c), len(class_ids)) for c in labels], dtype=np.int64)


def train_logistic(tokens: np.ndarray, labels: np.ndarray, l2: float = 1e-3, max_iter: int = 200,
                   max_per_column: int = 4000, seed: int = 0) -> Probe:
    """A softmax head over the object classes and the background, class-balanced, by full-batch L-BFGS.

    At most max_per_column tokens of each column (a seeded sample): each L-BFGS step costs a pass over every token,
    and 20,000 background tokens said little more than 4,000 (8.8 s -> ~3 s on the 26,000-token benchmark).
    """
    import torch

    t0 = time.perf_counter()
    class_ids, y = _columns(np.asarray(labels))
    if max_per_column and np.bincount(y).max() > max_per_column:
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:max_per_column]
                                       for c in range(len(class_ids) + 1)]))
        tokens, y = np.asarray(tokens)[keep], y[keep]
    x = torch.from_numpy(_unit(tokens))
    target = torch.from_numpy(y)
    n_cols = len(class_ids) + 1
    counts = torch.bincount(target, minlength=n_cols).clamp_min(1).float()
    balance = counts.sum() / (n_cols * counts)  # every column weighs the same in the loss, however many tokens
    # Unit tokens have small logits: a scale lets the head reach confident probabilities with modest weights.
    w = torch.zeros((x.shape[1], n_cols), requires_grad=True)
    b = torch.zeros(n_cols, requires_grad=True)
    loss_fn = torch.nn.CrossEntropyLoss(weight=balance)
    optimizer = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(x @ w * 10.0 + b, target) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
        loss = closure().item()  # the loss the head ends with (step returns the first evaluation's)
    return Probe(kind="logistic", class_ids=class_ids, dim=x.shape[1], weight=(w.detach() * 10.0).numpy(),
                 bias=b.detach().numpy(),
                 stats={"tokens": int(len(y)), "per_column": counts.int().tolist(), "loss": loss,
                        "seconds": time.perf_counter() - t0})


def train_knn(tokens: np.ndarray, labels: np.ndarray, k: int = 20, max_bank: int = 4096, seed: int = 0,
              cascade: bool = True) -> Probe:
    """A bank of reviewed tokens (at most max_bank, sampled evenly per column) for a k-nearest-neighbour vote, and a
    logistic head on the same bank as the cascade's first stage (see score_grid_probe)."""
    # The vote costs 2 * dim * bank flop a cell it runs on: at 4,096 tokens a 10k x 10k scene scores in under a
    # second (benchmarks/loop.py); a bank of 26,000 took twice that, and training its first stage 8x longer.
    t0 = time.perf_counter()
    class_ids, y = _columns(np.asarray(labels))
    x = _unit(tokens)
    if len(y) > max_bank:
        rng = np.random.default_rng(seed)
        per = max_bank // (len(class_ids) + 1)
        keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in range(len(class_ids) + 1)])
        x, y = x[keep], y[keep]
    weight = bias = None
    if cascade:
        # Trained on the bank, not on every token: it is what the vote sees, balanced, and a fraction of the time.
        head = train_logistic(x, np.asarray([*class_ids, BACKGROUND])[y])
        weight, bias = head.weight, head.bias
    return Probe(kind="knn", class_ids=class_ids, dim=x.shape[1], bank=np.ascontiguousarray(x), bank_labels=y,
                 k=min(k, len(y)), weight=weight, bias=bias,
                 stats={"tokens": int(len(y)), "seconds": time.perf_counter() - t0})


def _probabilities(probe: Probe, x, inv_norm):
    """(n, K + 1) softmax of the logistic head (a logistic probe's, or a kNN probe's first stage) on tokens x whose
    lengths' reciprocals are inv_norm: the logits are scaled, not the tokens (n x (K + 1) products, not n x d)."""
    import torch

    logits = (x @ torch.from_numpy(probe.weight)).mul_(inv_norm[:, None]).add_(torch.from_numpy(probe.bias))
    return torch.softmax(logits, dim=1)


def _knn_votes(probe: Probe, x, rows: int):
    """(n, K + 1) similarity-weighted vote of each unit token's k nearest bank tokens, `rows` tokens at a time."""
    import torch

    bank_t = torch.from_numpy(probe.bank).T
    labels = torch.from_numpy(probe.bank_labels)
    votes = torch.zeros((x.shape[0], len(probe.class_ids) + 1))
    for start in range(0, x.shape[0], rows):
        top, idx = (x[start:start + rows] @ bank_t).topk(probe.k, dim=1)
        votes[start:start + rows].scatter_add_(1, labels[idx], top.clamp_min(0))
    return votes / votes.sum(dim=1, keepdim=True).clamp_min(1e-12)


def score_grid_probe(tokens: np.ndarray, probe: Probe, threshold: float = 0.5, chunk_cells: int = 65_536,
                     timings: dict | None = None, gate: float = 0.2,
                     counts: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(best_class, best_score) per cell of an (h, w, d) grid: the likeliest object class and its score, the class
    -1 where the background wins or the score is below threshold (as search.score_grid answers).

    A kNN probe with a first stage scores as a cascade: the kNN vote runs only on cells whose likeliest object
    reaches `gate` x the threshold on the first stage's head; the others score as background (class -1, score 0).
    gate=0 sends every cell to the vote. counts (when given) receives "cells" and "knn_cells" (cells voted on)."""
    import torch

    t0 = time.perf_counter()
    h, w, d = tokens.shape
    if d != probe.dim:
        raise ValueError(f"the probe was trained on {probe.dim}-dimensional tokens but the grid has {d}: "
                         "train it again on this model's grids")
    ids = torch.tensor([*probe.class_ids, -1], dtype=torch.int32)
    best_class = np.full(h * w, -1, dtype=np.int32)
    best_score = np.zeros(h * w, dtype=np.float32)
    flat = tokens.reshape(h * w, d)
    knn = probe.kind == "knn"
    cascade = knn and probe.weight is not None and gate > 0
    # A cell can only win with a score >= 1 / (K + 1) (it must reach the background's share), whatever the threshold.
    # The gate, measured on benchmarks/loop.py's grid (the vote on every cell against the head): the cells the vote
    # makes objects had a head probability of 0.15 or more (0.11 for a vote share of 0.25); 0.2 x 0.5 keeps them all
    # with room and sends 1.1% of the cells to the vote (0.1 x: 8.7%, 3.2 s; 0.4 x lost 5 of 16 cells).
    level = gate * max(threshold, 1.0 / (len(probe.class_ids) + 1))
    # The vote's (rows, bank) similarities in blocks of ~64 MB: the whole chunk's could take gigabytes.
    knn_rows = max(1, (1 << 24) // max(1, len(probe.bank_labels))) if knn else 0
    voted = 0
    chunk = max(1, chunk_cells)
    x_buf = torch.empty((min(chunk, h * w), d), dtype=torch.float32)
    with torch.inference_mode(), warnings.catch_warnings():
        # The memmap is read-only and torch warns about wrapping it; nothing here writes to it.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for start in range(0, h * w, chunk):
            stop = min(h * w, start + chunk)
            x = x_buf[:stop - start]
            # torch's float16 -> float32 cast into a reused buffer: ~10x faster than numpy's (as search.score_grid).
            # The matmuls stay float32: float16 and bfloat16 ones ran at 0.1 GFLOP/s on this AVX2 CPU (float32: ~30).
            x.copy_(torch.from_numpy(np.asarray(flat[start:stop])))
            inv_norm = torch.linalg.vector_norm(x, dim=1).clamp_min_(1e-12).reciprocal_()
            if not knn:
                scores = _probabilities(probe, x, inv_norm)
                rows = slice(start, stop)
            elif cascade:
                # The first stage is 2*d*(K+1) flop a cell against the vote's 2*d*bank: the vote runs on few cells.
                reach = (_probabilities(probe, x, inv_norm)[:, :-1].amax(dim=1) >= level).nonzero().squeeze(1)
                scores = _knn_votes(probe, x.index_select(0, reach).mul_(inv_norm[reach, None]), knn_rows)
                rows = reach.numpy() + start
            else:
                scores = _knn_votes(probe, x.mul_(inv_norm[:, None]), knn_rows)
                rows = slice(start, stop)
            voted += len(scores) if knn else 0
            score, idx = scores[:, :-1].max(dim=1)
            wins = (score >= scores[:, -1]) & (score >= threshold)
            best_score[rows] = score.numpy()
            best_class[rows] = torch.where(wins, ids[idx], torch.full_like(idx, -1, dtype=torch.int32)).numpy()
    if timings is not None:
        timings["probe_score"] = timings.get("probe_score", 0.0) + time.perf_counter() - t0
    if counts is not None:
        counts.update(cells=h * w, knn_cells=voted)
    return best_class.reshape(h, w), best_score.reshape(h, w)
