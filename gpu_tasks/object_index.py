"""The object index: one vector per example polygon and detection (pgvector), for prototypes and "find similar"."""

import hashlib
from collections import defaultdict

import numpy as np
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Cast, Coalesce
from pgvector.django import CosineDistance, VectorField

from annotate import geo
from annotate.errors import DomainError
from annotate.models import Annotation, Detection, DetectionStatus, ObjectClass, Project, Scene

from .inference.errors import IncompatibleEmbeddings
from .inference.grid import GridMeta
from .inference.prototypes import ClassPrototypes, condense_prototypes, prototype_from_polygon, stack_prototypes
from .models import INDEXED_DIMS, ObjectEmbedding, PatchGrid

MAX_PROTOTYPES_PER_CLASS = 64


def geometry_digest(geometry: GEOSGeometry) -> str:
    """A digest of a geometry's exact coordinates (a reshaped object gets a new one)."""
    return hashlib.blake2s(bytes(geometry.wkb), digest_size=16).hexdigest()


def polygon_px(scene: Scene, polygon: Polygon) -> list[list[tuple[float, float]]]:
    """An EPSG:4326 polygon's rings in the scene's pixel coordinates (exterior first)."""
    return geo.SceneFrame.of(scene).polygon_px(polygon)


def object_vectors_sync(
    *, scene: Scene, grid: PatchGrid, meta: GridMeta, tokens: np.ndarray, include_proposed: bool = True
) -> int:
    """Pool a vector from the grid for every example and detection of the scene that is new or reshaped.

    include_proposed=False skips unreviewed proposals (a search about to replace them needs only the rest).
    """
    known = {
        (a, d): digest
        for a, d, digest in ObjectEmbedding.objects.filter(scene=scene, space_key=grid.space_key).values_list(
            "annotation_id", "detection_id", "geometry_digest"
        )
    }
    rows: dict[str, list[ObjectEmbedding]] = {"annotation": [], "detection": []}
    owners = [("annotation", a) for a in Annotation.objects.filter(scene=scene).only("id", "geometry")]
    detections = Detection.objects.filter(scene=scene)
    if not include_proposed:
        detections = detections.exclude(status=DetectionStatus.PROPOSED)
    owners += [("detection", d) for d in detections.only("id", "geometry")]
    for kind, obj in owners:
        digest = geometry_digest(obj.geometry)
        ident = (obj.pk, None) if kind == "annotation" else (None, obj.pk)
        if known.get(ident) == digest:
            continue
        vector = prototype_from_polygon(tokens, meta, polygon_px(scene, obj.geometry))
        rows[kind].append(
            ObjectEmbedding(
                project_id=scene.project_id,
                scene=scene,
                space_key=grid.space_key,
                dim=grid.dim,
                vector=vector,
                geometry_digest=digest,
                **{f"{kind}_id": obj.pk},
            )
        )
    written = 0
    with transaction.atomic():
        for kind, objs in rows.items():
            # An owner deleted since it was read (a reviewer's delete, another job's replacement) is skipped:
            # its vector is of no use, and inserting it would fail the whole sync on the foreign key.
            owner_id = f"{kind}_id"
            model = Annotation if kind == "annotation" else Detection
            alive = _owners_lock(model, [getattr(o, owner_id) for o in objs])
            objs = [o for o in objs if getattr(o, owner_id) in alive]
            if objs:
                ObjectEmbedding.objects.bulk_create(
                    objs,
                    update_conflicts=True,
                    unique_fields=[kind, "space_key"],
                    update_fields=["vector", "dim", "geometry_digest"],
                )
            written += len(objs)
    return written


def _owners_lock(model, ids: list[int]) -> set[int]:
    """The ids still present, kept from deletion until the transaction ends (edits of them go on)."""
    if not ids:
        return set()
    # FOR KEY SHARE (what a foreign-key check takes; the ORM offers only stronger locks) blocks a delete of
    # the row but no update, so reviewers' edits never wait on indexing. Sorted ids: a steady lock order.
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",  # noqa: S608 - table from model meta
            [sorted(ids)],
        )
        return {row[0] for row in cursor.fetchall()}


def class_prototypes(
    *, project: Project, space_key: str, dim: int, classes: list[ObjectClass], use_accepted: bool = True
) -> tuple[list[ClassPrototypes], dict[int, dict[str, int]]]:
    """Positives (examples, and accepted detections when asked) and negatives (rejected detections) per class.

    Refuses a class whose examples exist only in another vector space (another model or scale), and one
    without any example, saying what to do.
    """
    class_ids = [c.pk for c in classes]
    rows = (
        ObjectEmbedding.objects.filter(project=project, space_key=space_key, dim=dim)
        .annotate(
            cls=Coalesce(F("annotation__object_class_id"), F("detection__object_class_id")),
            det_status=F("detection__status"),
        )
        .filter(cls__in=class_ids)
        # Unreviewed proposals are neither: without this their vectors (a thousand on a large scene, parsed from
        # text) were read only to be dropped, up to half a second of an Update proposals.
        .exclude(detection__status=DetectionStatus.PROPOSED)
        .values_list("cls", "det_status", "vector", "annotation__geometry", "geometry_digest")
    )
    pos, neg = defaultdict(list), defaultdict(list)
    for cls, det_status, vector, example_geometry, digest in rows:
        # An example edited (PATCH) since its scene was last indexed still has its old outline's vector; a search
        # of another scene would use it. Left out here; the next sync of its own scene pools it again.
        if example_geometry is not None and geometry_digest(example_geometry) != digest:
            continue
        if det_status is None or (use_accepted and det_status == DetectionStatus.ACCEPTED):
            pos[cls].append(np.asarray(vector, dtype=np.float32))
        elif det_status == DetectionStatus.REJECTED:
            neg[cls].append(np.asarray(vector, dtype=np.float32))
    counts = {c.pk: {"positives": len(pos[c.pk]), "negatives": len(neg[c.pk])} for c in classes}
    missing = [c for c in classes if not pos[c.pk]]
    for cls in missing:
        other_spaces = (
            ObjectEmbedding.objects.filter(project=project, annotation__object_class=cls)
            .exclude(space_key=space_key)
            .values_list("space_key", flat=True)
            .distinct()
        )
        if other_spaces:
            models = sorted(
                set(PatchGrid.objects.filter(space_key__in=list(other_spaces)).values_list("model_id", flat=True))
            )
            raise IncompatibleEmbeddings(
                f"The examples of class {cls.name!r} were embedded with another model or scale "
                f"({', '.join(models) or 'unknown'}) than this search uses, and vectors of different models "
                "cannot be compared. Search with the same model and scale, or embed the scenes that hold "
                "the examples with the current model (POST /api/scenes/{id}/embed/) and search again."
            )
    if len(missing) == len(classes):
        names = ", ".join(repr(c.name) for c in missing)
        raise DomainError(
            f"No examples to search with for {names}: draw at least one example polygon of the class on a "
            "scene of this project (on an embedded scene, or on this one), then search again."
        )
    # Scoring cost grows with the prototype count: hundreds of accepted detections become a few dozen
    # well-spread directions.
    protos = [
        ClassPrototypes(
            class_id=c.pk,
            positives=condense_prototypes(stack_prototypes(pos[c.pk], dim), MAX_PROTOTYPES_PER_CLASS),
            negatives=condense_prototypes(stack_prototypes(neg[c.pk], dim), MAX_PROTOTYPES_PER_CLASS),
        )
        for c in classes
        if pos[c.pk]
    ]
    return protos, counts


def _distance_expr(dim: int, vector):
    """Cosine distance written with the cast the partial HNSW indexes are built on, so they can serve it."""
    column = Cast("vector", VectorField(dimensions=dim)) if dim in INDEXED_DIMS else F("vector")
    return CosineDistance(column, vector)


def objects_similar(
    *,
    project: Project,
    source: ObjectEmbedding,
    k: int = 20,
    bbox: Polygon | None = None,
    scene_id: int | None = None,
) -> list[ObjectEmbedding]:
    """The k objects of the project nearest to `source` in its vector space, optionally within a bbox or scene."""
    qs = ObjectEmbedding.objects.filter(project=project, space_key=source.space_key, dim=source.dim).exclude(
        pk=source.pk
    )
    if scene_id is not None:
        qs = qs.filter(scene_id=scene_id)
    if bbox is not None:
        qs = qs.filter(Q(annotation__geometry__intersects=bbox) | Q(detection__geometry__intersects=bbox))
    qs = qs.annotate(distance=_distance_expr(source.dim, source.vector)).order_by("distance")
    return list(qs.select_related("annotation__object_class", "detection__object_class")[:k])
