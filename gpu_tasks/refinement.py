"""SAM2 refinement of detections: box -> mask -> valid polygon in EPSG:4326, with an optional re-scored class match."""


import numpy as np
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db.models import F

from annotate import geo, storage
from annotate.errors import DomainError
from annotate.models import Detection, DetectionSource, DetectionStatus, Scene

from . import runtime
from .embedding import grid_open, scene_rgb_reader
from .inference.errors import IncompatibleEmbeddings
from .inference.grid import is_complete
from .inference.prototypes import prototype_from_polygon
from .models import Job, PatchGrid
from .object_index import class_prototypes, polygon_px
from .run_context import RunContext

# Re-verification mixes the refined region's similarity into the search score this much.
REVERIFY_WEIGHT = 0.5


def _detections_to_refine(scene: Scene, detection_ids: list[int] | None) -> list[Detection]:
    """The chosen detections of the scene, or all its proposed ones."""
    qs = scene.detections.select_related("object_class")
    if detection_ids:
        found = list(qs.filter(pk__in=detection_ids))
        if len(found) != len(set(detection_ids)):
            raise DomainError("Some detections to refine are not in this scene (or were deleted); reload and retry.")
        return found
    return list(qs.filter(status=DetectionStatus.PROPOSED))


def _search_grid(scene: Scene, detections: list[Detection]) -> PatchGrid | None:
    """The complete patch grid in the vector space the detections were found in (no backbone needed)."""
    spaces = {d.model_key for d in detections if d.model_key}
    for grid in PatchGrid.objects.filter(scene=scene, space_key__in=spaces).order_by("-created_at"):
        if is_complete(storage.absolute(grid.path)):
            return grid
    return None


def _prompt_polygon(detection: Detection) -> Polygon:
    """What SAM2 is prompted with: the proposer's box, else (older rows) the detection's current box."""
    return detection.prompt_box or detection.bbox or detection.geometry.envelope


def _box_px(scene: Scene, detection: Detection) -> list[float]:
    """The detection's prompt box (never its last outline, which would grow with each refinement), XYXY px."""
    ring = np.asarray(polygon_px(scene, _prompt_polygon(detection))[0])
    (x0, y0), (x1, y1) = ring.min(axis=0), ring.max(axis=0)
    return [float(x0), float(y0), float(x1), float(y1)]


def _polygon_lonlat(scene: Scene, polygons_px: list) -> Polygon | None:
    """The largest valid part of a mask's polygons, in EPSG:4326 (None when nothing valid remains)."""
    frame = geo.SceneFrame.of(scene)
    best: Polygon | None = None
    for rings in polygons_px:
        lonlat = frame.rings_to_lonlat([list(map(tuple, r)) for r in rings])
        try:
            poly: GEOSGeometry = Polygon(*lonlat, srid=4326)
        except Exception:  # noqa: S112 - a ring GEOS refuses (too few points) is skipped, the rest kept
            continue
        if not poly.valid:
            poly = poly.make_valid()
            # make_valid may return a collection; keep its largest polygon.
            parts = [g for g in (poly if poly.geom_type != "Polygon" else [poly]) if g.geom_type == "Polygon"]
            if not parts:
                continue
            poly = max(parts, key=lambda g: g.area)
        if poly.area > 0 and (best is None or poly.area > best.area):
            best = poly
    return best


def detections_refine(
    *,
    scene: Scene,
    job: Job | None,
    detection_ids: list[int] | None,
    reverify: bool,
    run: RunContext,
) -> dict:
    """Refine detections with SAM2 on context crops; each becomes a polygon (a degenerate mask keeps its box).

    An edit made by a reviewer while the job ran wins: that detection is left as the reviewer made it.
    """
    from .inference.refiner import refine_boxes

    detections = _detections_to_refine(scene, detection_ids)
    if not detections:
        return {"refined": 0, "kept_box": 0, "skipped_stale": 0, "message": "Nothing to refine"}
    refiner = runtime.refiner()
    boxes = np.asarray([_box_px(scene, d) for d in detections], dtype=np.float64)
    with scene_rgb_reader(scene) as read_rgb:
        results = refine_boxes(
            refiner=refiner,
            read_rgb=read_rgb,
            boxes_px=boxes,
            scene_w=scene.width,
            scene_h=scene.height,
            progress=run.part(0.0, 0.9).progress,
            should_cancel=run.should_cancel,
            timings=run.timings,
        )
    timings = run.timings
    timings["sam2"] = timings.get("sam_embed", 0.0) + timings.get("sam_decode", 0.0)
    protos, reverify_note = {}, "not asked" if not reverify else ""
    grid = _search_grid(scene, detections) if reverify else None
    if reverify and grid is None:
        reverify_note = "the scene has no patch grid of the search that found these detections"
    if grid is not None:
        meta, tokens = grid_open(grid)
        classes = list({d.object_class_id: d.object_class for d in detections}.values())
        try:
            found, _ = class_prototypes(project=scene.project, space_key=grid.space_key, dim=grid.dim, classes=classes)
            protos = {p.class_id: p for p in found}
        except (DomainError, IncompatibleEmbeddings) as exc:
            # Re-scoring is optional: the polygons are still worth having; the result says why scores stayed.
            reverify_note = getattr(exc, "message", str(exc))
    refined = kept_box = stale = 0
    run.progress(0.9, "Saving polygons")
    with run.stage("save_polygons"):
        for det, res in zip(detections, results, strict=True):
            polygon = _polygon_lonlat(scene, res.polygons_px) if res is not None else None
            if polygon is None:
                kept_box += 1
                continue
            score = det.score
            proto = protos.get(det.object_class_id)
            if proto is not None:
                region = prototype_from_polygon(tokens, meta, polygon_px(scene, polygon))
                match = float(np.max(proto.positives @ region))
                if len(proto.negatives):
                    match -= 0.5 * max(0.0, float(np.max(proto.negatives @ region)))
                base = det.score if det.score is not None else match
                score = float(np.clip((1 - REVERIFY_WEIGHT) * base + REVERIFY_WEIGHT * match, 0.0, 1.0))
            updated = Detection.objects.filter(pk=det.pk, version=det.version).update(
                geometry=polygon,
                bbox=polygon.envelope,
                # An older row without one keeps the box it was first refined from; a set one is never replaced.
                **({"prompt_box": _prompt_polygon(det)} if det.prompt_box is None else {}),
                source=DetectionSource.REFINE,
                score=score,
                version=F("version") + 1,
                job=job,
            )
            if updated:
                refined += 1
            else:
                stale += 1
    return {
        "refined": refined,
        "kept_box": kept_box,
        "skipped_stale": stale,
        "reverified": bool(protos),
        **({"reverify_skipped": reverify_note} if not protos else {}),
    }
