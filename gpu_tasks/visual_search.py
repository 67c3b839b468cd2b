"""Visual search of a scene: patch grid x class prototypes -> ranked candidate detections in PostGIS."""

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotate import geo
from annotate.errors import DomainError
from annotate.models import Annotation, Detection, DetectionSource, DetectionStatus, ObjectClass, Proposer, Scene

from .embedding import grid_open, grid_summary, scene_grid_ensure
from .inference.box_verification import box_vectors
from .inference.grid import GridMeta
from .inference.search import SearchParams, box_iou_xyxy, find_candidates, score_grid
from .models import Job, ObjectEmbedding, PatchGrid
from .object_index import class_prototypes, geometry_digest, object_vectors_sync
from .run_context import RunContext

# A candidate overlapping a reviewed detection or an example this much is that object again: not proposed.
KNOWN_OBJECT_IOU = 0.3
# Unreviewed proposals a new search of their class replaces: its own, whether or not refined since.
REPLACED_SOURCES = (DetectionSource.SEARCH, DetectionSource.REFINE)
# Examples per class measured for the typical object size (the newest ones).
SIZE_SAMPLE = 200
# First key of the two-key advisory lock that serialises the writing of a scene's proposals (the second is
# the scene id); "PROP" in ASCII, far from any scene id the grid lock pairs with a grid key.
PROPOSALS_LOCK_NS = 0x50524F50


def _scene_proposals_lock(scene: Scene) -> None:
    """Hold the scene's proposals lock until the current transaction ends (every worker, every process)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PROPOSALS_LOCK_NS, int(scene.pk) & 0x7FFFFFFF])


@dataclass
class SearchRequest:
    """What a user asks of a search (the job's params)."""

    classes: list[int] = field(default_factory=list)  # class ids; empty = every class with examples
    thresholds: dict[int, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    scale: float = 1.0
    negative_weight: float = 0.5
    margin: float = 0.02
    max_candidates: int | None = None
    use_accepted: bool = True

    @classmethod
    def from_params(cls, params: dict) -> "SearchRequest":
        """Read a job's stored params, validated where they entered (gpu_tasks.serializers.SearchParamsSerializer)."""
        return cls(
            classes=[int(c) for c in params.get("classes") or []],
            # JSON object keys are strings; class ids are ints everywhere else.
            thresholds={int(k): float(v) for k, v in (params.get("thresholds") or {}).items()},
            default_threshold=float(params.get("default_threshold", 0.5)),
            scale=float(params.get("scale", 1.0)),
            negative_weight=float(params.get("negative_weight", 0.5)),
            margin=float(params.get("margin", 0.02)),
            max_candidates=params.get("max_candidates"),
            use_accepted=bool(params.get("use_accepted", True)),
        )

    def to_params(self) -> dict:
        """JSON-ready params (class ids as strings in thresholds, as JSON keys are)."""
        data = asdict(self)
        data["thresholds"] = {str(k): v for k, v in self.thresholds.items()}
        return data


def _classes_to_search(scene: Scene, req: SearchRequest) -> list[ObjectClass]:
    """The requested classes of the scene's project, or all of them."""
    qs = ObjectClass.objects.filter(project_id=scene.project_id)
    if req.classes:
        qs = qs.filter(pk__in=req.classes)
        if qs.count() != len(set(req.classes)):
            raise DomainError("Some requested classes do not belong to this scene's project.")
    return list(qs)


def _polygons_px(scene: Scene, polygons: list[Polygon]) -> list[list[np.ndarray]]:
    """EPSG:4326 polygons' rings (exterior first) in scene pixels, every ring of every polygon in one PROJ call.

    The same numbers as object_index.polygon_px one polygon at a time, which costs a PROJ call each: seconds on
    a scene with thousands of reviewed detections.
    """
    rings = [np.asarray(ring.coords, dtype=np.float64).reshape(-1, 2) for polygon in polygons for ring in polygon]
    if not rings:
        return [[] for _ in polygons]
    lonlat = np.concatenate(rings)
    xs, ys = geo.SceneFrame.of(scene).to_px(lonlat[:, 0], lonlat[:, 1])
    px = np.stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)], axis=-1)
    parts = iter(np.split(px, np.cumsum([len(r) for r in rings])[:-1]))
    return [[next(parts) for _ in range(len(polygon))] for polygon in polygons]


def _known_boxes_px(scene: Scene) -> np.ndarray:
    """Pixel boxes of the scene's examples and reviewed detections (objects a person already decided on)."""
    geoms = list(scene.annotations.values_list("geometry", flat=True))
    geoms += list(scene.detections.exclude(status=DetectionStatus.PROPOSED).values_list("geometry", flat=True))
    boxes = [[*rings[0].min(axis=0), *rings[0].max(axis=0)] for rings in _polygons_px(scene, geoms)]
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _area_px(rings: list) -> float:
    """Area in px^2 of a polygon's rings (exterior first, holes after), by the shoelace formula."""
    areas = []
    for ring in rings:
        x, y = np.asarray(ring, dtype=np.float64).T
        areas.append(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return areas[0] - sum(areas[1:])


def _object_sizes_cells(
    scene: Scene, classes: list[ObjectClass], cell_px: float
) -> tuple[dict[int, float], dict[int, float]]:
    """Per class, from its examples and accepted detections (any scene of the project), in this grid's cells:
    the median area (typical object), and the largest box counting every cell it can touch (the size limit).
    """
    typical, largest = {}, {}
    for cls in classes:
        examples = Annotation.objects.filter(object_class=cls).order_by("-created_at")
        geoms = list(examples.values_list("geometry", flat=True)[:SIZE_SAMPLE])
        if len(geoms) < SIZE_SAMPLE:
            accepted = Detection.objects.filter(object_class=cls, status=DetectionStatus.ACCEPTED)
            newest = accepted.order_by("-created_at").values_list("geometry", flat=True)
            geoms += list(newest[: SIZE_SAMPLE - len(geoms)])
        if not geoms:
            continue
        rings = _polygons_px(scene, geoms)
        typical[cls.pk] = float(np.median([_area_px(r) for r in rings])) / cell_px**2
        extents = np.asarray([np.ptp(np.asarray(r[0], dtype=np.float64), axis=0) for r in rings]) / cell_px
        # An object w cells wide straddles up to ceil(w) + 1 cells, and a candidate's box is whole cells.
        # (Less a hair, so that a box exactly 4 cells wide, read back through the CRS, counts as 4.)
        largest[cls.pk] = float(np.max(np.prod(np.ceil(extents - 1e-6) + 1, axis=1)))
    return typical, largest


# One polygon of one 5-point ring as little-endian WKB: byte order, type 3 (polygon), 1 ring, 5 points, x y doubles.
_BOX_WKB = np.dtype([("order", "u1"), ("type", "<u4"), ("rings", "<u4"), ("points", "<u4"), ("xy", "<f8", (5, 2))])


def _polygons_from_rings(rings: np.ndarray) -> list[Polygon]:
    """(n, 5, 2) closed rings as EPSG:4326 GEOS polygons, each parsed from WKB (one call, not one per coordinate)."""
    wkb = np.zeros(len(rings), dtype=_BOX_WKB)
    wkb["order"], wkb["type"], wkb["rings"], wkb["points"], wkb["xy"] = 1, 3, 1, 5, rings
    return [GEOSGeometry(memoryview(row.tobytes()), srid=4326) for row in wkb]


def _boxes_polygons_lonlat(scene: Scene, boxes_px: np.ndarray) -> tuple[list[Polygon], list[Polygon]]:
    """(n, 4) XYXY pixel boxes as EPSG:4326 polygons and their lon/lat envelopes, all corners converted in one
    call (one PROJ set-up, not one per box)."""
    if not len(boxes_px):
        return [], []
    rings_px = np.asarray([geo.box_px_to_ring(b) for b in boxes_px], dtype=np.float64)  # (n, 5, 2)
    lons, lats = geo.SceneFrame.of(scene).to_lonlat(rings_px[..., 0].ravel(), rings_px[..., 1].ravel())
    rings = np.stack([np.asarray(lons), np.asarray(lats)], axis=-1).reshape(rings_px.shape)
    (x0, y0), (x1, y1) = rings.min(axis=1).T, rings.max(axis=1).T
    # As GEOS writes an envelope: (x0 y0, x1 y0, x1 y1, x0 y1, x0 y0).
    envelopes = np.stack([np.stack(c, axis=-1) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))], axis=1)
    return _polygons_from_rings(rings), _polygons_from_rings(envelopes)


# The columns _proposals_insert writes; a column added to Detection must be added there (it says so at once).
_PROPOSAL_COLUMNS = {
    "scene_id", "object_class_id", "geometry", "bbox", "prompt_box", "score", "source", "status", "version",
    "reviewer_id", "reviewed_at", "job_id", "model_key", "created_at", "proposer", "model_version_id",
    "proposer_scores",
}


def _proposals_insert(rows: list[Detection]) -> None:
    """Insert new proposals of one source, proposer and job in one statement of arrays (geometries as WKB) and set
    their ids.

    Django's bulk_create compiles every value of every row in Python: ~0.5 s of the ~1.5 s an update takes for
    a thousand proposals on a 10k x 10k scene; this is one round trip with ten parameters.
    """
    if not rows:
        return
    written = {f.column for f in Detection._meta.concrete_fields if not f.primary_key and not f.generated}
    if written != _PROPOSAL_COLUMNS:
        raise RuntimeError(
            f"annotate.Detection's columns changed ({sorted(written ^ _PROPOSAL_COLUMNS)}): update "
            "gpu_tasks.visual_search._proposals_insert"
        )
    first = rows[0]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Detection._meta.db_table}
                (scene_id, object_class_id, geometry, bbox, prompt_box, score, source, status, version,
                 reviewer_id, reviewed_at, job_id, model_key, created_at, proposer, model_version_id, proposer_scores)
            SELECT %s, c, ST_GeomFromWKB(g, 4326), ST_GeomFromWKB(b, 4326), ST_GeomFromWKB(g, 4326), s, %s, %s, 1,
                   NULL, NULL, %s, %s, %s, %s, %s, p::jsonb
            FROM unnest(%s::bigint[], %s::bytea[], %s::bytea[], %s::float8[], %s::text[])
                 WITH ORDINALITY AS t(c, g, b, s, p, n)
            ORDER BY n
            RETURNING id
            """,  # noqa: S608 - the table name is the model's
            [
                first.scene_id, first.source, DetectionStatus.PROPOSED, first.job_id, first.model_key, timezone.now(),
                first.proposer or Proposer.SEARCH, first.model_version_id,
                [r.object_class_id for r in rows],
                [bytes(r.geometry.wkb) for r in rows],
                [bytes(r.bbox.wkb) for r in rows],
                [r.score for r in rows],
                [json.dumps(r.proposer_scores or {}) for r in rows],
            ],
        )
        ids = [row[0] for row in cursor.fetchall()]
    for row, pk in zip(rows, ids, strict=True):
        row.pk, row.status, row.version = pk, DetectionStatus.PROPOSED, 1
        row._state.adding, row._state.db = False, connection.alias


def _proposals_index(
    *, scene: Scene, grid: PatchGrid, rows: list[Detection], vectors: np.ndarray, lock: bool = False
) -> None:
    """Object-index rows for new proposals; the geometry digest is the stored polygon's, so object_vectors_sync
    sees them as indexed and never pools them again.

    lock=False: inside the transaction that created them (nobody else sees them yet). lock=True: later, in a
    transaction of its own: rows deleted meanwhile (the next update replaced them) are skipped, the others are
    kept from deletion until the vectors are in, and a vector someone wrote meanwhile is kept.
    """
    with transaction.atomic() if lock else nullcontext():
        if lock:
            alive = _detections_key_share([d.pk for d in rows])
            pairs = [(d, v) for d, v in zip(rows, vectors, strict=True) if d.pk in alive]
        else:
            pairs = list(zip(rows, vectors, strict=True))
        ObjectEmbedding.objects.bulk_create(
            [
                ObjectEmbedding(
                    project_id=scene.project_id,
                    scene=scene,
                    detection=det,
                    space_key=grid.space_key,
                    dim=grid.dim,
                    vector=vector.tolist(),  # a list: pgvector's fast path to text
                    geometry_digest=geometry_digest(det.geometry),
                )
                for det, vector in pairs
            ],
            ignore_conflicts=lock,
        )


def _detections_key_share(ids: list[int]) -> set[int]:
    """The ids of these detections that still exist, kept from deletion (not from edits) until the transaction ends.

    FOR KEY SHARE is what a foreign-key check takes: a reviewer's decision on one of them never waits on it.
    """
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Detection._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",  # noqa: S608
            [sorted(ids)],
        )
        return {row[0] for row in cursor.fetchall()}


# What refers to a detection, all handled by _proposals_delete: the object index's vectors (deleted with it) and
# the review audit trail (kept; it has no foreign-key constraint, so a replaced proposal's history stays).
_PROPOSAL_RELATIONS = {("gpu_tasks.objectembedding", "detection"), ("review.reviewevent", "detection")}


def search_replaces(class_ids: list[int]) -> Q:
    """What a search or Update proposals replaces: the unreviewed prototype-search proposals of its classes, refined
    or not (a probe's or a YOLO model's proposals belong to their own proposer)."""
    # A blank proposer: a proposal written before proposers were recorded (the migration fills it) or by hand.
    return Q(proposer__in=(Proposer.SEARCH, ""), source__in=REPLACED_SOURCES, object_class_id__in=class_ids)


def _proposals_delete(*, scene: Scene, replaces: Q) -> int:
    """Delete the scene's unreviewed proposals that `replaces` selects, and their vectors; how many went.

    The rows are locked first (FOR UPDATE, the status re-checked on the locked version): one a reviewer decided
    a moment ago is no longer proposed and stays, and no vector can be added to one (an update's late indexing
    takes FOR KEY SHARE) between deleting the vectors and deleting the rows.
    """
    proposals = Detection.objects.filter(replaces, scene=scene, status=DetectionStatus.PROPOSED)
    doomed = list(proposals.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True))
    if not doomed:
        return 0
    relations = {(r.related_model._meta.label_lower, r.field.name) for r in Detection._meta.related_objects}
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {ObjectEmbedding._meta.db_table} WHERE detection_id = ANY(%s)",  # noqa: S608 - model's table
            [doomed],
        )
        if relations <= _PROPOSAL_RELATIONS:
            # Django's delete would first load every row, three geometries each, to cascade by hand: most of the
            # replacement's time on a thousand proposals.
            cursor.execute(f"DELETE FROM {Detection._meta.db_table} WHERE id = ANY(%s)", [doomed])  # noqa: S608
            return cursor.rowcount
    _, deleted = Detection.objects.filter(pk__in=doomed).delete()  # a relation added since: Django cascades it
    return deleted.get("annotate.Detection", 0)


def scene_search(
    *,
    scene: Scene,
    job: Job | None,
    request: SearchRequest,
    run: RunContext,
) -> dict:
    """Search a scene for objects like the examples; replace the previous search's unreviewed proposals.

    Embeds the scene first when its grid is missing (never again after that). Reviewed detections are
    never touched, and candidates on top of them or of examples are not proposed again.
    """
    _classes_to_search(scene, request)  # a bad class list is refused before minutes of embedding, not after
    grid = scene_grid_ensure(
        scene=scene,
        scale=request.scale,
        job=None,
        run=run.part(0.0, 0.8),
    )
    return proposals_score_and_replace(scene=scene, grid=grid, job=job, request=request, run=run.part(0.8, 1.0))


def proposals_score_and_replace(
    *,
    scene: Scene,
    grid: PatchGrid,
    job: Job | None,
    request: SearchRequest,
    run: RunContext,
    index_later: list[Callable[[], None]] | None = None,
) -> dict:
    """Score a scene's existing grid against the current examples and decisions; replace its unreviewed proposals.

    The part of a search after the grid exists, shared by search and "Update proposals" (gpu_tasks.requery):
    no backbone here, only the grid on disk, the object index and one matmul per row chunk. The new proposals'
    vectors are written under the proposals lock, or, given `index_later`, appended to it as a callable for the
    caller to run once the proposals are out (a reviewer waiting for them needs no vectors of unreviewed ones).
    """
    classes = _classes_to_search(scene, request)
    meta, tokens = grid_open(grid)
    run.progress(0.0, "Scoring the scene against the examples")
    with run.stage("object_vectors"):
        # Examples and reviewed detections make the prototypes; the old proposals are about to be replaced.
        object_vectors_sync(scene=scene, grid=grid, meta=meta, tokens=tokens, include_proposed=False)
    with run.stage("prototypes"):
        protos, counts = class_prototypes(
            project=scene.project,
            space_key=grid.space_key,
            dim=grid.dim,
            classes=classes,
            use_accepted=request.use_accepted,
        )
    with run.stage("object_sizes"):
        typical_cells, largest_cells = _object_sizes_cells(scene, classes, meta.cell_px)
    params = SearchParams(
        thresholds=request.thresholds,
        default_threshold=request.default_threshold,
        negative_weight=request.negative_weight,
        margin=request.margin,
        max_candidates=request.max_candidates,
        # Touching objects of a class are split only where the component is larger than its examples.
        object_cells=typical_cells,
        # A candidate far larger than every example (a whole scene of look-alike texture) is no object.
        max_object_cells=largest_cells,
    )
    with run.stage("similarity"):
        best_class, best_score = score_grid(tokens, protos, params)
    with run.stage("components"):
        dropped: dict = {}
        candidates = find_candidates(best_class, best_score, meta, params, counts=dropped)
    with run.stage("known_objects"):
        boxes = np.asarray([c.box_px for c in candidates], dtype=np.float64).reshape(-1, 4)
        fresh = [c for c, keep in zip(candidates, known_object_mask(scene, boxes), strict=True) if keep]
    run.progress(0.75, f"Writing {len(fresh)} candidates")
    searched_ids = [p.class_id for p in protos]
    by_id = {c.pk: c for c in classes}
    rows, replaced = proposals_replace(
        scene=scene, grid=grid, tokens=tokens, meta=meta, job=job,
        # Refinement changes a proposal's source but not its proposer: a refined, unreviewed proposal is still this
        # pipeline's output and goes too, or the new boxes would land beside the old outlines.
        replaces=search_replaces(searched_ids),
        boxes_px=np.asarray([c.box_px for c in fresh], dtype=np.float64).reshape(-1, 4),
        class_ids=[c.class_id for c in fresh], scores=[c.score for c in fresh],
        source=DetectionSource.SEARCH, proposer=Proposer.SEARCH, run=run, index_later=index_later,
    )
    per_class = {by_id[i].name: sum(1 for c in fresh if c.class_id == i) for i in searched_ids}
    return {
        "detections": len(rows),
        "replaced": replaced,
        "skipped_known": len(candidates) - len(fresh),
        "dropped_oversize": dropped.get("dropped_oversize", 0),
        "per_class": per_class,
        "examples": {by_id[k].name: v for k, v in counts.items()},
        "grid": grid_summary(grid),
    }


def known_object_mask(scene: Scene, boxes_px: np.ndarray) -> np.ndarray:
    """True for each XYXY pixel box that is no known object (a reviewed detection or an example) again."""
    known = _known_boxes_px(scene)
    if not len(known) or not len(boxes_px):
        return np.ones(len(boxes_px), dtype=bool)
    return np.asarray([box_iou_xyxy(np.asarray(b), known).max() < KNOWN_OBJECT_IOU for b in boxes_px], dtype=bool)


def proposals_replace(
    *,
    scene: Scene,
    grid: PatchGrid | None,
    tokens: np.ndarray | None,
    meta: GridMeta | None,
    job: Job | None,
    replaces: Q,
    boxes_px: np.ndarray,
    class_ids: list[int],
    scores: list[float],
    source: str,
    proposer: str,
    run: RunContext,
    model_version_id: int | None = None,
    proposer_scores: list[dict] | None = None,
    index_later: list[Callable[[], None]] | None = None,
) -> tuple[list[Detection], int]:
    """Replace the scene's unreviewed proposals that `replaces` selects with new boxes; (new rows, replaced count).

    Every proposer (prototype search, probe, YOLO) writes through here: the proposals lock, the delete, one insert
    and the new rows' object-index vectors (now, or appended to `index_later` for after the reviewer has them).
    grid None (YOLO without verification on a scene never embedded): no vectors; a proposal is pooled once reviewed.
    """
    by_id = {c.pk: c for c in ObjectClass.objects.filter(project_id=scene.project_id, pk__in=set(class_ids))}
    with run.stage("save_detections"), transaction.atomic():
        # Two writers of one scene must not interleave delete and insert: under READ COMMITTED each would
        # delete only the rows committed before it and both outputs would stay (every proposal twice), and
        # one would index detections the other deletes. The lock makes them take turns; the later one wins.
        _scene_proposals_lock(scene)
        with run.stage("replace_delete"):
            replaced = _proposals_delete(scene=scene, replaces=replaces)
        with run.stage("replace_insert"):
            rows = []
            polygons, envelopes = _boxes_polygons_lonlat(scene, boxes_px)
            extra = proposer_scores or [{} for _ in class_ids]
            for cls, score, polygon, envelope, more in zip(class_ids, scores, polygons, envelopes, extra, strict=True):
                rows.append(
                    Detection(
                        scene=scene,
                        object_class=by_id[cls],
                        geometry=polygon,
                        bbox=envelope,
                        prompt_box=polygon,  # what refinement prompts SAM2 with, however often it runs
                        score=float(np.clip(score, 0.0, 1.0)),
                        source=source,
                        proposer=proposer,
                        model_version_id=model_version_id,
                        proposer_scores=more,
                        model_key=grid.space_key if grid is not None else "",
                        job=job,
                    )
                )
            _proposals_insert(rows)
        if index_later is None and grid is not None:
            # Indexed under the same lock: the next search cannot delete these rows before their vectors are in.
            with run.stage("replace_index"):
                _proposals_index(scene=scene, grid=grid, rows=rows, vectors=box_vectors(tokens, meta, boxes_px))
    if index_later is not None and grid is not None:
        index_later.append(
            lambda: _proposals_index(
                scene=scene, grid=grid, rows=rows, vectors=box_vectors(tokens, meta, boxes_px), lock=True
            )
        )
    return rows, replaced


def class_object_cells(scene: Scene, classes: list[ObjectClass], cell_px: float) -> tuple[dict, dict]:
    """Typical and largest object size per class in grid cells (for another proposer's SearchParams)."""
    return _object_sizes_cells(scene, classes, cell_px)
