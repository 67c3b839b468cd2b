"""Plan overlapping backbone tiles over a scene so that every grid cell is owned by exactly one tile."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Float slack when dividing a scene size by a cell size that is not an integer (e.g. 14 / 1.5).
_EPS = 1e-6


@dataclass(frozen=True)
class TilePlan:
    """One backbone tile: the native window to read, the input size, and the grid cells it owns.

    The tile's token map has out_h_px/patch x out_w_px/patch cells; its owned block
    grid[grid_row0:grid_row1, grid_col0:grid_col1] equals tokens[tok_row0:tok_row0+owned_h, tok_col0:...].
    """

    col_off_px: int  # native window, may start before 0 or end past the scene (read zero-padded)
    row_off_px: int
    width_px: int
    height_px: int
    out_w_px: int  # backbone input size, multiples of the patch size
    out_h_px: int
    grid_row0: int  # owned grid cells, half-open
    grid_row1: int
    grid_col0: int
    grid_col1: int
    tok_row0: int  # offset of the owned block inside this tile's token map
    tok_col0: int

    @property
    def owned_h(self) -> int:
        """Owned grid rows."""
        return self.grid_row1 - self.grid_row0

    @property
    def owned_w(self) -> int:
        """Owned grid columns."""
        return self.grid_col1 - self.grid_col0


def grid_shape(scene_w_px: int, scene_h_px: int, cell_px: float) -> tuple[int, int]:
    """(grid_h, grid_w): cells needed to cover the scene; the last row/column may be partly outside."""
    return (
        max(1, math.ceil(scene_h_px / cell_px - _EPS)),
        max(1, math.ceil(scene_w_px / cell_px - _EPS)),
    )


def _axis_plan(n_cells: int, tile_cells: int, margin: int) -> list[tuple[int, int, int]]:
    """Tiles along one axis as (first cell, owned start, owned end), consecutive tiles overlapping by 2*margin."""
    if n_cells <= tile_cells:
        return [(0, 0, n_cells)]
    stride = tile_cells - 2 * margin
    plans: list[tuple[int, int, int]] = []
    start, own0 = 0, 0
    while True:
        if start + tile_cells >= n_cells:
            # Shift the last tile back to end at the scene edge: less zero padding, more real context.
            # Its owned start stays >= margin cells inside it because start only moves left.
            plans.append((n_cells - tile_cells, own0, n_cells))
            return plans
        own1 = start + tile_cells - margin
        plans.append((start, own0, own1))
        own0, start = own1, start + stride


def plan_tiles(
    scene_w_px: int,
    scene_h_px: int,
    patch_size: int,
    scale: float,
    tile_px: int = 518,
    margin_patches: int = 4,
) -> list[TilePlan]:
    """Row-major tiles covering the grid of cell_px = patch_size/scale native px, each cell owned once.

    A tile is tile_px input px (tile_px/patch_size cells) square, or smaller along an axis where the whole
    scene fits in fewer cells; only the margin_patches cells at inner tile borders are discarded.
    """
    if tile_px % patch_size:
        raise ValueError(f"tile_px {tile_px} is not a multiple of the patch size {patch_size}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    tile_cells = tile_px // patch_size
    if not 0 <= 2 * margin_patches < tile_cells:
        raise ValueError(f"margin_patches {margin_patches} leaves no core in a {tile_cells}-cell tile")
    cell_px = patch_size / scale
    grid_h, grid_w = grid_shape(scene_w_px, scene_h_px, cell_px)
    rows = _axis_plan(grid_h, tile_cells, margin_patches)
    cols = _axis_plan(grid_w, tile_cells, margin_patches)
    tile_h, tile_w = min(tile_cells, grid_h), min(tile_cells, grid_w)
    plans = []
    for r_start, r0, r1 in rows:
        y0, y1 = round(r_start * cell_px), round((r_start + tile_h) * cell_px)
        for c_start, c0, c1 in cols:
            x0, x1 = round(c_start * cell_px), round((c_start + tile_w) * cell_px)
            plans.append(
                TilePlan(
                    col_off_px=x0,
                    row_off_px=y0,
                    width_px=x1 - x0,
                    height_px=y1 - y0,
                    out_w_px=tile_w * patch_size,
                    out_h_px=tile_h * patch_size,
                    grid_row0=r0,
                    grid_row1=r1,
                    grid_col0=c0,
                    grid_col1=c1,
                    tok_row0=r0 - r_start,
                    tok_col0=c0 - c_start,
                )
            )
    return plans
