"""Scene patch-token grids: build once per (scene, model, band mapping, stretch, scale), reuse for every query."""

import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

from annotate import storage
from annotate.errors import SceneNotReady
from annotate.models import Scene, SceneStatus

from . import runtime
from .inference.grid import GridMeta, grid_key, is_complete, open_grid, stable_digest
from .inference.scene_embedding import effective_tile_px, embed_scene, rasterio_rgb_reader
from .models import Job, PatchGrid
from .run_context import RunContext

Progress = Callable[[float, str], None]


def space_key(*, embedder_key: str, scale: float) -> str:
    """The vector space of a model at a scale: vectors with equal space keys may be compared."""
    return stable_digest({"embedder": embedder_key, "scale": float(scale)})


def scene_preprocessing(scene: Scene) -> dict:
    """How tiles are read for the backbone: the scene's RGB bands and their display stretch."""
    bands = [int(b) for b in scene.rgb_bands]
    return {
        "rgb_bands": bands,
        "stretch": [list(map(float, scene.stretch[b - 1])) for b in bands],
        "dtype": scene.dtype,
    }


def scene_rgb_reader(scene: Scene):
    """A `read_rgb(col, row, w, h, out_w, out_h)` callable over the scene's COG (close it when done)."""
    pre = scene_preprocessing(scene)
    return rasterio_rgb_reader(storage.absolute(scene.cog_path), tuple(pre["rgb_bands"]), scene.stretch)


def _require_ready(scene: Scene) -> None:
    if scene.status != SceneStatus.READY:
        raise SceneNotReady(f"Scene {scene.name!r} is {scene.status}, not ready; wait for its ingest to finish.")


def _scene_grids_dir(scene: Scene) -> Path:
    """Where a scene's grids live: DATA_DIR/grids/<scene id>/<key>/."""
    return Path(settings.DATA_DIR) / "grids" / str(scene.pk)


def _grid_dir(scene: Scene, key: str) -> Path:
    return _scene_grids_dir(scene) / key


def scene_grid_key(*, scene: Scene, embedder, scale: float) -> str:
    """The key embed_scene will give this scene's grid with this embedder and scale."""
    return grid_key(
        embedder_key=embedder.spec.key,
        preprocessing=scene_preprocessing(scene),
        scale=scale,
        tile_px=effective_tile_px(settings.EMBED_TILE_PX, embedder.spec.patch_size),
        margin_patches=settings.EMBED_MARGIN_PATCHES,
        scene_width_px=scene.width,
        scene_height_px=scene.height,
    )


@contextmanager
def _grid_lock(scene: Scene, key: str):
    """One builder per grid across all workers (a PostgreSQL advisory lock): two jobs never write one memmap."""
    lock_id = (int(scene.pk) & 0x7FFFFFFF, int(key[:8], 16) & 0x7FFFFFFF)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", lock_id)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", lock_id)


def scene_grid_ensure(
    *,
    scene: Scene,
    scale: float = 1.0,
    job: Job | None = None,
    run: RunContext | None = None,
) -> PatchGrid:
    """The scene's grid for the configured model at this scale, built now if missing (never twice)."""
    run = run or RunContext()
    _require_ready(scene)
    if scale <= 0 or scale > 8:
        raise ValueError("scale must be in (0, 8]")
    emb = runtime.embedder()
    key = scene_grid_key(scene=scene, embedder=emb, scale=scale)
    directory = _grid_dir(scene, key)
    existing = PatchGrid.objects.filter(scene=scene, key=key).first()
    if existing is not None and is_complete(directory, key):
        run.progress(1.0, "Patch embeddings already computed")
        return existing
    directory.mkdir(parents=True, exist_ok=True)
    with _grid_lock(scene, key), scene_rgb_reader(scene) as read_rgb:
        # Whoever held the lock before us may have just built it: embed_scene then returns at once.
        meta = embed_scene(
            read_rgb=read_rgb,
            scene_w_px=scene.width,
            scene_h_px=scene.height,
            embedder=emb,
            out_dir=directory,
            scale=scale,
            tile_px=settings.EMBED_TILE_PX,
            margin_patches=settings.EMBED_MARGIN_PATCHES,
            preprocessing=scene_preprocessing(scene),
            progress=run.progress,
            should_cancel=run.should_cancel,
            timings=run.timings,
        )
    grid, _ = PatchGrid.objects.update_or_create(
        scene=scene,
        key=meta.key,
        defaults={
            "space_key": space_key(embedder_key=meta.embedder_key, scale=scale),
            "model_id": emb.spec.model_id,
            "path": storage.relative(directory),
            "grid_h": meta.grid_h,
            "grid_w": meta.grid_w,
            "dim": meta.dim,
            "cell_px": meta.cell_px,
            "scale": scale,
            "embedder": meta.embedder,
            "preprocessing": meta.preprocessing,
            "job": job,
        },
    )
    return grid


def grid_summary(grid: PatchGrid) -> dict:
    """What a job's result says about the grid it used."""
    return {
        "id": grid.pk,
        "shape": [grid.grid_h, grid.grid_w, grid.dim],
        "model": grid.model_id,
        "space_key": grid.space_key,
        "scale": grid.scale,
    }


def grid_open(grid: PatchGrid) -> tuple[GridMeta, np.memmap]:
    """The grid's metadata and read-only float16 token memmap (grid_h, grid_w, dim)."""
    return open_grid(storage.absolute(grid.path))


def scene_grids_delete(*, scene: Scene) -> None:
    """Remove a scene's grids (after a re-ingest changed its pixels or bands)."""
    shutil.rmtree(_scene_grids_dir(scene), ignore_errors=True)
    PatchGrid.objects.filter(scene=scene).delete()
