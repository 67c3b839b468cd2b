"""Probe proposals: a small head (logistic or kNN) trained on a project's reviewed patch tokens scores a scene's cached
grid; its candidates go through the same components-and-NMS path and proposals writer as prototype search.

Tokens come from every complete grid of the project in the scene's vector space: cells inside accepted objects and
examples are their class, cells inside rejected proposals and the object-free ground of accuracy areas (exhaustively
labelled, so whatever is not an object there is background) are background.
"""

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q

from annotate import storage
from annotate.errors import DomainError, SceneNotReady
from annotate.models import (
    Annotation,
    Detection,
    DetectionSource,
    DetectionStatus,
    ObjectClass,
    Proposer,
    Scene,
    SceneStatus,
)
from gpu_tasks import services as job_services
from gpu_tasks.embedding import grid_open, grid_summary
from gpu_tasks.inference.grid import is_complete
from gpu_tasks.models import Job, JobKind, PatchGrid
from gpu_tasks.object_index import polygon_px
from gpu_tasks.requery import NO_GRID_MESSAGE, NoCachedGrid, requery_grid
from gpu_tasks.run_context import RunContext
from gpu_tasks.visual_search import class_object_cells, known_object_mask, proposals_replace
from review.accuracy_models import AccuracyArea

from .serializers import ProbeRequestSerializer

# Background cells taken per accuracy area and per scene's rejected proposals (seeded sample): enough to describe
# the ground, few enough that training stays in seconds.
BACKGROUND_PER_AREA = 4000
MAX_BACKGROUND = 60_000
# Cells within this many cells of an accepted object are left out of the background (its outline is not exact).
OBJECT_MARGIN_CELLS = 1


def probe_submit(*, scene: Scene, user: AbstractBaseUser | None, role: str | None, data: dict,
                 enqueue: bool = True) -> job_services.JobStart:
    """Validate a probe request and queue it on the default (CPU) queue: it reads cached grids, no backbone."""
    job_services.job_kind_require(kind=JobKind.PROBE, role=role)
    if scene.status != SceneStatus.READY:
        raise SceneNotReady(f"Scene {scene.name!r} is {scene.status}; wait until its ingest has finished.")
    form = ProbeRequestSerializer(data=data)
    form.is_valid(raise_exception=True)
    req = dict(form.validated_data)
    known = ObjectClass.objects.filter(project_id=scene.project_id, pk__in=req["classes"])
    unknown = set(req["classes"]) - set(known.values_list("pk", flat=True))
    if unknown:
        raise DomainError(f"Classes {sorted(unknown)} are not classes of this project.")
    try:  # 409 now, not in the job, when the scene was never embedded
        requery_grid(scene=scene, last=None)
    except NoCachedGrid as exc:
        raise NoCachedGrid("Run a search on this scene first: the probe scores its patch embeddings (the search "
                           "computes them once).", detail={"scene": scene.pk}) from exc
    with transaction.atomic():
        job = job_services.job_create(kind=JobKind.PROBE, project_id=scene.project_id, scene=scene, user=user,
                                      params=req)
        if enqueue:
            job_services._enqueue(job)
    return job_services.JobStart(job=job, created=True)


def _cells(meta, scene: Scene, polygon) -> np.ndarray:
    """Flat indexes of the grid cells whose centre lies inside an EPSG:4326 polygon."""
    from gpu_tasks.inference.prototypes import polygon_patch_mask

    rows, cols, mask = polygon_patch_mask(polygon_px(scene, polygon), meta)
    rr, cc = np.nonzero(mask)
    return (rr + rows.start) * meta.grid_w + (cc + cols.start)


def _scene_tokens(grid: PatchGrid, class_ids: set[int], rng: np.random.Generator):
    """(tokens, labels) of one scene's reviewed cells: accepted objects and examples, rejected proposals, and the
    object-free cells of its accuracy areas."""
    from gpu_tasks.inference.probe import BACKGROUND

    scene = grid.scene
    meta, tokens = grid_open(grid)
    flat = tokens.reshape(meta.grid_h * meta.grid_w, meta.dim)
    cells, labels = [], []
    objects = list(Detection.objects.filter(scene=scene, status=DetectionStatus.ACCEPTED,
                                            object_class_id__in=class_ids).values_list("object_class_id", "geometry"))
    objects += list(Annotation.objects.filter(scene=scene, object_class_id__in=class_ids)
                    .values_list("object_class_id", "geometry"))
    taken = np.zeros(meta.grid_h * meta.grid_w, dtype=bool)
    for cls, geom in objects:
        idx = _cells(meta, scene, geom)
        cells.append(idx)
        labels.append(np.full(len(idx), cls))
        taken[idx] = True
    near = taken.reshape(meta.grid_h, meta.grid_w)
    for _ in range(OBJECT_MARGIN_CELLS):  # grow by one cell: an outline's neighbours are not sure background
        grown = near.copy()
        grown[1:] |= near[:-1]
        grown[:-1] |= near[1:]
        grown[:, 1:] |= near[:, :-1]
        grown[:, :-1] |= near[:, 1:]
        near = grown
    near = near.reshape(-1)
    background = [_cells(meta, scene, g) for g in Detection.objects.filter(
        scene=scene, status=DetectionStatus.REJECTED).values_list("geometry", flat=True)]
    for area in AccuracyArea.objects.filter(scene=scene):
        if area.class_ids and not set(area.class_ids) >= class_ids:
            continue  # complete for other classes only: an unlabelled object of ours may lie there
        idx = _cells(meta, scene, area.geometry)
        if len(idx) > BACKGROUND_PER_AREA:
            idx = rng.choice(idx, BACKGROUND_PER_AREA, replace=False)
        background.append(idx)
    if background:
        bg = np.unique(np.concatenate(background))
        bg = bg[~near[bg]]
        cells.append(bg)
        labels.append(np.full(len(bg), BACKGROUND))
    if not cells:
        return np.zeros((0, meta.dim), np.float32), np.zeros(0, np.int64)
    idx, lab = np.concatenate(cells), np.concatenate(labels)
    order = np.argsort(idx, kind="stable")  # memmap reads in file order
    return np.asarray(flat[idx[order]], dtype=np.float32), lab[order].astype(np.int64)


def training_tokens(*, project_id: int, space_key: str, class_ids: set[int], seed: int = 0):
    """(tokens, labels, per-scene counts) from every complete grid of the project in this vector space."""
    from gpu_tasks.inference.probe import BACKGROUND

    rng = np.random.default_rng(seed)
    parts, counts = [], {}
    grids = PatchGrid.objects.filter(scene__project_id=project_id, space_key=space_key).select_related("scene")
    for grid in grids.order_by("scene_id", "-created_at"):
        if grid.scene_id in counts or not is_complete(storage.absolute(grid.path), grid.key):
            continue
        tokens, labels = _scene_tokens(grid, class_ids, rng)
        counts[grid.scene_id] = {"objects": int((labels != BACKGROUND).sum()),
                                 "background": int((labels == BACKGROUND).sum())}
        parts.append((tokens, labels))
    if not parts:
        raise NoCachedGrid(NO_GRID_MESSAGE)
    tokens = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    bg = np.flatnonzero(labels == BACKGROUND)
    if len(bg) > MAX_BACKGROUND:
        keep = np.ones(len(labels), dtype=bool)
        keep[rng.choice(bg, len(bg) - MAX_BACKGROUND, replace=False)] = False
        tokens, labels = tokens[keep], labels[keep]
    return tokens, labels, counts


def probe_run(*, job: Job, run: RunContext) -> dict:
    """Train the probe, score the scene's grid, replace the probe's unreviewed proposals; the Job row's result."""
    from gpu_tasks.inference.probe import BACKGROUND, score_grid_probe, train_knn, train_logistic
    from gpu_tasks.inference.search import SearchParams, find_candidates

    scene, params = job.scene, job.params
    grid = requery_grid(scene=scene, last=None)
    classes = list(ObjectClass.objects.filter(project_id=scene.project_id,
                                              **({"pk__in": params["classes"]} if params["classes"] else {})))
    class_ids = {c.pk for c in classes}
    run.progress(0.0, "Gathering reviewed tokens")
    with run.stage("tokens"):
        tokens, labels, per_scene = training_tokens(project_id=scene.project_id, space_key=grid.space_key,
                                                    class_ids=class_ids)
    present = {int(c) for c in np.unique(labels) if c != BACKGROUND}
    if not present:
        raise DomainError("No reviewed objects to learn from: accept or draw objects of these classes on an "
                          "embedded scene, then train the probe again.")
    if not (labels == BACKGROUND).any():
        raise DomainError("No background to learn from: reject some proposals, or mark a reviewed area as "
                          "exhaustively labelled (Accuracy areas), then train the probe again.")
    run.progress(0.2, f"Training a {params['kind']} probe on {len(labels):,} tokens")
    with run.stage("train"):
        probe = (train_logistic if params["kind"] == "logistic" else train_knn)(tokens, labels)
    if run.should_cancel():
        from gpu_tasks.inference.errors import Cancelled

        raise Cancelled()
    meta, grid_tokens = grid_open(grid)
    run.progress(0.5, "Scoring the scene")
    with run.stage("score"):
        scored_cells: dict = {}  # the kNN cascade says how many cells reached its vote
        best_class, best_score = score_grid_probe(grid_tokens, probe, threshold=params["threshold"],
                                                  timings=run.timings, counts=scored_cells)
    scored = [c for c in classes if c.pk in present]
    typical, largest = class_object_cells(scene, scored, meta.cell_px)
    search = SearchParams(default_threshold=params["threshold"], max_candidates=params["max_candidates"],
                          object_cells=typical, max_object_cells=largest)
    with run.stage("components"):
        dropped: dict = {}
        candidates = find_candidates(best_class, best_score, meta, search, counts=dropped)
    boxes = np.asarray([c.box_px for c in candidates], dtype=np.float64).reshape(-1, 4)
    with run.stage("known_objects"):
        keep = known_object_mask(scene, boxes)
    fresh = [c for c, k in zip(candidates, keep, strict=True) if k]
    run.progress(0.8, f"Writing {len(fresh)} candidates")
    rows, replaced = proposals_replace(
        scene=scene, grid=grid, tokens=grid_tokens, meta=meta, job=job,
        replaces=Q(proposer=Proposer.PROBE, source__in=(DetectionSource.PROBE, DetectionSource.REFINE),
                   object_class_id__in=[c.pk for c in scored]),
        boxes_px=boxes[keep], class_ids=[c.class_id for c in fresh], scores=[c.score for c in fresh],
        source=DetectionSource.PROBE, proposer=Proposer.PROBE,
        proposer_scores=[{"probe": params["kind"], "probe_score": round(float(c.score), 4)} for c in fresh], run=run,
    )
    names = {c.pk: c.name for c in classes}
    return {
        "detections": len(rows), "replaced": replaced, "skipped_known": len(candidates) - len(fresh),
        "dropped_oversize": dropped.get("dropped_oversize", 0), "kind": params["kind"], "scoring": scored_cells,
        "training": {"tokens": int(len(labels)), "background": int((labels == BACKGROUND).sum()),
                     "per_class": {names[c]: int((labels == c).sum()) for c in sorted(present)},
                     "scenes": per_scene},
        "per_class": {names[c.pk]: sum(1 for f in fresh if f.class_id == c.pk) for c in scored},
        "grid": grid_summary(grid),
    }


def probe_job_run(*, job_id: int, claim: bool = True, progress_extra=None) -> Job:
    """Run a probe proposals job under its Job row (called by detectors.tasks.probe_proposals_task)."""
    job = Job.objects.select_related("scene", "scene__project", "created_by").get(pk=job_id)

    def work(run: RunContext):
        result = probe_run(job=job, run=run)
        return result, f"{result['kind']} probe: {result['detections']} candidates ({result['replaced']} replaced)"

    return job_services.job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)
