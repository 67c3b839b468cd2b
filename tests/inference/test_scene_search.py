"""embed_scene + prototypes + search on a synthetic scene with a context-free colour embedder."""

import cv2
import numpy as np
import pytest

from gpu_tasks.inference.errors import Cancelled, IncompatibleEmbeddings
from gpu_tasks.inference.grid import is_complete, open_grid
from gpu_tasks.inference.prototypes import ClassPrototypes, polygon_patch_mask, prototype_from_polygon
from gpu_tasks.inference.scene_embedding import embed_scene
from gpu_tasks.inference.search import (
    SearchParams,
    _nms_greedy,
    _nms_pairs,
    box_iou_xyxy,
    find_candidates,
    nms_xyxy,
    score_grid,
)

from .conftest import PATCH, array_reader, colour_vector, digest

RED_ID, BLUE_ID = 3, 9
PREPROCESSING = {"rgb_bands": [1, 2, 3], "stretch": "test"}


def _embed(scene, embedder, out_dir, **kwargs):
    args = dict(
        read_rgb=array_reader(scene.rgb),
        scene_w_px=scene.width,
        scene_h_px=scene.height,
        embedder=embedder,
        out_dir=out_dir,
        tile_px=10 * PATCH,
        margin_patches=2,
        preprocessing=PREPROCESSING,
    )
    args.update(kwargs)
    return embed_scene(**args)


def _square(box):
    x0, y0, x1, y1 = box
    return [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]]


@pytest.fixture
def embedded(scene, colour_embedder, tmp_path):
    progress, timings = [], {}
    meta = _embed(scene, colour_embedder, tmp_path / "grid", progress=lambda f, m: progress.append(f), timings=timings)
    return meta, tmp_path / "grid", progress, timings


def test_grid_equals_per_cell_embedding(scene, embedded, colour_embedder):
    meta, grid_dir, progress, timings = embedded
    assert (meta.grid_h, meta.grid_w, meta.dim) == (36, 50, colour_embedder.spec.hidden_size)
    assert meta.cell_px == PATCH and meta.tile_px == 140
    _, grid = open_grid(grid_dir)
    # A context-free embedder makes the grid a pure function of each cell's pixels: any cell written by the
    # wrong tile offset, twice or never would show here.
    means = scene.rgb.reshape(36, PATCH, 50, PATCH, 3).astype(np.float32).mean(axis=(1, 3))
    np.testing.assert_allclose(grid, colour_vector(means).astype(np.float16), atol=1e-3)
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert {"read", "preprocess", "forward", "write", "total"} <= timings.keys()
    assert colour_embedder.tiles_seen == timings["tiles"]


def _classes(grid, meta, scene, negatives=()):
    red = prototype_from_polygon(grid, meta, _square(scene.objects["red_a"]))
    blue = prototype_from_polygon(grid, meta, _square(scene.objects["blue"]))
    neg = [prototype_from_polygon(grid, meta, _square(scene.objects[n])) for n in negatives]
    return [
        ClassPrototypes(RED_ID, red[None], np.array(neg, dtype=np.float32).reshape(len(neg), meta.dim)),
        ClassPrototypes(BLUE_ID, blue[None], np.zeros((0, meta.dim), dtype=np.float32)),
    ]


def test_search_finds_planted_objects_once_with_exact_boxes(scene, embedded):
    meta, grid_dir, _, _ = embedded
    meta, grid = open_grid(grid_dir)
    params = SearchParams(default_threshold=0.5)
    timings = {}
    best_class, best_score = score_grid(grid, _classes(grid, meta, scene), params, timings=timings)
    assert best_class.dtype == np.int16 and best_score.dtype == np.float32
    found = find_candidates(best_class, best_score, meta, params, timings)
    boxes = {(c.class_id, c.box_px) for c in found}
    objects = scene.objects
    assert boxes == {
        (RED_ID, objects["red_a"]),
        (RED_ID, objects["red_seam"]),  # across a tile seam in x and y: one box, not two
        (RED_ID, objects["lookalike"]),  # no negatives yet: the look-alike passes as red
        (BLUE_ID, objects["blue"]),
    }
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)
    seam = next(c for c in found if c.box_px == objects["red_seam"])
    assert seam.cells == 25 and seam.score == pytest.approx(1.0, abs=1e-3)
    assert {"score", "candidates"} <= timings.keys()


def test_negative_prototype_suppresses_lookalike(scene, embedded):
    _, grid_dir, _, _ = embedded
    meta, grid = open_grid(grid_dir)
    params = SearchParams(default_threshold=0.5, negative_weight=0.5)
    classes = _classes(grid, meta, scene, negatives=["lookalike"])
    found = find_candidates(*score_grid(grid, classes, params), meta, params)
    boxes = {(c.class_id, c.box_px) for c in found}
    assert (RED_ID, scene.objects["lookalike"]) not in boxes
    assert {(RED_ID, scene.objects["red_a"]), (RED_ID, scene.objects["red_seam"])} <= boxes
    # Real red objects lose at most weight x cos(red, look-alike) ~ 0.38.
    red = [c for c in found if c.class_id == RED_ID]
    assert all(c.score > 0.6 for c in red)


def test_thresholds_margin_and_caps(scene, embedded):
    _, grid_dir, _, _ = embedded
    meta, grid = open_grid(grid_dir)
    classes = _classes(grid, meta, scene)
    strict = SearchParams(thresholds={RED_ID: 0.99}, default_threshold=0.5)
    found = find_candidates(*score_grid(grid, classes, strict), meta, strict)
    assert {c.box_px for c in found if c.class_id == RED_ID} == {scene.objects["red_a"], scene.objects["red_seam"]}
    capped = SearchParams(max_candidates=2)
    assert len(find_candidates(*score_grid(grid, classes, capped), meta, capped)) == 2
    # Two classes with the same prototype can never win by a margin: nothing is labelled.
    twins = [ClassPrototypes(1, classes[0].positives, classes[0].negatives), classes[0]]
    best_class, best_score = score_grid(grid, twins, SearchParams(margin=0.02))
    assert (best_class == -1).all() and best_score.max() > 0.99
    big_ids = [ClassPrototypes(70000, classes[0].positives, classes[0].negatives)]
    assert score_grid(grid, big_ids, SearchParams())[0].dtype == np.int32
    with pytest.raises(IncompatibleEmbeddings, match="dim 384"):
        score_grid(grid, [ClassPrototypes(1, np.ones((1, 384), dtype=np.float32))], SearchParams())


def test_complete_grid_is_reused_without_the_backbone(scene, embedded, colour_embedder):
    meta, grid_dir, _, _ = embedded
    calls_before = colour_embedder.calls
    again = _embed(scene, colour_embedder, grid_dir)
    assert again == meta and colour_embedder.calls == calls_before
    # A different preprocessing is another grid: recomputed in place.
    _embed(scene, colour_embedder, grid_dir, preprocessing={"rgb_bands": [3, 2, 1], "stretch": "test"})
    assert colour_embedder.calls > calls_before


def test_cancel_leaves_an_incomplete_grid_that_is_redone(scene, colour_embedder, tmp_path):
    checks = []

    def cancel_after_two_batches():
        checks.append(1)
        return len(checks) > 2

    with pytest.raises(Cancelled):
        _embed(scene, colour_embedder, tmp_path / "g", should_cancel=cancel_after_two_batches)
    assert colour_embedder.calls == 2
    assert not is_complete(tmp_path / "g")
    meta = _embed(scene, colour_embedder, tmp_path / "g")
    assert is_complete(tmp_path / "g", meta.key)


def test_interrupted_embed_is_redone(scene, colour_embedder, tmp_path):
    reader = array_reader(scene.rgb)
    reads = []

    def failing_reader(*args):
        reads.append(args)
        if len(reads) == 9:
            raise OSError("disk went away")
        return reader(*args)

    with pytest.raises(OSError, match="disk went away"):
        _embed(scene, colour_embedder, tmp_path / "g", read_rgb=failing_reader)
    assert not is_complete(tmp_path / "g")
    calls = colour_embedder.calls
    _embed(scene, colour_embedder, tmp_path / "g")
    assert colour_embedder.calls > calls and is_complete(tmp_path / "g")
    fresh = ColourEmbedderFactory()
    _embed(scene, fresh, tmp_path / "clean")
    assert digest(open_grid(tmp_path / "g")[1]) == digest(open_grid(tmp_path / "clean")[1])


def ColourEmbedderFactory():  # noqa: N802 - reads like the class it builds
    from .conftest import ColourEmbedder

    return ColourEmbedder(batch_size=3)


def test_polygon_patch_mask(embedded):
    meta = embedded[0]
    # A 3x3-cell square with a 1-cell hole in the middle.
    outer = [(14, 14), (56, 14), (56, 56), (14, 56)]
    hole = [(28, 28), (42, 28), (42, 42), (28, 42)]
    rows, cols, mask = polygon_patch_mask([outer, hole], meta)
    full = np.zeros((meta.grid_h, meta.grid_w), dtype=bool)
    full[rows, cols] = mask
    expected = np.zeros_like(full)
    expected[1:4, 1:4] = True
    expected[2, 2] = False
    assert (full == expected).all()
    # A polygon smaller than a cell (no centre inside) still yields its nearest cell.
    rows, cols, mask = polygon_patch_mask([[(100, 100), (103, 100), (103, 103)]], meta)
    assert (rows.start, cols.start, mask.sum()) == (7, 7, 1)
    # Outside the scene: clamped onto the border cells rather than failing.
    rows, cols, mask = polygon_patch_mask([[(-50, -50), (-40, -50), (-40, -40)]], meta)
    assert (rows.start, cols.start, mask.sum()) == (0, 0, 1)


def test_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=float)
    scores = np.array([0.9, 0.95, 0.5, 0.1])
    assert nms_xyxy(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms_xyxy(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]
    assert nms_xyxy(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_large_path_equals_greedy():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 2000, size=(3000, 2))
    wh = rng.uniform(5, 80, size=(3000, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(size=3000)
    order = np.argsort(-scores, kind="stable")
    for iou in (0.1, 0.5):
        assert _nms_pairs(boxes, order, iou).tolist() == _nms_greedy(boxes, order, iou).tolist()


def test_find_candidates_cross_class_and_min_cells(embedded):
    meta = embedded[0]
    best_class = np.full((meta.grid_h, meta.grid_w), -1, dtype=np.int16)
    best_score = np.zeros(best_class.shape, dtype=np.float32)
    best_class[2:8, 2:8], best_score[2:8, 2:8] = 1, 0.8
    # An L of another class wrapping it: its box (7x7 cells) has IoU 36/49 > 0.7 with the 6x6 one: it goes.
    best_class[2:9, 1], best_score[2:9, 1] = 2, 0.6
    best_class[8, 2:8], best_score[8, 2:8] = 2, 0.6
    best_class[20, 20], best_score[20, 20] = 1, 0.9  # a single-cell speck
    params = SearchParams(min_cells=2)
    found = find_candidates(best_class, best_score, meta, params)
    assert [(c.class_id, c.box_px, c.cells) for c in found] == [(1, (28.0, 28.0, 112.0, 112.0), 36)]
    found = find_candidates(best_class, best_score, meta, SearchParams(min_cells=1, cross_class_iou=0.9))
    assert [(c.class_id, c.cells) for c in found] == [(1, 1), (1, 36), (2, 13)]
    # Boxes at the scene's right/bottom edge are clipped to the scene.
    best_class[:] = -1
    best_class[-1, -1] = 1
    (edge,) = find_candidates(best_class, best_score, meta, SearchParams())
    assert edge.box_px[2:] == (meta.scene_width_px, meta.scene_height_px)


def _bumps(shape, centres, sigma=2.5):
    """A score surface: one Gaussian bump (peak 0.9) per centre over a 0.3 floor, plus the cells above 0.5."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    score = np.full(shape, 0.3, dtype=np.float32)
    for cy, cx in centres:
        score = np.maximum(score, 0.3 + 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)))
    best_class = np.where(score > 0.5, 1, -1).astype(np.int16)
    return best_class, score.astype(np.float32)


def test_touching_objects_of_one_class_are_split_at_the_saddle(embedded):
    meta = embedded[0]
    shape = (meta.grid_h, meta.grid_w)
    best_class, best_score = _bumps(shape, [(10, 10), (10, 17)])  # two objects whose blobs touch
    assert cv2.connectedComponents((best_class == 1).astype(np.uint8))[0] == 2  # one component (+ background)
    found = find_candidates(best_class, best_score, meta, SearchParams(object_cells={1: 25.0}))
    assert len(found) == 2
    centres = sorted(
        ((c.box_px[0] + c.box_px[2]) / 2 / meta.cell_px, (c.box_px[1] + c.box_px[3]) / 2 / meta.cell_px) for c in found
    )
    assert [x for x, _ in centres] == pytest.approx([10.5, 17.5], abs=1)  # cell centres at 10 and 17
    assert all(abs(y - 10.5) <= 1 for _, y in centres)
    assert all(c.score == pytest.approx(0.9, abs=1e-3) for c in found)
    # The parts share the component's cells, none lost or counted twice; boxes do not swallow each other.
    assert sum(c.cells for c in found) == int((best_class == 1).sum())
    assert box_iou_xyxy(np.array(found[0].box_px), np.array([found[1].box_px]))[0] < 0.3
    # Without a known object size, or switched off, the component stays whole.
    assert len(find_candidates(best_class, best_score, meta, SearchParams())) == 1
    off = SearchParams(object_cells={1: 25.0}, split_prominence=None)
    assert len(find_candidates(best_class, best_score, meta, off)) == 1


def test_one_object_is_not_split(embedded):
    meta = embedded[0]
    shape = (meta.grid_h, meta.grid_w)
    best_class, best_score = _bumps(shape, [(12, 12)], sigma=4)
    # Texture inside the object: single-cell dips of up to 0.08, more than the prominence.
    rng = np.random.default_rng(0)
    best_score = best_score - (rng.uniform(0, 0.08, shape) * (best_class == 1)).astype(np.float32)
    assert len(find_candidates(best_class, best_score, meta, SearchParams(object_cells={1: 60.0}))) == 1
    # Nor two peaks of one object smaller than 1.5 typical objects, however deep the dip between them.
    best_class, best_score = _bumps(shape, [(10, 10), (10, 15)], sigma=1.5)
    small = int((best_class == 1).sum())
    params = SearchParams(object_cells={1: small / 1.4})
    assert len(find_candidates(best_class, best_score, meta, params)) == 1
    # A flat plateau has no saddle.
    best_class[:], best_score[:] = -1, 0
    best_class[2:8, 2:12], best_score[2:8, 2:12] = 1, 0.8
    assert len(find_candidates(best_class, best_score, meta, SearchParams(object_cells={1: 20.0}))) == 1


def test_no_split_cuts_off_a_part_smaller_than_min_part():
    from gpu_tasks.inference.search import split_component

    # A sharp 1-cell top peak, a saddle, then a long lower ridge: the peak's region is too small to stand alone.
    score = np.array([[0.9, 0.5, 0.8, 0.79, 0.78, 0.77, 0.76, 0.75]], dtype=np.float32)
    inside = np.ones(score.shape, dtype=bool)
    assert split_component(inside, score, 0.05, min_part=4).max() == 0
    # Given a size it may have, the same peak stands apart.
    assert split_component(inside, score, 0.05, min_part=1).max() == 1


def test_condense_prototypes():
    from gpu_tasks.inference.prototypes import condense_prototypes

    rng = np.random.default_rng(5)
    axes = np.eye(8, dtype=np.float32)[:3] * 10
    many = np.concatenate([axis + rng.normal(0, 0.5, size=(40, 8)) for axis in axes]).astype(np.float32)
    few = condense_prototypes(many, 3)
    assert few.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(few, axis=1), 1, atol=1e-5)
    # Each cluster direction is represented.
    assert sorted(np.argmax(np.abs(few), axis=1).tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(condense_prototypes(many, 3), few)
    assert condense_prototypes(many[:2], 3).shape == (2, 8)


def test_a_candidate_far_larger_than_the_examples_is_dropped_and_counted(embedded):
    meta = embedded[0]
    shape = (meta.grid_h, meta.grid_w)
    # Almost the whole scene scores like the class (roof-like texture everywhere), plus one object of its size.
    best_class = np.full(shape, -1, dtype=np.int16)
    best_score = np.zeros(shape, dtype=np.float32)
    best_class[1:-1, 1:30], best_score[1:-1, 1:30] = 1, 0.99
    best_class[10:13, 40:43], best_score[10:13, 40:43] = 1, 0.8
    counts: dict = {}
    params = SearchParams(object_cells={1: 9.0}, max_object_cells={1: 16.0})
    found = find_candidates(best_class, best_score, meta, params, counts=counts)
    assert [(c.box_px, c.cells) for c in found] == [((560.0, 140.0, 602.0, 182.0), 9)]
    assert counts == {"dropped_oversize": 1}
    # A box of up to OVERSIZE_FACTOR (8) times the largest example's passes: the 34 x 29-cell blob, for a
    # 34 x 29 / 8-cell example.
    assert len(find_candidates(best_class, best_score, meta, SearchParams(max_object_cells={1: 34 * 29 / 8}))) == 2
    # Without a known size, or switched off, the blob is kept (and nothing is counted).
    counts = {}
    assert len(find_candidates(best_class, best_score, meta, SearchParams(), counts=counts)) == 2
    assert counts == {"dropped_oversize": 0}
    off = SearchParams(max_object_cells={1: 16.0}, oversize_factor=None)
    assert len(find_candidates(best_class, best_score, meta, off)) == 2


def test_touching_objects_are_split_before_the_size_limit_is_applied(embedded):
    meta = embedded[0]
    best_class, best_score = _bumps((meta.grid_h, meta.grid_w), [(10, 10), (10, 17)])
    # The two touching objects together are oversize for a 3 x 3-cell object; each part alone is not.
    counts: dict = {}
    params = SearchParams(object_cells={1: 25.0}, max_object_cells={1: 9.0})
    found = find_candidates(best_class, best_score, meta, params, counts=counts)
    assert len(found) == 2 and counts == {"dropped_oversize": 0}
    # Unsplit (switched off), the merged blob is too large and goes.
    params = SearchParams(object_cells={1: 25.0}, max_object_cells={1: 9.0}, split_prominence=None)
    counts = {}
    assert find_candidates(best_class, best_score, meta, params, counts=counts) == []
    assert counts == {"dropped_oversize": 1}
