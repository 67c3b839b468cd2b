"""The probe on frozen tokens (issue 12, section 4): on a synthetic grid with planted objects and look-alikes that
prototype search cannot tell apart from the objects (they sit closer to the class prototype than the objects'
own variety does), a logistic probe and a kNN scorer trained on reviewed tokens find every object and no look-alike,
and their candidates land where the objects are. The kNN scorer's cascade (a logistic first stage, the vote on the
cells it passes) answers as the vote on every cell does wherever the vote runs."""

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


@pytest.mark.parametrize("train, gate", [(train_logistic, 0.2), (train_knn, 0.2), (train_knn, 0.0)],
                         ids=["logistic", "knn-cascade", "knn-every-cell"])
def test_the_probe_finds_every_object_and_no_lookalike(train, gate):
    grid, objects, lookalikes = _scene()
    probe = train(*_reviewed())
    assert probe.class_ids == [KILN]
    timings = {}
    best_class, best_score = score_grid_probe(grid, probe, timings=timings, gate=gate)
    assert set(np.unique(best_class)) <= {-1, KILN} and "probe_score" in timings
    params = SearchParams(split_prominence=None)
    candidates = find_candidates(best_class, best_score, _meta(), params)
    assert _hits(candidates, objects) == len(objects)
    assert _hits(candidates, lookalikes) == 0
    assert len(candidates) == len(objects)
    # Each candidate's box is its object's 3 x 3 cells, in native pixels.
    boxes = sorted(tuple(round(v / CELL_PX) for v in c.box_px) for c in candidates)
    assert boxes == sorted(objects)


def _first_stage_reaches(grid, probe, level):
    """Cells whose likeliest object reaches `level` on the kNN probe's logistic head (computed here independently)."""
    unit = grid / np.linalg.norm(grid, axis=-1, keepdims=True)
    logits = unit @ probe.weight + probe.bias
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p[..., :-1].max(axis=-1) >= level


def _inside(mask, boxes):
    return sum(int(mask[y0:y1, x0:x1].sum()) for x0, y0, x1, y1 in boxes)


@pytest.mark.parametrize("gate", [0.1, 0.2, 1.0])
def test_the_cascade_changes_nothing_where_the_vote_runs(gate):
    grid, objects, lookalikes = _scene()
    probe = train_knn(*_reviewed())
    assert probe.weight is not None  # the first stage comes with the bank
    exact_class, exact_score = score_grid_probe(grid, probe, gate=0.0)
    counts = {}
    best_class, best_score = score_grid_probe(grid, probe, gate=gate, counts=counts)
    # One class: a cell wins only with half the vote or more, so the gate is a fraction of max(threshold, 0.5).
    reach = _first_stage_reaches(grid, probe, gate * 0.5)
    assert counts == {"cells": H * W, "knn_cells": int(reach.sum())}
    assert 0 < reach.sum() < H * W / 10  # the vote runs on few cells
    np.testing.assert_array_equal(best_class[reach], exact_class[reach])
    np.testing.assert_allclose(best_score[reach], exact_score[reach], atol=1e-6)
    # Cells the first stage rules out score as background.
    assert (best_class[~reach] == -1).all() and (best_score[~reach] == 0).all()
    if gate <= 0.2:
        # Every object cell of the vote on every cell reaches the vote, and the cascade answers the same.
        np.testing.assert_array_equal(best_class, exact_class)
        assert _inside(exact_class == KILN, objects) == 9 * len(objects)
    if gate == 0.1:
        # Some look-alikes pass the first stage: the vote is what turns them down.
        assert _inside(reach, lookalikes) > 0 and _inside(best_class >= 0, lookalikes) == 0


def test_the_cascade_answers_alike_by_chunks_from_a_float16_memmap(tmp_path):
    grid, _, _ = _scene()
    probe = train_knn(*_reviewed())
    np.save(tmp_path / "grid.npy", grid.astype(np.float16))
    on_disk = np.load(tmp_path / "grid.npy", mmap_mode="r")
    whole = score_grid_probe(grid.astype(np.float16), probe, gate=0.05)
    counts = {}
    chunked = score_grid_probe(on_disk, probe, gate=0.05, chunk_cells=1000, counts=counts)
    assert counts["knn_cells"] > 0
    np.testing.assert_array_equal(chunked[0], whole[0])
    np.testing.assert_allclose(chunked[1], whole[1], atol=1e-6)


def test_a_knn_probe_without_a_first_stage_votes_on_every_cell():
    grid, _, _ = _scene()
    tokens, labels = _reviewed()
    plain = train_knn(tokens, labels, cascade=False)
    assert plain.weight is None
    counts = {}
    best_class, best_score = score_grid_probe(grid, plain, counts=counts)
    assert counts["knn_cells"] == H * W
    exact_class, exact_score = score_grid_probe(grid, train_knn(tokens, labels), gate=0.0)
    np.testing.assert_array_equal(best_class, exact_class)
    np.testing.assert_allclose(best_score, exact_score, atol=1e-6)


def test_the_bank_keeps_as_many_tokens_of_every_column():
    tokens, labels = _reviewed()
    probe = train_knn(tokens, labels, max_bank=400)
    assert len(probe.bank) == 400 and np.bincount(probe.bank_labels).tolist() == [200, 200]
    assert probe.stats["tokens"] == 400
    assert len(train_knn(tokens, labels).bank) == len(labels)  # 2,600 tokens: under the default bank, all kept


def test_training_needs_objects_and_background():
    tokens, labels = _reviewed()
    with pytest.raises(ValueError, match="no background"):
        train_logistic(tokens[labels == KILN], labels[labels == KILN])
    with pytest.raises(ValueError, match="no object"):
        train_knn(tokens[labels == BACKGROUND], labels[labels == BACKGROUND])
    probe = train_logistic(tokens, labels)
    with pytest.raises(ValueError, match="dimensional"):
        score_grid_probe(np.zeros((2, 2, D + 1), dtype=np.float32), probe)
