"""Which objects an export holds: the project's classes, the chosen scenes, and the objects streamed scene by scene."""

from collections.abc import Iterator

import shapely
from django.db.models import Count

from annotate.errors import DomainError
from annotate.models import Annotation, Detection, ObjectClass, Project, Scene, SceneStatus

from .export_types import ExportClass, ExportObject

CHUNK = 2000  # rows fetched per round trip while streaming (a server-side cursor: never the whole set in memory)
EXAMPLE_SOURCE = "example"


def export_classes(project: Project) -> list[ExportClass]:
    """Every class of the project by stable index (a class left out of the export keeps its index)."""
    return [ExportClass(index=c.index, name=c.name, id=c.pk)
            for c in ObjectClass.objects.filter(project=project).order_by("index")]


def export_scenes(project: Project, params: dict) -> list[Scene]:
    """The chosen scenes (every ready scene when none is chosen); a scene not ready or not of the project is refused."""
    ready = Scene.objects.filter(project=project, status=SceneStatus.READY).order_by("id")
    if not params["scene_ids"]:
        return list(ready)
    scenes = {s.pk: s for s in Scene.objects.filter(project=project, pk__in=params["scene_ids"])}
    missing = [pk for pk in params["scene_ids"] if pk not in scenes]
    if missing:
        raise DomainError(f"Scenes {missing} are not scenes of this project; choose among its scenes.",
                          detail={"scene_ids": missing})
    not_ready = [s.name for s in scenes.values() if s.status != SceneStatus.READY]
    if not_ready:
        raise DomainError(f"Scenes {', '.join(not_ready)} are not ready (still ingesting or failed); leave them out "
                          "or wait for their ingest.", detail={"scene_ids": not_ready})
    return [scenes[pk] for pk in params["scene_ids"]]


def check_classes(project: Project, params: dict) -> None:
    """Refuse class ids that are not the project's."""
    known = set(ObjectClass.objects.filter(project=project).values_list("pk", flat=True))
    unknown = [pk for pk in params["class_ids"] if pk not in known]
    if unknown:
        raise DomainError(f"Classes {unknown} are not classes of this project; choose among its classes.",
                          detail={"class_ids": unknown})


def _detections(scene_ids: list[int], params: dict):
    rows = Detection.objects.filter(scene_id__in=scene_ids, status__in=params["statuses"])
    if params["class_ids"]:
        rows = rows.filter(object_class_id__in=params["class_ids"])
    if params["sources"]:
        rows = rows.filter(source__in=params["sources"])
    return rows


def _examples(scene_ids: list[int], params: dict):
    if not params.get("include_examples"):
        return Annotation.objects.none()
    rows = Annotation.objects.filter(scene_id__in=scene_ids)
    if params["class_ids"]:
        rows = rows.filter(object_class_id__in=params["class_ids"])
    return rows


def selection_counts(scenes: list[Scene], params: dict) -> dict[int, int]:
    """Selected objects per scene id (what the writers must account for, object by object)."""
    ids = [s.pk for s in scenes]
    counts = {pk: 0 for pk in ids}
    for qs in (_detections(ids, params), _examples(ids, params)):
        for row in qs.values("scene_id").annotate(n=Count("id")).order_by():
            counts[row["scene_id"]] += row["n"]
    return counts


def objects_of(scene: Scene, params: dict) -> Iterator[ExportObject]:
    """The scene's selected objects, by id (detections, then examples), streamed from a server-side cursor."""
    fields = ("id", "object_class__index", "object_class__name", "geometry", "status", "source", "score",
              "model_key", "reviewer__username", "reviewed_at")
    for row in _detections([scene.pk], params).order_by("id").values_list(*fields).iterator(chunk_size=CHUNK):
        pk, index, name, geometry, status, source, score, model_key, reviewer, reviewed_at = row
        yield ExportObject(
            key=f"detection:{pk}", scene_id=scene.pk, class_index=index, class_name=name,
            geometry=shapely.from_wkb(bytes(geometry.wkb)), status=status, source=source, score=score,
            model_key=model_key, reviewer=reviewer or "", reviewed_at=reviewed_at.isoformat() if reviewed_at else None,
        )
    fields = ("id", "object_class__index", "object_class__name", "geometry", "author__username", "created_at")
    for pk, index, name, geometry, author, created in (
        _examples([scene.pk], params).order_by("id").values_list(*fields).iterator(chunk_size=CHUNK)
    ):
        yield ExportObject(
            key=f"example:{pk}", scene_id=scene.pk, class_index=index, class_name=name,
            geometry=shapely.from_wkb(bytes(geometry.wkb)), status="example", source=EXAMPLE_SOURCE, score=None,
            model_key="", reviewer=author or "", reviewed_at=created.isoformat() if created else None,
        )


def provenance(scenes: list[Scene], params: dict) -> dict:
    """Model keys and reviewers behind the selected objects (for the manifest)."""
    rows = _detections([s.pk for s in scenes], params)
    model_keys = sorted(k for k in rows.values_list("model_key", flat=True).distinct().order_by() if k)
    reviewers = sorted(r for r in rows.values_list("reviewer__username", flat=True).distinct().order_by() if r)
    return {"model_keys": model_keys, "reviewers": reviewers}
