"""A probe on frozen patch tokens: a logistic (softmax) head or a kNN scorer trained from reviewed tokens (accepted =
the object's class, rejected and reviewed background = background), scoring a cached grid cell by cell.

Its (best_class, best_score) grids feed search.find_candidates like prototype search's do. Tokens are compared as
unit vectors (the cosine space prototype search works in). Plain numpy and torch on the CPU: seconds to train.
"""

import time
from dataclasses import dataclass, field

import numpy as np

BACKGROUND = -1  # the label of tokens that are no object


@dataclass
class Probe:
    """A trained probe: `class_ids[i]` is column i of its scores; the last column is the background."""

    kind: str  # "logistic" or "knn"
    class_ids: list[int]
    dim: int
    weight: np.ndarray | None = None  # (dim, K + 1), logistic
    bias: np.ndarray | None = None  # (K + 1,), logistic
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


def train_logistic(tokens: np.ndarray, labels: np.ndarray, l2: float = 1e-3, max_iter: int = 200) -> Probe:
    """A softmax head over the object classes and the background, class-balanced, by full-batch L-BFGS."""
    import torch

    t0 = time.perf_counter()
    class_ids, y = _columns(np.asarray(labels))
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


def train_knn(tokens: np.ndarray, labels: np.ndarray, k: int = 20, max_bank: int = 50_000, seed: int = 0) -> Probe:
    """A bank of reviewed tokens (at most max_bank, sampled evenly per column) for a k-nearest-neighbour vote."""
    t0 = time.perf_counter()
    class_ids, y = _columns(np.asarray(labels))
    x = _unit(tokens)
    if len(y) > max_bank:
        rng = np.random.default_rng(seed)
        per = max_bank // (len(class_ids) + 1)
        keep = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in range(len(class_ids) + 1)])
        x, y = x[keep], y[keep]
    return Probe(kind="knn", class_ids=class_ids, dim=x.shape[1], bank=np.ascontiguousarray(x), bank_labels=y,
                 k=min(k, len(y)), stats={"tokens": int(len(y)), "seconds": time.perf_counter() - t0})


def _column_scores(probe: Probe, x):
    """(n, K + 1) scores of unit tokens x (torch): probabilities, or the neighbours' similarity-weighted vote."""
    import torch

    if probe.kind == "logistic":
        logits = x @ torch.from_numpy(probe.weight) + torch.from_numpy(probe.bias)
        return torch.softmax(logits, dim=1)
    sims = x @ torch.from_numpy(probe.bank).T
    top, idx = sims.topk(probe.k, dim=1)
    votes = torch.zeros((x.shape[0], len(probe.class_ids) + 1))
    votes.scatter_add_(1, torch.from_numpy(probe.bank_labels)[idx], top.clamp_min(0))
    return votes / votes.sum(dim=1, keepdim=True).clamp_min(1e-12)


def score_grid_probe(tokens: np.ndarray, probe: Probe, threshold: float = 0.5, chunk_cells: int = 65_536,
                     timings: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(best_class, best_score) per cell of an (h, w, d) grid: the likeliest object class and its score, the class
    -1 where the background wins or the score is below threshold (as search.score_grid answers)."""
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
    with torch.inference_mode():
        for start in range(0, h * w, chunk_cells):
            stop = min(h * w, start + chunk_cells)
            x = torch.from_numpy(np.asarray(flat[start:stop], dtype=np.float32))
            x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
            scores = _column_scores(probe, x)
            objects = scores[:, :-1]
            score, idx = objects.max(dim=1)
            wins = (score >= scores[:, -1]) & (score >= threshold)
            best_score[start:stop] = score.numpy()
            best_class[start:stop] = torch.where(wins, ids[idx], torch.full_like(idx, -1, dtype=torch.int32)).numpy()
    if timings is not None:
        timings["probe_score"] = timings.get("probe_score", 0.0) + time.perf_counter() - t0
    return best_class.reshape(h, w), best_score.reshape(h, w)
