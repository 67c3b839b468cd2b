"""The probe on frozen tokens (issue 12, section 4): on a synthetic grid with planted objects and look-alikes that
prototype search cannot tell apart from the objects (they sit closer to the class prototype than the objects'
own variety does), a logistic probe and a kNN scorer trained on reviewed tokens find every object and no look-alike,
and their candidates land where the objects are."""

import numpy as np
import pytest

from gpu_tasks.inference.grid import GridMeta
from gpu_tasks.inference.probe import BACKGROUND, score_grid_probe, train_knn, train_logistic
from gpu_tasks.inference.prototypes import ClassPrototypes
from gpu_tasks.inference.search import SearchParams, find_candidates, score_grid

D, H, W, CELL_PX = 32, 64, 64, 14.0
KILN = 7


def _axes(rng):
    q, _ = np.linalg.qr(rng.normal(size=(D, 8)))
    return q[:, 0], q[:, 1], q[:, 2]  # the class direction, its natural variety, the look-alikes' difference


def _cover():
    """Five kinds of ground (fields, roads, water ...): directions apart from the class's."""
    q, _ = np.linalg.qr(np.random.default_rng(100).normal(size=(D, 8)))
    return q[:, 3:8].T


def _object(rng, e, u, n):
    """Objects: the class direction with a wide natural variety along u (up to 45 degrees)."""
    return e + rng.uniform(-1, 1, (n, 1)) * u[None, :] + rng.normal(0, 0.05, (n, D))


def _lookalike(rng, e, v, n):
    """Look-alikes: the class direction and a difference along v (27 degrees off: nearer the class than the objects'
    own variety reaches, so no similarity threshold separates them)."""
    return e + 0.5 * v[None, :] + rng.normal(0, 0.05, (n, D))


def _background(rng, n):
    """Ground: one of the kinds of cover with a mixture of another and some noise."""
    cover = _cover()
    a, b = rng.integers(0, len(cover), n), rng.integers(0, len(cover), n)
    return cover[a] + rng.uniform(0, 0.5, (n, 1)) * cover[b] + rng.normal(0, 0.05, (n, D))


def _scene(seed=0):
    """A grid of background with 6 planted 3x3-cell objects and 6 look-alikes; their cell boxes."""
    rng = np.random.default_rng(seed)
    e, u, v = _axes(np.random.default_rng(100))
    grid = _background(rng, H * W).reshape(H, W, D).astype(np.float32)
    objects, lookalikes = [], []
    for k in range(12):
        r, c = 5 + (k // 4) * 20, 5 + (k % 4) * 15
        make = _object if k % 2 == 0 else _lookalike
        grid[r:r + 3, c:c + 3] = make(rng, e, u if k % 2 == 0 else v, 9).reshape(3, 3, D)
        (objects if k % 2 == 0 else lookalikes).append((c, r, c + 3, r + 3))
    return grid, objects, lookalikes


def _reviewed(seed=1):
    """What reviewers decided on other ground: accepted objects, rejected look-alikes, and background."""
    rng = np.random.default_rng(seed)
    e, u, v = _axes(np.random.default_rng(100))
    tokens = np.concatenate([_object(rng, e, u, 300), _lookalike(rng, e, v, 300), _background(rng, 2000)])
    labels = np.array([KILN] * 300 + [BACKGROUND] * 2300)
    return tokens.astype(np.float32), labels


def _meta():
    return GridMeta(grid_h=H, grid_w=W, dim=D, cell_px=CELL_PX, scale=1.0, tile_px=224, margin_patches=0,
                    scene_width_px=int(W * CELL_PX), scene_height_px=int(H * CELL_PX))


def _hits(candidates, boxes_cells):
    """How many of the boxes (in cells) a candidate's centre falls in."""
    centres = [((c.box_px[0] + c.box_px[2]) / 2 / CELL_PX, (c.box_px[1] + c.box_px[3]) / 2 / CELL_PX)
               for c in candidates]
    return sum(any(x0 <= cx < x1 and y0 <= cy < y1 for cx, cy in centres) for x0, y0, x1, y1 in boxes_cells)


def test_prototypes_alone_cannot_separate_the_lookalikes():
    grid, objects, lookalikes = _scene()
    tokens, labels = _reviewed()
    positives = tokens[labels == KILN]
    prototype = positives.mean(axis=0)
    prototype /= np.linalg.norm(prototype)
    # The threshold that keeps every object finds every look-alike too: they are nearer the prototype.
    unit = grid / np.linalg.norm(grid, axis=-1, keepdims=True)
    sims = unit @ prototype
    lowest_object = min(sims[y0:y1, x0:x1].min() for x0, y0, x1, y1 in objects)
    lowest_lookalike = min(sims[y0:y1, x0:x1].min() for x0, y0, x1, y1 in lookalikes)
    assert lowest_lookalike > lowest_object
    params = SearchParams(default_threshold=float(lowest_object) - 1e-3, split_prominence=None)
    best_class, best_score = score_grid(grid, [ClassPrototypes(KILN, prototype[None, :])], params)
    candidates = find_candidates(best_class, best_score, _meta(), params)
    assert _hits(candidates, objects) == len(objects)
    assert _hits(candidates, lookalikes) == len(lookalikes)


@pytest.mark.parametrize("train", [train_logistic, train_knn], ids=["logistic", "knn"])
def test_the_probe_finds_every_object_and_no_lookalike(train):
    grid, objects, lookalikes = _scene()
    probe = train(*_reviewed())
    assert probe.class_ids == [KILN]
    timings = {}
    best_class, best_score = score_grid_probe(grid, probe, timings=timings)
    assert set(np.unique(best_class)) <= {-1, KILN} and "probe_score" in timings
    params = SearchParams(split_prominence=None)
    candidates = find_candidates(best_class, best_score, _meta(), params)
    assert _hits(candidates, objects) == len(objects)
    assert _hits(candidates, lookalikes) == 0
    assert len(candidates) == len(objects)
    # Each candidate's box is its object's 3 x 3 cells, in native pixels.
    boxes = sorted(tuple(round(v / CELL_PX) for v in c.box_px) for c in candidates)
    assert boxes == sorted(objects)


def test_training_needs_objects_and_background():
    tokens, labels = _reviewed()
    with pytest.raises(ValueError, match="no background"):
        train_logistic(tokens[labels == KILN], labels[labels == KILN])
    with pytest.raises(ValueError, match="no object"):
        train_knn(tokens[labels == BACKGROUND], labels[labels == BACKGROUND])
    probe = train_logistic(tokens, labels)
    with pytest.raises(ValueError, match="dimensional"):
        score_grid_probe(np.zeros((2, 2, D + 1), dtype=np.float32), probe)
