"""Accuracy areas and each proposer's accuracy in them: per class precision, recall, F1 and AP against what
reviewers accepted (or drew) inside ground a manager declared exhaustively labelled.

An object belongs to an area when its centroid does (as with work cells), and counts only for the classes the area
is complete for. Boxes are compared in web-map metres (EPSG:3857 is conformal, so a box's IoU there is its IoU on
the ground at this scale).
"""

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.db.models.functions import Centroid
from django.contrib.gis.geos import MultiPolygon
from django.db import transaction

from annotate import selectors as annotate_selectors
from annotate.errors import DomainError
from annotate.models import Detection, DetectionSource, DetectionStatus, ObjectClass, Project, Proposer, Scene
from annotate.permissions import Action, require
from gpu_tasks.inference.accuracy import accuracy_by_class

from .accuracy_models import AccuracyArea
from .cells import area_polygon
from .cells_models import WorkCell


def _class_ids(project: Project, class_ids: list[int] | None) -> list[int]:
    """The classes an area is complete for ([] = every class), refused when not the project's."""
    ids = sorted(set(class_ids or []))
    known = set(ObjectClass.objects.filter(project=project, pk__in=ids).values_list("pk", flat=True))
    unknown = [pk for pk in ids if pk not in known]
    if unknown:
        raise DomainError(f"Classes {unknown} are not classes of this project; choose among its classes.",
                          detail={"class_ids": unknown})
    return ids


def accuracy_areas_add(*, scene: Scene, actor: AbstractBaseUser, area: dict | None = None,
                       cell_ids: list[int] | None = None, class_ids: list[int] | None = None) -> list[AccuracyArea]:
    """Mark a drawn polygon, or work cells of the scene, as exhaustively labelled for the classes (managers)."""
    require(annotate_selectors.role_of(user=actor, project=scene.project), Action.MARK_ACCURACY_AREAS)
    classes = _class_ids(scene.project, class_ids)
    if bool(area) == bool(cell_ids):
        raise DomainError("Give either a drawn area (a GeoJSON Polygon) or cell_ids of the scene's work cells.")
    with transaction.atomic():
        if area:
            return [AccuracyArea.objects.create(project=scene.project, scene=scene, geometry=area_polygon(scene, area),
                                                class_ids=classes, created_by=actor)]
        cells = list(WorkCell.objects.filter(scene=scene, pk__in=cell_ids))
        missing = sorted(set(cell_ids) - {c.pk for c in cells})
        if missing:
            raise DomainError(f"Cells {missing} are not work cells of this scene.", detail={"cell_ids": missing})
        return [AccuracyArea.objects.create(project=scene.project, scene=scene, geometry=c.geometry, cell=c,
                                            class_ids=classes, created_by=actor) for c in cells]


def accuracy_area_delete(*, area: AccuracyArea, actor: AbstractBaseUser) -> None:
    """Unmark an area (managers)."""
    require(annotate_selectors.role_of(user=actor, project=area.scene.project), Action.MARK_ACCURACY_AREAS)
    area.delete()


def _in_areas(rows, areas: list[AccuracyArea]):
    """(class id, box in EPSG:3857 XYXY, score) of the rows whose centroid is in an area complete for their class."""
    union_all = [a.geometry for a in areas if not a.class_ids]
    by_class: dict[int, list] = {}
    for a in areas:
        for c in a.class_ids:
            by_class.setdefault(c, []).append(a.geometry)
    out = []
    for row in rows.annotate(center=Centroid("geometry")).only("object_class_id", "geometry_3857", "score"):
        shapes = union_all + by_class.get(row.object_class_id, [])
        if any(shape.contains(row.center) for shape in shapes):
            out.append((row.object_class_id, list(row.geometry_3857.extent), row.score))
    return out


def proposer_accuracy(*, project: Project, source: str | None = None, job_id: int | None = None,
                      model_key: str | None = None, scene_id: int | None = None, proposer: str | None = None,
                      model_version_id: int | None = None) -> dict:
    """Per class accuracy of one proposer over the accuracy areas: a proposer (search, probe, yolo: its proposals
    whether refined since or not) or a source, optionally one job, model key or YOLO model version."""
    if source is not None and source not in DetectionSource.values:
        raise DomainError(f"source must be one of {', '.join(DetectionSource.values)}.")
    if proposer is not None and proposer not in Proposer.values:
        raise DomainError(f"proposer must be one of {', '.join(Proposer.values)}.")
    if source is None and proposer is None:
        proposer = Proposer.YOLO if model_version_id else Proposer.SEARCH
    areas = list(AccuracyArea.objects.filter(project=project, **({"scene_id": scene_id} if scene_id else {})))
    names = dict(ObjectClass.objects.filter(project=project).values_list("pk", "name"))
    scenes = sorted({a.scene_id for a in areas})
    extent = MultiPolygon([a.geometry for a in areas], srid=4326) if areas else None
    found = Detection.objects.filter(scene_id__in=scenes)
    if source:
        found = found.filter(source=source)
    if proposer:
        found = found.filter(proposer=proposer)
    if model_version_id:
        found = found.filter(model_version_id=model_version_id)
    if job_id:
        found = found.filter(job_id=job_id)
    if model_key:
        found = found.filter(model_key=model_key)
    truths = Detection.objects.filter(scene_id__in=scenes, status=DetectionStatus.ACCEPTED)
    if extent is not None:  # the index narrows; the centroid test per area decides
        found = found.filter(geometry__intersects=extent)
        truths = truths.filter(geometry__intersects=extent)
    predictions = [(c, s, b) for c, b, s in _in_areas(found, areas)]
    reviewed = [(c, b) for c, b, _s in _in_areas(truths, areas)]
    figures = accuracy_by_class(predictions, reviewed)
    return {
        "proposer": {"source": source, "proposer": proposer, "job_id": job_id, "model_key": model_key or None,
                     "model_version": model_version_id},
        "areas": len(areas),
        "scenes": scenes,
        "classes": [
            {"class_id": c, "class_name": names.get(c, str(c)), **vars(f)}
            for c, f in sorted(figures.items(), key=lambda kv: names.get(kv[0], ""))
        ],
    }

