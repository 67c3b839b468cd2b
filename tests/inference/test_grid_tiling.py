"""Tile planning covers every grid cell exactly once; grids round-trip and refuse foreign embeddings."""

import itertools

import numpy as np
import pytest

from gpu_tasks.inference.errors import IncompatibleEmbeddings
from gpu_tasks.inference.grid import GridMeta, GridStore, check_compatible, is_complete, open_grid
from gpu_tasks.inference.tiling import grid_shape, plan_tiles


@pytest.mark.parametrize(
    ("scene_w", "scene_h", "patch", "scale", "tile_px", "margin"),
    [
        (10000, 10000, 14, 1.0, 518, 4),
        (1000, 700, 14, 1.0, 518, 4),
        (518, 518, 14, 1.0, 518, 4),
        (519, 517, 14, 1.0, 518, 4),
        (100, 2000, 14, 1.0, 518, 4),
        (3000, 1234, 14, 2.0, 518, 2),
        (3000, 1234, 14, 0.5, 518, 0),
        (2500, 2500, 14, 1.5, 518, 8),
        (1777, 913, 16, 1.0, 512, 4),
        (700, 504, 14, 1.0, 140, 2),
        (1, 1, 14, 1.0, 518, 4),
    ],
)
def test_tiles_own_every_cell_exactly_once(scene_w, scene_h, patch, scale, tile_px, margin):
    plans = plan_tiles(scene_w, scene_h, patch, scale, tile_px, margin)
    grid_h, grid_w = grid_shape(scene_w, scene_h, patch / scale)
    assert grid_h * patch / scale >= scene_h - 1e-6 and (grid_h - 1) * patch / scale < scene_h
    owned = np.zeros((grid_h, grid_w), dtype=np.int32)
    shapes = set()
    for p in plans:
        owned[p.grid_row0 : p.grid_row1, p.grid_col0 : p.grid_col1] += 1
        shapes.add((p.out_h_px, p.out_w_px))
        tile_rows, tile_cols = p.out_h_px // patch, p.out_w_px // patch
        # The owned block lies inside the tile's token map ...
        assert p.tok_row0 >= 0 and p.tok_row0 + p.owned_h <= tile_rows
        assert p.tok_col0 >= 0 and p.tok_col0 + p.owned_w <= tile_cols
        # ... at least `margin` cells from every inner tile border (scene edges are owned to the edge).
        if p.grid_row0 > 0:
            assert p.tok_row0 >= margin
        if p.grid_row1 < grid_h:
            assert tile_rows - (p.tok_row0 + p.owned_h) >= margin
        if p.grid_col0 > 0:
            assert p.tok_col0 >= margin
        if p.grid_col1 < grid_w:
            assert tile_cols - (p.tok_col0 + p.owned_w) >= margin
        # The native window maps onto the tile's cells: its origin is the first tile cell's corner.
        first_col = p.grid_col0 - p.tok_col0
        assert abs(p.col_off_px - first_col * patch / scale) <= 0.5
        assert abs(p.width_px - tile_cols * patch / scale) <= 1
    assert (owned == 1).all()
    assert len(shapes) == 1, "all tiles share one shape so that they batch"


def test_plan_rejects_bad_tiles():
    with pytest.raises(ValueError, match="multiple"):
        plan_tiles(1000, 1000, 16, 1.0, 518, 4)
    with pytest.raises(ValueError, match="margin"):
        plan_tiles(1000, 1000, 14, 1.0, 518, 19)


def test_10k_scene_tile_count():
    plans = plan_tiles(10000, 10000, 14, 1.0, 518, 4)
    assert grid_shape(10000, 10000, 14.0) == (715, 715)
    # 715 cells with 37-cell tiles and a 29-cell stride: 25 tiles per axis.
    assert len(plans) == 25 * 25


def _meta(**changes) -> GridMeta:
    base = dict(
        grid_h=3,
        grid_w=4,
        dim=8,
        cell_px=14.0,
        scale=1.0,
        tile_px=518,
        margin_patches=4,
        scene_width_px=50,
        scene_height_px=40,
        embedder={"model_id": "facebook/dinov2-small", "key": "aaaa"},
        preprocessing={"rgb_bands": [1, 2, 3], "stretch": "p2-p98", "lo_hi": [[0, 255]] * 3},
        key="k1",
    )
    base.update(changes)
    return GridMeta(**base)


def test_grid_store_round_trip_and_completion(tmp_path):
    meta = _meta()
    store = GridStore(tmp_path / "g")
    tokens = store.create(meta)
    assert not is_complete(tmp_path / "g")
    tokens[:] = np.arange(3 * 4 * 8, dtype=np.float16).reshape(3, 4, 8)
    store.mark_complete(meta, tokens)
    assert is_complete(tmp_path / "g") and is_complete(tmp_path / "g", "k1")
    assert not is_complete(tmp_path / "g", "other-key")
    loaded, grid = open_grid(tmp_path / "g")
    assert loaded == meta
    assert grid.dtype == np.float16 and grid.shape == (3, 4, 8) and not grid.flags.writeable
    assert grid[2, 3, 7] == 95
    # Restarting a grid drops the marker before anything else.
    store.create(meta)
    assert not is_complete(tmp_path / "g")
    with pytest.raises(FileNotFoundError):
        open_grid(tmp_path / "g")


def test_check_compatible():
    a = _meta()
    check_compatible(a, _meta(key="other", scene_width_px=99))  # another scene, same space
    check_compatible(a, "aaaa")
    with pytest.raises(IncompatibleEmbeddings, match=r"re-embed|Re-embed") as info:
        check_compatible(a, _meta(embedder={"model_id": "facebook/dinov2-base", "key": "bbbb"}, dim=768))
    assert "facebook/dinov2-small" in str(info.value) and "dim 8 vs 768" in str(info.value)
    with pytest.raises(IncompatibleEmbeddings, match="embedder"):
        check_compatible(a, "bbbb")
    other_stretch = _meta(preprocessing={"rgb_bands": [1, 2, 3], "stretch": "minmax", "lo_hi": [[0, 255]] * 3})
    with pytest.raises(IncompatibleEmbeddings, match="stretch"):
        check_compatible(a, other_stretch)
    # Per-scene values may differ when the caller compares only the scene-independent keys.
    other_values = _meta(preprocessing={"rgb_bands": [1, 2, 3], "stretch": "p2-p98", "lo_hi": [[5, 99]] * 3})
    check_compatible(a, other_values, preprocessing_keys=["rgb_bands", "stretch"])
    with pytest.raises(IncompatibleEmbeddings, match="lo_hi"):
        check_compatible(a, other_values)


def test_every_tile_plan_combination_small():
    """Exhaustive small cases: ownership is a partition for all sizes around tile boundaries."""
    for w, h, margin in itertools.product(range(1, 200, 13), range(1, 200, 29), (0, 1, 2)):
        plans = plan_tiles(w, h, 7, 1.0, 49, margin)
        gh, gw = grid_shape(w, h, 7.0)
        owned = np.zeros((gh, gw), dtype=np.int32)
        for p in plans:
            owned[p.grid_row0 : p.grid_row1, p.grid_col0 : p.grid_col1] += 1
        assert (owned == 1).all(), (w, h, margin)
