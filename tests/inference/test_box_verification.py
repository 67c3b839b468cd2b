"""Box verification (issue 12, section 3): box vectors pooled from the cached grid as an example polygon pools, class
scores equal to search scores, and relabelling only where another class clearly wins."""

import numpy as np
import pytest

from gpu_tasks.inference import box_verification
from gpu_tasks.inference.box_verification import box_vectors, class_scores, verify_boxes
from gpu_tasks.inference.errors import IncompatibleEmbeddings
from gpu_tasks.inference.grid import GridMeta, open_grid
from gpu_tasks.inference.prototypes import ClassPrototypes, mean_direction, prototype_from_polygon
from gpu_tasks.inference.scene_embedding import embed_scene
from gpu_tasks.inference.search import SearchParams, score_grid

from .conftest import PATCH, array_reader

RED_ID, BLUE_ID, GREY_ID = 3, 9, 4


def _meta(h, w, dim, cell=14.0):
    return GridMeta(grid_h=h, grid_w=w, dim=dim, cell_px=cell, scale=1.0, tile_px=140, margin_patches=2,
                    scene_width_px=int(w * cell), scene_height_px=int(h * cell))


def _random_grid(tmp_path, h=9, w=11, dim=16, seed=0):
    """An (h, w, dim) float16 memmap as the grid store keeps it, of random tokens with varied norms."""
    rng = np.random.default_rng(seed)
    grid = np.lib.format.open_memmap(tmp_path / "grid.npy", mode="w+", dtype=np.float16, shape=(h, w, dim))
    grid[:] = rng.normal(size=(h, w, dim)) * rng.uniform(0.5, 5, size=(h, w, 1))
    grid.flush()
    return np.load(tmp_path / "grid.npy", mmap_mode="r"), _meta(h, w, dim)


def reference_box_vectors(tokens, meta, boxes_px):
    """visual_search._box_vectors as it was: one box at a time."""
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


BOXES = np.array([
    (0, 0, 154, 126),  # the whole grid
    (15, 30, 60, 75),  # a few cells
    (22, 22, 27, 27),  # smaller than a cell, no cell centre inside: the cell under its centre
    (3.5, 100.2, 9.9, 120.0),  # a sliver at the left edge
    (140, 100, 170, 140),  # at the grid's bottom-right edge, running past it
    (160, 130, 180, 150),  # wholly outside: the nearest cell
    (7, 7, 21, 21),  # cell centres on its corners only (not inside): the cell under its centre
    (28, 0, 42, 14),  # exactly one cell
], dtype=np.float64)


def test_box_vectors_equal_the_per_box_reference(tmp_path):
    grid, meta = _random_grid(tmp_path)
    got = box_vectors(grid, meta, BOXES)
    assert got.dtype == np.float32 and got.shape == (len(BOXES), meta.dim)
    np.testing.assert_allclose(got, reference_box_vectors(grid, meta, BOXES), atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert box_vectors(grid, meta, np.zeros((0, 4))).shape == (0, meta.dim)


def test_box_vectors_in_small_chunks_and_rows_equal_the_reference(tmp_path, monkeypatch):
    # A chunk of 6 cells: several boxes per chunk, boxes alone in one, and the whole-grid box read in row blocks.
    monkeypatch.setattr(box_verification, "CHUNK_CELLS", 6)
    grid, meta = _random_grid(tmp_path)
    rng = np.random.default_rng(3)
    xy = rng.uniform(-10, 160, size=(200, 2))
    random_boxes = np.concatenate([xy, xy + rng.uniform(1, 60, size=(200, 2))], axis=1)
    boxes = np.concatenate([BOXES, random_boxes])
    np.testing.assert_allclose(box_vectors(grid, meta, boxes), reference_box_vectors(grid, meta, boxes), atol=2e-6)


def _axis(dim, *weights):
    v = np.zeros(dim, dtype=np.float32)
    v[: len(weights)] = weights
    return v / np.linalg.norm(v)


DIM = 8
E1, E2, E3 = np.eye(DIM, dtype=np.float32)[:3]
PROTOS = [
    ClassPrototypes(1, E1[None]),
    ClassPrototypes(2, E2[None]),
    ClassPrototypes(5, np.zeros((0, DIM), dtype=np.float32)),  # a class without examples yet
]


def test_wrong_class_relabelled_right_class_kept_margin_case_kept():
    vectors = np.stack([
        _axis(DIM, 0.1, 1.0),  # looks like class 2, proposed as 1: relabelled
        _axis(DIM, 1.0, 0.1),  # class 1, proposed as 1: kept
        _axis(DIM, 0.60, 0.63, 0.49),  # class 2 wins by only ~0.03 < 0.05: the detector's class stays
    ])
    v = verify_boxes(vectors, [1, 1, 1], PROTOS)
    assert v.relabel.tolist() == [True, False, False]
    assert v.best_class.tolist() == [2, 1, 2]
    assert v.final_class.tolist() == [2, 1, 1]
    assert v.class_ids.tolist() == [1, 2] and v.scores.shape == (3, 2)
    np.testing.assert_allclose(v.proposed_score, vectors[:, 0], atol=1e-6)
    np.testing.assert_allclose(v.best_score, vectors[:, :2].max(axis=1), atol=1e-6)
    # The same margin case with a smaller margin is relabelled; a higher min_score holds every box.
    assert verify_boxes(vectors, [1, 1, 1], PROTOS, relabel_margin=0.02).relabel.tolist() == [True, False, True]
    assert not verify_boxes(vectors, [1, 1, 1], PROTOS, min_score=0.999).relabel.any()


def test_class_without_prototypes_scores_nan_and_yields_only_to_a_confident_class():
    vectors = np.stack([
        _axis(DIM, 0.1, 1.0),  # clearly class 2
        _axis(DIM, 0.3, 0.3, 1.0),  # like nothing known: best score ~0.29 < 0.5
    ])
    v = verify_boxes(vectors, [5, 5], PROTOS)
    assert np.isnan(v.proposed_score).all()
    assert v.relabel.tolist() == [True, False]
    assert v.final_class.tolist() == [2, 5]
    # A class not given at all is treated alike.
    v = verify_boxes(vectors, [7, 7], PROTOS)
    assert np.isnan(v.proposed_score).all() and v.relabel.tolist() == [True, False]
    # No class with prototypes: nothing to verify by.
    v = verify_boxes(vectors, [1, 2], PROTOS[2:])
    assert v.best_class.tolist() == [-1, -1] and np.isnan(v.best_score).all() and not v.relabel.any()
    assert v.final_class.tolist() == [1, 2] and v.scores.shape == (2, 0)
    empty = verify_boxes(np.zeros((0, DIM), np.float32), [], PROTOS)
    assert empty.relabel.shape == (0,) and empty.class_ids.tolist() == [1, 2]


def test_negatives_count_as_in_a_search():
    # Class 2's rejected example is exactly this box: 1.0 - 0.5 * 1.0 leaves class 2 at 0.5, under class 1's 0.7.
    box = _axis(DIM, 0.7, 1.0)
    protos = [ClassPrototypes(1, E1[None]), ClassPrototypes(2, E2[None], box[None])]
    v = verify_boxes(box[None], [2], protos)
    cos1, cos2 = box[0], box[1]
    np.testing.assert_allclose(v.scores[0], [cos1, cos2 - 0.5 * 1.0], atol=1e-6)
    assert v.best_class.tolist() == [1] and v.relabel.tolist() == [True]
    # An unrelated negative (cosine < 0) must not raise the score.
    protos = [ClassPrototypes(1, E1[None], -E1[None])]
    assert class_scores(E1[None], protos)[1][0, 0] == pytest.approx(1.0)
    with pytest.raises(IncompatibleEmbeddings):
        verify_boxes(np.ones((1, DIM + 1), np.float32), [1], protos)
    with pytest.raises(ValueError):
        verify_boxes(np.ones((2, DIM), np.float32), [1], protos)


def test_one_cell_box_scores_as_score_grid_scores_the_cell(tmp_path):
    grid, meta = _random_grid(tmp_path, h=6, w=7, dim=16, seed=5)
    rng = np.random.default_rng(9)
    tokens = np.asarray(grid, dtype=np.float32).reshape(-1, meta.dim)
    # Prototypes near some cells (positives) and near others (negatives), un-normalised like stored vectors.
    classes = [
        ClassPrototypes(c, tokens[rng.integers(0, len(tokens), 3)] + rng.normal(0, 0.5, (3, meta.dim)),
                        tokens[rng.integers(0, len(tokens), 2)].astype(np.float32))
        for c in (11, 12, 13)
    ]
    classes[2].negatives = np.zeros((0, meta.dim), dtype=np.float32)  # one class without negatives
    rows, cols = np.mgrid[0 : meta.grid_h, 0 : meta.grid_w]
    cell = meta.cell_px
    boxes = np.stack([cols * cell, rows * cell, (cols + 1) * cell, (rows + 1) * cell], axis=-1).reshape(-1, 4)
    vectors = box_vectors(grid, meta, boxes)
    verdicts = verify_boxes(vectors, np.full(len(boxes), 11), classes, negative_weight=0.7)
    # Threshold -1: every cell reaches it, so score_grid applies the negatives everywhere.
    params = SearchParams(default_threshold=-1.0, negative_weight=0.7, margin=-1.0)
    best_class, best_score = score_grid(grid, classes, params)
    np.testing.assert_allclose(verdicts.best_score, best_score.reshape(-1), atol=1e-5)
    assert verdicts.best_class.tolist() == best_class.reshape(-1).tolist()
    for j, c in enumerate(classes):
        _, own = score_grid(grid, [c], params)
        np.testing.assert_allclose(verdicts.scores[:, j], own.reshape(-1), atol=1e-5)


def _square(box):
    x0, y0, x1, y1 = box
    return [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]]


def test_planted_wrong_class_relabelled_on_an_embedded_scene(scene, colour_embedder, tmp_path):
    embed_scene(read_rgb=array_reader(scene.rgb), scene_w_px=scene.width, scene_h_px=scene.height,
                embedder=colour_embedder, out_dir=tmp_path / "grid", tile_px=10 * PATCH, margin_patches=2,
                preprocessing={"rgb_bands": [1, 2, 3], "stretch": "test"})
    meta, grid = open_grid(tmp_path / "grid")
    objects = scene.objects
    red = prototype_from_polygon(grid, meta, _square(objects["red_a"]))
    blue = prototype_from_polygon(grid, meta, _square(objects["blue"]))
    grey = prototype_from_polygon(grid, meta, _square((200, 300, 300, 400)))
    classes = [ClassPrototypes(RED_ID, red[None]), ClassPrototypes(BLUE_ID, blue[None]),
               ClassPrototypes(GREY_ID, grey[None])]
    # YOLO-like boxes a few px off the objects: the red square across the tile seam proposed as blue (wrong),
    # the blue one as blue (right), red_a as red.
    boxes = np.array([
        np.add(objects["red_seam"], (3, -2, -4, 2)),
        np.add(objects["blue"], (-2, 1, 3, -1)),
        np.add(objects["red_a"], (1, 1, -1, -1)),
    ], dtype=np.float64)
    v = verify_boxes(box_vectors(grid, meta, boxes), [BLUE_ID, BLUE_ID, RED_ID], classes)
    assert v.relabel.tolist() == [True, False, False]
    assert v.final_class.tolist() == [RED_ID, BLUE_ID, RED_ID]
    assert v.best_score[0] > 0.95 and v.proposed_score[0] < v.best_score[0] - 0.05
    assert (v.proposed_score[1:] > 0.95).all()
