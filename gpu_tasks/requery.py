"""Update proposals: score a scene's cached patch grid again with the current examples and decisions.

A reviewer's accepts and rejects become positives and negatives at once: this re-runs the part of a search
after the grid exists (gpu_tasks.visual_search.proposals_score_and_replace) on the grid the last search used,
so no backbone is loaded and the job runs on the CPU worker (`default` queue), never behind an embedding.
"""

from collections.abc import Callable
from dataclasses import replace

from annotate import storage
from annotate.errors import Conflict
from annotate.models import Scene

from .inference.grid import is_complete
from .models import Job, JobKind, JobStatus, PatchGrid
from .run_context import RunContext
from .visual_search import SearchRequest, proposals_score_and_replace

NO_GRID_MESSAGE = "Run a search on this scene first: Update proposals re-uses its patch embeddings."
# Jobs whose parameters a new Update proposals starts from: a search, or an earlier update (which may have
# narrowed the classes), whichever finished last.
PARAMS_FROM_KINDS = (JobKind.SEARCH, JobKind.REQUERY)


class NoCachedGrid(Conflict):
    """A scene without a complete patch grid: there is nothing to re-query until a search has embedded it."""

    code = "no_cached_grid"


def last_search_job(*, scene: Scene) -> Job | None:
    """The scene's most recently finished successful search (or update), whose parameters an update reuses."""
    return (
        Job.objects.filter(scene=scene, kind__in=PARAMS_FROM_KINDS, status=JobStatus.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )


def _grid_complete(grid: PatchGrid) -> bool:
    return is_complete(storage.absolute(grid.path), grid.key)


def requery_grid(*, scene: Scene, last: Job | None, grid_id: int | None = None) -> PatchGrid:
    """The complete grid to re-query: `grid_id` if still there, else the last search's (same space and scale),
    else one at the last search's scale, else the newest; NoCachedGrid (409) when the scene has none."""
    grids = PatchGrid.objects.filter(scene=scene).order_by("-created_at", "-pk")
    tries = []
    if grid_id is not None:
        tries.append(grids.filter(pk=grid_id))
    if last is not None:
        used = last.result.get("grid") or {}
        if used.get("id") is not None:
            tries.append(grids.filter(pk=used["id"]))
        if used.get("space_key"):
            tries.append(grids.filter(space_key=used["space_key"]))
        tries.append(grids.filter(scale=float(last.params.get("scale", 1.0))))
    tries.append(grids)
    for candidates in tries:
        for grid in candidates:
            if _grid_complete(grid):
                return grid
    raise NoCachedGrid(NO_GRID_MESSAGE, detail={"scene": scene.pk})


def requery_params(*, scene: Scene, overrides: dict) -> dict:
    """A new update's job params: the last search's request with the given fields replaced, and the grid to use.

    `overrides` holds validated SearchRequest fields (gpu_tasks.serializers.RequeryInputSerializer); the scale is
    always the grid's. NoCachedGrid (409) when the scene has no complete grid.
    """
    last = last_search_job(scene=scene)
    base = SearchRequest.from_params(last.params) if last is not None else SearchRequest()
    grid = requery_grid(scene=scene, last=last)
    request = replace(base, **overrides, scale=float(grid.scale))
    return {**request.to_params(), "grid_id": grid.pk}


def scene_requery(
    *,
    scene: Scene,
    job: Job | None,
    params: dict,
    run: RunContext,
    index_later: list[Callable[[], None]] | None = None,
) -> dict:
    """Replace a scene's unreviewed proposals from its cached grid and the current examples and decisions.

    The grid named in `params` is used when it is still complete (a re-ingest removes grids), else the same
    choice as at submission. Reviewed detections are never touched. `index_later`: see
    visual_search.proposals_score_and_replace.
    """
    request = SearchRequest.from_params(params)
    with run.stage("grid"):
        grid = requery_grid(scene=scene, last=last_search_job(scene=scene), grid_id=params.get("grid_id"))
    if float(grid.scale) != request.scale:
        request = replace(request, scale=float(grid.scale))
    result = proposals_score_and_replace(
        scene=scene,
        grid=grid,
        job=job,
        request=request,
        run=run.part(0.1, 1.0),
        index_later=index_later,
    )
    return {**result, "requery": True}
