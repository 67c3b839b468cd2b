"""YOLO proposals on a scene: tiled inference over the COG at the model's training resolution, each box verified
(and relabelled where the evidence says so) against the class prototypes of the scene's cached DINOv2 grid, and the
model version's unreviewed proposals replaced."""

from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q

from annotate.errors import DomainError
from annotate.models import DetectionSource, ObjectClass, Proposer, Scene
from gpu_tasks import runtime
from gpu_tasks import services as job_services
from gpu_tasks.embedding import grid_open, grid_summary, scene_grid_ensure, scene_rgb_reader
from gpu_tasks.models import Job, JobKind
from gpu_tasks.object_index import class_prototypes, object_vectors_sync
from gpu_tasks.run_context import RunContext
from gpu_tasks.visual_search import known_object_mask, proposals_replace

from .models import ModelVersion
from .serializers import PredictRequestSerializer

# Tile overlap in the model's pixels: at least the largest object, so every object is whole in some tile.
OVERLAP_MODEL_PX = 128


def version_for(*, project_id: int, version_id: int | None) -> ModelVersion:
    """The chosen model version of the project, or its current one; refused with what to do when there is none."""
    versions = ModelVersion.objects.filter(project_id=project_id)
    version = versions.filter(pk=version_id).first() if version_id else versions.filter(is_current=True).first()
    if version is None:
        raise DomainError("No such model version in this project: train one (Detectors on the project page) or "
                          "choose one of its versions." if version_id else
                          "The project has no current model: train one, or mark a version current.")
    return version


def predict_submit(*, scene: Scene, user: AbstractBaseUser | None, role: str | None, data: dict,
                   enqueue: bool = True) -> job_services.JobStart:
    """Validate a YOLO proposals request and queue its job on the gpu queue (JobKind.PREDICT)."""
    job_services.job_kind_require(kind=JobKind.PREDICT, role=role)  # a 403 before any question about the model
    form = PredictRequestSerializer(data=data)
    form.is_valid(raise_exception=True)
    req = dict(form.validated_data)
    version = version_for(project_id=scene.project_id, version_id=req["model_version"])
    req["model_version"] = version.pk
    return job_services.scene_job_submit(kind=JobKind.PREDICT, scene=scene, user=user, role=role, params=req,
                                         enqueue=enqueue)


def _weights(version: ModelVersion) -> Path:
    path = Path(settings.DATA_DIR) / version.weights
    if not path.is_file():
        raise DomainError(f"The weights of {version} are missing ({path}); train the model again.")
    return path


def _verify(*, scene: Scene, grid, meta, tokens, boxes_px: np.ndarray, class_ids: np.ndarray, margin: float,
            run: RunContext):
    """Verdicts of the boxes against the class prototypes, or None (and why) when no class has examples here."""
    from gpu_tasks.inference.box_verification import box_vectors, verify_boxes

    with run.stage("object_vectors"):
        object_vectors_sync(scene=scene, grid=grid, meta=meta, tokens=tokens, include_proposed=False)
    classes = list(ObjectClass.objects.filter(project_id=scene.project_id))
    try:
        with run.stage("prototypes"):
            protos, _counts = class_prototypes(project=scene.project, space_key=grid.space_key, dim=grid.dim,
                                               classes=classes)
    except DomainError as exc:  # no class has an example in this vector space: the boxes stay unverified
        return None, exc.message
    with run.stage("verify"):
        vectors = box_vectors(tokens, meta, boxes_px)
        return verify_boxes(vectors, class_ids, protos, relabel_margin=margin), ""


def torch_threads(n: int | None = None) -> int:
    """torch's intra-op thread count, set to n first when given."""
    import torch

    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _cached_grid(scene: Scene):
    """The scene's complete grid when it has one, else None."""
    from gpu_tasks.requery import NoCachedGrid, requery_grid

    try:
        return requery_grid(scene=scene, last=None)
    except NoCachedGrid:
        return None


def _score(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def _verdict_record(verdicts, i: int) -> dict:
    """What verification said about box i, for Detection.proposer_scores (None: the class has no prototypes)."""
    best = int(verdicts.best_class[i])
    return {"verify_class_id": best if best >= 0 else None, "verify_score": _score(verdicts.best_score[i]),
            "verify_score_yolo_class": _score(verdicts.proposed_score[i]), "relabelled": bool(verdicts.relabel[i])}


def predict_run(*, job: Job, run: RunContext) -> dict:
    """Detect, verify, replace; the result for the Job row."""
    from gpu_tasks.inference.tiled_detection import detect_tiled, ultralytics_predictor
    from gpu_tasks.inference.yolo_training import ModelNotFound, ensure_local_font, load_model

    scene, params = job.scene, job.params
    version = version_for(project_id=scene.project_id, version_id=params["model_version"])
    ensure_local_font()
    try:
        model = load_model(_weights(version))
    except ModelNotFound as exc:
        raise DomainError(f"{version}: {exc}") from exc
    # Tiles are read at the resolution the model learned: tile px per native px.
    scale = float(scene.gsd_m) / float(version.gsd_m)
    reader = scene_rgb_reader(scene)
    timings: dict = {}
    # Overlap in the model's pixels, at most a quarter tile (a tiny training image size must not mean a tile per px).
    overlap = max(1, round(min(OVERLAP_MODEL_PX, version.imgsz // 4) / scale))
    threads = torch_threads()
    try:
        with run.stage("detect"):
            found = detect_tiled(
                read_rgb=reader, width=scene.width, height=scene.height,
                predict=ultralytics_predictor(model, imgsz=version.imgsz, conf=params["conf"],
                                              device=runtime.ultralytics_device()),
                tile_px=version.imgsz, overlap_px=overlap, scale=scale,
                progress=run.part(0.0, 0.5).progress, should_cancel=run.should_cancel, timings=timings)
    finally:
        getattr(reader, "close", lambda: None)()
        # ultralytics sets torch to cores - 1 threads on the CPU for good: the embedding after it gets them back.
        torch_threads(threads)
    run.timings.update({f"detect_{k}": v for k, v in timings.items() if k != "tiles"})
    # The model's class outputs are class indexes at training time; a class deleted since drops its boxes.
    index_to_id = {c["index"]: c["class_id"] for c in version.classes}
    alive = set(ObjectClass.objects.filter(project_id=scene.project_id).values_list("pk", flat=True))
    kept = [b for b in found if index_to_id.get(b.class_index) in alive]
    boxes_px = np.asarray([b.box_px for b in kept], dtype=np.float64).reshape(-1, 4)
    yolo_ids = np.asarray([index_to_id[b.class_index] for b in kept], dtype=np.int64)
    yolo_scores = np.asarray([b.score for b in kept], dtype=np.float64)
    verify = params.get("verify", True)
    if verify:
        grid = scene_grid_ensure(scene=scene, scale=1.0, job=None, run=run.part(0.5, 0.85))  # once per scene
    else:  # without verification no backbone is needed: a cached grid only indexes the new proposals
        grid = _cached_grid(scene)
    meta, tokens = grid_open(grid) if grid is not None else (None, None)
    verdicts, unverified_why = None, "verification off"
    if verify and len(kept):
        verdicts, unverified_why = _verify(scene=scene, grid=grid, meta=meta, tokens=tokens, boxes_px=boxes_px,
                                           class_ids=yolo_ids, margin=params["relabel_margin"], run=run)
    final_ids = yolo_ids.copy()
    extra = [{"yolo_class_id": int(c), "yolo_score": round(float(s), 4)} for c, s in zip(yolo_ids, yolo_scores,
                                                                                          strict=True)]
    if verdicts is not None:
        final_ids = verdicts.final_class
        for i, more in enumerate(extra):
            more.update(_verdict_record(verdicts, i))
    with run.stage("known_objects"):
        fresh = known_object_mask(scene, boxes_px)
    run.progress(0.9, f"Writing {int(fresh.sum())} proposals")
    idx = np.flatnonzero(fresh)
    rows, replaced = proposals_replace(
        scene=scene, grid=grid, tokens=tokens, meta=meta, job=job,
        # Only this model's own unreviewed proposals (refined or not): other versions and proposers keep theirs.
        replaces=Q(model_version=version, source__in=(DetectionSource.YOLO, DetectionSource.REFINE)),
        boxes_px=boxes_px[idx], class_ids=[int(final_ids[i]) for i in idx],
        scores=[float(yolo_scores[i]) for i in idx], source=DetectionSource.YOLO, proposer=Proposer.YOLO,
        model_version_id=version.pk, proposer_scores=[extra[i] for i in idx], run=run,
    )
    relabelled = int(verdicts.relabel[idx].sum()) if verdicts is not None and len(idx) else 0
    return {
        "model_version": version.pk, "label": str(version), "detections": len(rows), "replaced": replaced,
        "skipped_known": int((~fresh).sum()), "dropped_deleted_class": len(found) - len(kept),
        "relabelled": relabelled, "verified": verdicts is not None, "unverified_why": unverified_why if verdicts is
        None else "", "tiles": int(timings.get("tiles", 0)), "scale": scale,
        "grid": grid_summary(grid) if grid is not None else None,
    }


def predict_job_run(*, job_id: int, claim: bool = True, progress_extra=None) -> Job:
    """Run a YOLO proposals job under its Job row (called by detectors.tasks.gpu_predict_task)."""
    job = Job.objects.select_related("scene", "scene__project", "created_by").get(pk=job_id)

    def work(run: RunContext):
        result = predict_run(job=job, run=run)
        return result, (f"{result['label']}: {result['detections']} proposals ({result['relabelled']} relabelled, "
                        f"{result['replaced']} replaced)")

    return job_services.job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)
