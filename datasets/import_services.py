"""Imports of existing labels: store and inspect an upload, map its classes, and create examples or accepted
detections through a job, with a report of what was imported, repaired, split and skipped (and why)."""

import json
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from affine import Affine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from annotate import selectors as annotate_selectors
from annotate.errors import DomainError
from annotate.geo import crs_from_text, crs_to_lonlat, transform_from_gdal
from annotate.models import (
    Annotation,
    Detection,
    DetectionSource,
    DetectionStatus,
    ObjectClass,
    Project,
    Scene,
    SceneStatus,
)
from annotate.permissions import Action, require
from annotate.project_services import object_class_add
from gpu_tasks import services as job_services
from gpu_tasks.inference.errors import Cancelled
from gpu_tasks.models import Job, JobKind
from gpu_tasks.run_context import RunContext
from review.models import ReviewEvent, ReviewVerb

from .import_readers import ImageRecord, ImageRef, ReadResult, read_labels

NO_CLASS = "(no class)"  # the class name of features that carry none
REPORT_ITEMS_MAX = 200
BATCH = 1000
TARGETS = ("examples", "accepted")
# Report reasons, with the words the report uses for them.
REASONS = {
    "empty_geometry": "no geometry or an empty one",
    "degenerate_geometry": "no area left (a line, a point or a collapsed ring)",
    "outside_every_scene": "outside every scene of the project",
    "outside_scene": "outside the chosen scene",
    "outside_image": "label entirely outside its image",
    "image_unmatched": "its image matches no scene (by name, chips.csv or georeferencing)",
    "image_size_unknown": "its image is not in the archive and no scene gives its size",
    "unknown_class_skipped": "class mapped to skip",
    "unreadable_line": "unreadable label line",
    "unknown_image": "annotation of an image that is not listed",
    "unreadable_geometry": "geometry that cannot be read or reprojected",
}


def imports_dir() -> Path:
    """Where uploads wait to be imported: DATA_DIR/imports/<id>/."""
    return Path(settings.DATA_DIR) / "imports"


def _safe_name(name: str) -> str:
    """A file name kept readable (commas and dots too) without path parts or control characters."""
    name = PurePosixPath(name.replace("\\", "/")).name
    return re.sub(r"[^\w.,\- ]+", "_", name).strip(" .") or "labels"


# ------------------------------------------------------------------------------------------ resolution
@dataclass
class Resolved:
    """One readable object placed on a scene: its class name and polygon parts (shapely, EPSG:4326)."""

    item: str
    class_name: str
    scene_id: int
    parts: list


@dataclass
class Tally:
    """What a pass over the records found: counts for the inspection and the report."""

    skipped: list = field(default_factory=list)  # (reason, item, message)
    repaired: int = 0
    clipped: int = 0
    split_objects: int = 0
    split_parts: int = 0
    classes: Counter = field(default_factory=Counter)
    scenes: Counter = field(default_factory=Counter)

    def skip(self, reason: str, item: str, message: str = "") -> None:
        self.skipped.append((reason, item, message or REASONS.get(reason, reason)))

    def skipped_summary(self) -> dict:
        by_reason = Counter(reason for reason, _i, _m in self.skipped)
        return {
            "count": len(self.skipped),
            "by_reason": dict(sorted(by_reason.items())),
            "items": [{"item": i, "reason": r, "message": m} for r, i, m in self.skipped[:REPORT_ITEMS_MAX]],
        }


class _Footprints:
    """The project's ready scenes as shapely footprints, to find the scene that holds an object."""

    def __init__(self, scenes: list[Scene]):
        import shapely
        from shapely.prepared import prep

        self.scenes = {s.pk: s for s in scenes}
        self.shapes = {s.pk: shapely.from_wkb(bytes(s.footprint.wkb)) for s in scenes if s.footprint}
        self.prepared = {pk: prep(shape) for pk, shape in self.shapes.items()}

    def holder(self, geometry, only: int | None = None) -> int | None:
        """The scene holding the object (the largest share of it when it spans several), None if outside all."""
        ids = [only] if only is not None else list(self.shapes)
        for pk in ids:
            if pk in self.prepared and self.prepared[pk].contains(geometry):
                return pk
        best, best_area = None, 0.0
        for pk in ids:
            if pk in self.prepared and self.prepared[pk].intersects(geometry):
                area = self.shapes[pk].intersection(geometry).area
                if area > best_area:
                    best, best_area = pk, area
        return best


def _polygon_parts(geometry) -> list:
    """The polygons of a geometry with area (collections and multipolygons taken apart)."""
    if geometry is None or geometry.is_empty:
        return []
    if geometry.geom_type == "Polygon":
        import shapely

        # 2D only (the columns are); a Z or M coordinate of a third-party file is dropped.
        return [shapely.force_2d(geometry)] if geometry.area > 0 else []
    return [p for g in getattr(geometry, "geoms", []) for p in _polygon_parts(g)]


def _repaired(geometry, tally: Tally):
    """A valid geometry (shapely make_valid when it is not, counted in the report)."""
    import shapely

    if geometry.is_valid:
        return geometry
    tally.repaired += 1
    return shapely.make_valid(geometry)


class _ImagePlacer:
    """Pixel geometries of images to EPSG:4326: through chips.csv, the image's georeferencing or a scene's name."""

    def __init__(self, project: Project, read: ReadResult, scenes: list[Scene], scene: Scene | None):
        self.read = read
        self.scene = scene
        self.by_id = {s.pk: s for s in scenes}
        self.by_name: dict[str, Scene] = {}
        for s in sorted(scenes, key=lambda s: s.pk, reverse=True):  # the oldest wins a shared name
            for name in (s.name, PurePosixPath(s.original_name or "").stem, PurePosixPath(s.name).stem):
                if name:
                    self.by_name[name.strip().lower()] = s

    def frame(self, image: ImageRef):
        """(crs, affine, scale x, scale y, image width, image height, scene or None) or a skip reason."""
        chip = self.read.chips.get(PurePosixPath(image.path).name)
        if chip and chip.get("geotransform") and chip.get("crs"):
            scene = self.by_id.get(chip.get("scene_id")) or self.by_name.get((chip.get("scene_name") or "").lower())
            width, height = image.width or chip.get("width"), image.height or chip.get("height")
            return (crs_from_text(chip["crs"]), transform_from_gdal(chip["geotransform"]), 1.0, 1.0, width, height,
                    scene)
        if chip and chip.get("window"):  # no geotransform: the native window on the scene's own grid
            scene = self.by_id.get(chip.get("scene_id")) or self.by_name.get((chip.get("scene_name") or "").lower())
            if scene is not None and scene.geotransform and scene.crs:
                col, row, win_w, win_h = chip["window"]
                width, height = image.width or chip.get("width"), image.height or chip.get("height")
                if width and height:
                    affine = transform_from_gdal(scene.geotransform) @ Affine.translation(col, row)
                    return (crs_from_text(scene.crs), affine, (win_w or width) / width, (win_h or height) / height,
                            width, height, scene)
        if image.geotransform and image.crs:
            return crs_from_text(image.crs), transform_from_gdal(image.geotransform), 1.0, 1.0, image.width, \
                image.height, None
        scene = self.by_name.get(image.stem.strip().lower()) or self.scene
        if scene is None or not scene.geotransform or not scene.crs:
            return "image_unmatched"
        width, height = image.width or scene.width, image.height or scene.height
        if not width or not height:
            return "image_size_unknown"
        # An image of the whole scene at another size (a preview, a resampled copy) maps by its proportion.
        sx, sy = scene.width / width, scene.height / height
        return crs_from_text(scene.crs), transform_from_gdal(scene.geotransform), sx, sy, width, height, scene

    def place(self, record: ImageRecord, tally: Tally):
        """(EPSG:4326 geometry, scene or None) of an image record, or None when skipped (tallied)."""
        import numpy as np
        import shapely
        from shapely.geometry import box

        framed = self.frame(record.image)
        if isinstance(framed, str):
            tally.skip(framed, record.item, f"{REASONS[framed]}: {record.image.path}")
            return None
        crs, affine, sx, sy, width, height, scene = framed
        if record.normalised:
            if not width or not height:
                tally.skip("image_size_unknown", record.item)
                return None
            geometry = shapely.affinity.scale(record.geometry, xfact=width, yfact=height, origin=(0, 0))
        else:
            geometry = record.geometry
        geometry = _repaired(geometry, tally)
        if width and height:
            frame_box = box(0, 0, width, height)
            if not frame_box.covers(geometry):
                geometry = geometry.intersection(frame_box)
                if not _polygon_parts(geometry):
                    tally.skip("outside_image", record.item)
                    return None
                tally.clipped += 1

        def to_lonlat(coords):
            xs, ys = coords[:, 0] * sx, coords[:, 1] * sy
            cx = affine.a * xs + affine.b * ys + affine.c
            cy = affine.d * xs + affine.e * ys + affine.f
            lons, lats = crs_to_lonlat(crs, cx, cy)
            return np.column_stack([lons, lats])

        return shapely.transform(geometry, to_lonlat), scene


def _records_resolved(project: Project, read: ReadResult, scene: Scene | None, tally: Tally) -> Iterator[Resolved]:
    """Every record placed on a scene and cut into valid polygons; the rest tallied as skipped."""
    scenes = list(Scene.objects.filter(project=project, status=SceneStatus.READY).order_by("pk"))
    footprints = _Footprints(scenes)
    placer = _ImagePlacer(project, read, scenes, scene)
    for reason, item, message in read.skipped:
        tally.skip(reason, item, message)
    for record in read.records:
        if record.geometry is None or record.geometry.is_empty:
            tally.skip("empty_geometry", record.item)
            continue
        holder = None
        if isinstance(record, ImageRecord):
            placed = placer.place(record, tally)
            if placed is None:
                continue
            geometry, holder = placed
        else:
            geometry = _repaired(record.geometry, tally)
        parts = _polygon_parts(geometry)
        if not parts:
            tally.skip("degenerate_geometry", record.item, f"{REASONS['degenerate_geometry']} ({geometry.geom_type})")
            continue
        if len(parts) > 1:
            tally.split_objects += 1
            tally.split_parts += len(parts)
        scene_id = holder.pk if holder is not None else None
        if scene_id is None:
            import shapely

            whole = shapely.MultiPolygon(parts) if len(parts) > 1 else parts[0]
            scene_id = footprints.holder(whole, only=scene.pk if scene else None)
            if scene_id is None:
                tally.skip("outside_scene" if scene else "outside_every_scene", record.item)
                continue
        name = (record.class_name or "").strip() or NO_CLASS
        tally.classes[name] += len(parts)
        tally.scenes[scene_id] += len(parts)
        yield Resolved(item=record.item, class_name=name, scene_id=scene_id, parts=parts)


def _class_matches(project: Project, names) -> dict[str, int | None]:
    """Found class name -> the project class of that name (case-insensitive, trimmed), or None."""
    classes = {c.name.strip().lower(): c.pk for c in ObjectClass.objects.filter(project=project)}
    return {name: classes.get(name.strip().lower()) for name in names}


# ------------------------------------------------------------------------------------------ upload and inspection
def _meta_path(import_id: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{32}", import_id or ""):
        raise Http404
    return imports_dir() / import_id / "import.json"


def _meta_read(import_id: str) -> dict:
    path = _meta_path(import_id)
    if not path.exists():
        raise Http404
    return json.loads(path.read_text())


def _meta_write(meta: dict) -> None:
    path = _meta_path(meta["id"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    tmp.replace(path)


def import_inspect(*, project: Project, path: Path, scene: Scene | None = None) -> dict:
    """What a label file holds and how it maps onto the project, without writing anything."""
    read = read_labels(path)
    tally = Tally()
    resolved = sum(len(r.parts) for r in _records_resolved(project, read, scene, tally))
    matches = _class_matches(project, tally.classes)
    scenes = {s.pk: s.name for s in Scene.objects.filter(pk__in=list(tally.scenes))}
    return {
        "format": read.format,
        "feature_count": len(read.records),
        "objects": resolved,
        "crs": read.crs,
        "class_field": read.class_field,
        "layers": read.layers,
        "classes": [
            {"name": name, "count": count, "class_id": matches[name]} for name, count in tally.classes.most_common()
        ],
        "unmatched": sorted(name for name, pk in matches.items() if pk is None),
        "scenes": [{"id": pk, "name": scenes.get(pk, ""), "count": n} for pk, n in sorted(tally.scenes.items())],
        "repaired": tally.repaired,
        "clipped": tally.clipped,
        "split": {"objects": tally.split_objects, "parts": tally.split_parts},
        "skipped": tally.skipped_summary(),
    }


def import_upload(*, project: Project, user: AbstractBaseUser, role: str | None, uploaded, scene_id: int | None = None
                  ) -> dict:
    """Store an uploaded label file (or a local path) under DATA_DIR/imports/<id>/ and answer its inspection."""
    require(role, Action.IMPORT_EXAMPLES)
    scene = _scene_of(project, scene_id)
    import_id = uuid.uuid4().hex
    folder = imports_dir() / import_id
    folder.mkdir(parents=True)
    target = folder / _safe_name(getattr(uploaded, "name", "") or "labels")
    try:
        if isinstance(uploaded, Path):  # a local file (manage.py import_labels): copied, the original stays
            shutil.copyfile(uploaded, target)
        elif hasattr(uploaded, "temporary_file_path"):
            shutil.move(uploaded.temporary_file_path(), target)
        else:
            with open(target, "wb") as out:
                for chunk in uploaded.chunks():
                    out.write(chunk)
        inspection = import_inspect(project=project, path=target, scene=scene)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    meta = {
        "id": import_id, "project_id": project.pk, "file_name": target.name, "scene_id": scene.pk if scene else None,
        "uploaded_by": user.pk, "uploaded_at": timezone.now().isoformat(), "inspection": inspection,
    }
    _meta_write(meta)
    return meta


def _scene_of(project: Project, scene_id: int | None) -> Scene | None:
    if scene_id is None:
        return None
    scene = Scene.objects.filter(project=project, pk=scene_id).first()
    if scene is None:
        raise DomainError(f"Scene {scene_id} is not a scene of this project; choose one of its scenes or none.")
    if scene.status != SceneStatus.READY:
        raise DomainError(f"Scene {scene.name!r} is {scene.status}; wait until its ingest has finished.")
    return scene


def import_get(*, user: AbstractBaseUser, import_id: str) -> tuple[dict, Project]:
    """A stored upload and its project, for a member of that project (404 for anyone else)."""
    meta = _meta_read(import_id)
    project = annotate_selectors.project_get(user=user, project_id=meta["project_id"])
    return meta, project


# ------------------------------------------------------------------------------------------ the job
def _class_ids(*, project: Project, role: str | None, meta: dict, class_map: dict) -> dict[str, int | None]:
    """Every found class name -> a project class id or None (skip); "new" creates the class (managers only)."""
    found = [c["name"] for c in meta["inspection"]["classes"]]
    matched = {c["name"]: c["class_id"] for c in meta["inspection"]["classes"]}
    unknown = sorted(set(class_map) - set(found))
    if unknown:
        raise DomainError(
            f"class_map names classes the file does not hold: {', '.join(unknown)}; use the names the inspection "
            "listed.", detail={"unknown": unknown, "found": found},
        )
    missing = [name for name in found if name not in class_map and matched.get(name) is None]
    if missing:
        raise DomainError(
            f"Choose what to do with the classes the project does not have: {', '.join(missing)} (in class_map: a "
            "class id, \"new\" to add the class, or null to skip its objects).", detail={"unmapped": missing},
        )
    project_classes = set(ObjectClass.objects.filter(project=project).values_list("pk", flat=True))
    ids: dict[str, int | None] = {}
    for name in found:
        value = class_map.get(name, matched.get(name))
        if value == "new":
            require(role, Action.EDIT_CLASSES)
            continue
        if value is not None and (isinstance(value, bool) or value not in project_classes):
            raise DomainError(
                f"class_map[{name!r}] = {value!r} is not a class of this project; give a class id, \"new\" or null.",
                detail={"class": name, "value": value},
            )
        ids[name] = value
    for name in found:
        if class_map.get(name) == "new":
            existing = ObjectClass.objects.filter(project=project, name__iexact=name[:100].strip()).first()
            ids[name] = existing.pk if existing else object_class_add(
                project=project, role=role, name=name[:100].strip(), color="#ff9900"
            ).pk
    return ids


def import_job_submit(
    *, user: AbstractBaseUser, role: str | None, import_id: str, target: str, class_map: dict, enqueue: bool = True
) -> Job:
    """Start importing a stored upload as examples or accepted detections (JobKind.IMPORT, default queue)."""
    meta, project = import_get(user=user, import_id=import_id)
    require(role, Action.IMPORT_ACCEPTED if target == "accepted" else Action.IMPORT_EXAMPLES)
    if target not in TARGETS:
        raise DomainError(f"target must be one of {', '.join(TARGETS)}.")
    if not meta["inspection"]["objects"]:
        raise DomainError(
            "The file has no object this project can hold (see the inspection's skipped reasons); nothing to import.",
            detail={"skipped": meta["inspection"]["skipped"]["by_reason"]},
        )
    with transaction.atomic():
        class_ids = _class_ids(project=project, role=role, meta=meta, class_map=class_map or {})
        if not any(v is not None for v in class_ids.values()):
            raise DomainError("Every class is mapped to skip; map at least one to a class to import anything.")
        job = job_services.job_create(
            kind=JobKind.IMPORT, project_id=project.pk, user=user,
            params={"import_id": import_id, "file_name": meta["file_name"], "target": target,
                    "class_ids": class_ids, "scene_id": meta.get("scene_id")},
        )
        if enqueue:
            job_services._enqueue(job)  # the gpu_tasks machinery every job kind is sent through
    return job


def _write_batch(*, job: Job, user, target: str, batch: list, comment: str, batch_id) -> None:
    """Create one batch of (resolved, class id, geometry, scene id) as examples or accepted detections (+ events)."""
    if target == "examples":
        Annotation.objects.bulk_create(
            [Annotation(scene_id=sid, object_class_id=cid, geometry=geom, author=user) for _r, cid, geom, sid in batch]
        )
        return
    now = timezone.now()
    rows = []
    for _r, cid, geom, sid in batch:
        bbox = Polygon.from_bbox(geom.extent)
        bbox.srid = 4326
        rows.append(Detection(
            scene_id=sid, object_class_id=cid, geometry=geom, bbox=bbox, score=None, source=DetectionSource.IMPORT,
            status=DetectionStatus.ACCEPTED, reviewer=user, reviewed_at=now, job=job,
        ))
    created = Detection.objects.bulk_create(rows)
    # The audit trail: an imported object is one the importing user created accepted (undone as one batch, which
    # deletes them, as undoing a drawn object does).
    ReviewEvent.objects.bulk_create([
        ReviewEvent(
            detection_id=d.pk, project_id=job.project_id, scene_id=d.scene_id, actor=user,
            verb=ReviewVerb.CREATE_MANUAL, status_after=d.status, class_after=d.object_class_id,
            geometry_after=d.geometry, comment=comment, batch_id=batch_id, version_after=d.version,
        )
        for d in created
    ])


def import_run(*, job: Job, run: RunContext) -> dict:
    """The import itself: read, place and create every mapped object in one transaction; the report."""
    params = job.params
    meta = _meta_read(params["import_id"])
    project = job.project
    path = imports_dir() / params["import_id"] / meta["file_name"]
    scene = Scene.objects.filter(pk=params.get("scene_id")).first() if params.get("scene_id") else None
    user = get_user_model().objects.filter(pk=job.created_by_id).first()
    class_ids: dict = params["class_ids"]
    names = dict(ObjectClass.objects.filter(project=project).values_list("pk", "name"))
    read = read_labels(path)
    total = max(1, len(read.records))
    tally = Tally()
    per_class: Counter = Counter()
    per_scene: Counter = Counter()
    imported = 0
    batch: list = []
    comment = f"Imported from {meta['file_name']} (import job {job.pk})"
    batch_id = uuid.uuid4()
    with transaction.atomic():
        for n, resolved in enumerate(_records_resolved(project, read, scene, tally), start=1):
            class_id = class_ids.get(resolved.class_name)
            if class_id is None:
                tally.skip("unknown_class_skipped", resolved.item, f"class {resolved.class_name!r} mapped to skip")
                continue
            for part in resolved.parts:
                geom = GEOSGeometry(memoryview(part.wkb), srid=4326)
                batch.append((resolved, class_id, geom, resolved.scene_id))
                per_class[names.get(class_id, str(class_id))] += 1
                per_scene[resolved.scene_id] += 1
            if len(batch) >= BATCH:
                _write_batch(job=job, user=user, target=params["target"], batch=batch, comment=comment,
                             batch_id=batch_id)
                imported += len(batch)
                batch = []
                if run.should_cancel():
                    raise Cancelled()  # the transaction rolls back: a cancelled import leaves nothing behind
                run.progress(min(0.99, n / total), f"Imported {imported} objects")
        if batch:
            _write_batch(job=job, user=user, target=params["target"], batch=batch, comment=comment,
                         batch_id=batch_id)
            imported += len(batch)
    scene_names = dict(Scene.objects.filter(pk__in=list(per_scene)).values_list("pk", "name"))
    return {
        "imported": imported,
        "target": params["target"],
        "format": read.format,
        "file_name": meta["file_name"],
        "per_class": dict(sorted(per_class.items())),
        "per_scene": [{"id": pk, "name": scene_names.get(pk, ""), "count": c} for pk, c in sorted(per_scene.items())],
        "repaired": tally.repaired,
        "clipped": tally.clipped,
        "split": {"objects": tally.split_objects, "parts": tally.split_parts},
        "skipped": tally.skipped_summary(),
    }


def import_job_run(*, job_id: int, claim: bool = True, progress_extra=None) -> Job:
    """Run an import job under its Job row (called by datasets.tasks.import_labels_task)."""
    job = Job.objects.select_related("project").get(pk=job_id)

    def work(run: RunContext):
        report = import_run(job=job, run=run)
        skipped = report["skipped"]["count"]
        what = "examples" if report["target"] == "examples" else "accepted objects"
        return report, f"Imported {report['imported']} {what}" + (f", {skipped} skipped" if skipped else "")

    return job_services.job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)

