"""Dataset exports: saved definitions, the export job (selection -> writer -> manifest -> zip), the download."""

import json
import re
import shutil
import tomllib
import zipfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotate.errors import Conflict, DomainError
from annotate.models import Project
from annotate.permissions import Action, require
from gpu_tasks import services as job_services
from gpu_tasks.inference.errors import Cancelled
from gpu_tasks.models import Job, JobKind, JobStatus
from gpu_tasks.run_context import RunContext

from . import export_selection as selection
from .export_options import chip_options, export_params
from .export_types import FORMATS, ExportLoss, WriteStats
from .export_vectors import check_gpkg_layout, write_geojson, write_gpkg
from .models import ExportDefinition

MANIFEST = "manifest.json"
# PNG chips are compressed already: stored as they are; label text and vectors are deflated.
_STORED_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".gpkg"}


def exports_dir() -> Path:
    """Where finished exports wait to be downloaded: DATA_DIR/exports/<job id>/."""
    return Path(settings.DATA_DIR) / "exports"


def app_version() -> str:
    """The application's version (pyproject.toml), recorded in every manifest."""
    try:
        with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as fh:
            return tomllib.load(fh)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# ------------------------------------------------------------------------------------------ definitions and submit
def _validate_selection(project: Project, params: dict) -> int:
    """Refuse a selection that names foreign scenes or classes, or selects nothing; the selected object count."""
    scenes = selection.export_scenes(project, params)
    if not scenes:
        raise DomainError("The project has no ready scene to export; upload a scene and wait for its ingest.")
    selection.check_classes(project, params)
    if params["format"] == "gpkg":
        check_gpkg_layout(scenes, params["gpkg_layout"])
    total = sum(selection.selection_counts(scenes, params).values())
    if not total:
        statuses = ", ".join(params["statuses"])
        raise DomainError(
            f"No object matches this export ({statuses} objects of the chosen scenes, classes and sources); review "
            "some objects or widen the choice.", detail={"selected": 0},
        )
    return total


def definition_save(*, project: Project, user: AbstractBaseUser, params: dict) -> ExportDefinition:
    """Save (or update, by name) an export definition so that it can be run again."""
    try:
        with transaction.atomic():
            definition, _ = ExportDefinition.objects.update_or_create(
                project=project, name=params["name"],
                defaults={"format": params["format"], "params": params, "created_by": user},
            )
    except IntegrityError as exc:  # two saves of one new name at once
        raise Conflict(f"An export named {params['name']!r} was saved at the same time; try again.") from exc
    return definition


def export_submit(*, project: Project, user: AbstractBaseUser, role: str | None, data: dict,
                  enqueue: bool = True) -> tuple[Job, ExportDefinition | None]:
    """Validate an export request, save it when asked, and start its job (JobKind.EXPORT, default queue)."""
    require(role, Action.EXPORT_DATASET)
    save = bool(data.get("save", True))
    params = export_params(data)
    total = _validate_selection(project, params)
    with transaction.atomic():
        definition = definition_save(project=project, user=user, params=params) if save else None
        job = _job_start(project=project, user=user, params=params, definition=definition, total=total,
                         enqueue=enqueue)
    return job, definition


def definition_run(*, definition: ExportDefinition, user: AbstractBaseUser, role: str | None,
                   enqueue: bool = True) -> Job:
    """Run a saved export again, re-validated against the project as it is now."""
    require(role, Action.EXPORT_DATASET)
    params = export_params({**definition.params, "save": False})
    total = _validate_selection(definition.project, params)
    with transaction.atomic():
        return _job_start(project=definition.project, user=user, params=params, definition=definition, total=total,
                          enqueue=enqueue)


def definition_delete(*, definition: ExportDefinition, user: AbstractBaseUser, role: str | None) -> None:
    """Delete a saved export (its creator or a manager); past exports' files stay until they are cleaned up."""
    if definition.created_by_id != user.pk:
        require(role, Action.EDIT_PROJECT)
    else:
        require(role, Action.EXPORT_DATASET)
    definition.delete()


def _job_start(*, project: Project, user, params: dict, definition: ExportDefinition | None, total: int,
               enqueue: bool) -> Job:
    job = job_services.job_create(
        kind=JobKind.EXPORT, project_id=project.pk, user=user,
        params={**params, "definition_id": definition.pk if definition else None, "selected": total},
    )
    if enqueue:
        job_services._enqueue(job)  # the gpu_tasks machinery every job kind is sent through
    return job


# ------------------------------------------------------------------------------------------ the job
def _write(*, root: Path, params: dict, project: Project, scenes: list, total: int, run: RunContext) -> WriteStats:
    """Hand the selection to the format's writer."""
    def objects_of(scene):
        return selection.objects_of(scene, params)

    fmt = params["format"]
    if fmt == "geojson":
        return write_geojson(root=root, scenes=scenes, objects_of=objects_of, total=total, run=run)
    if fmt == "gpkg":
        return write_gpkg(root=root, scenes=scenes, objects_of=objects_of, total=total, layout=params["gpkg_layout"],
                          run=run)
    from .export_chips import write_chip_dataset  # the chip formats (YOLO, COCO) and their image I/O

    return write_chip_dataset(root=root, fmt=fmt, scenes=scenes, objects_of=objects_of,
                              classes=selection.export_classes(project), options=chip_options(params), run=run)


def manifest_of(*, job: Job, params: dict, project: Project, scenes: list, stats: WriteStats,
                selected: dict[int, int]) -> dict:
    """What the export holds and where it came from; its counts must agree or the export fails."""
    created_by = job.created_by.get_username() if job.created_by_id else None
    return {
        "format": params["format"],
        "format_label": FORMATS[params["format"]],
        "created_at": timezone.now().isoformat(),
        "application_version": app_version(),
        "project": {"id": project.pk, "name": project.name},
        "scenes": [{"id": s.pk, "name": s.name, "crs": s.crs, "gsd_m": s.gsd_m, "width": s.width, "height": s.height,
                    "objects": selected.get(s.pk, 0)} for s in scenes],
        "classes": [{"index": c.index, "name": c.name, "yolo_id": c.index, "coco_category_id": c.index + 1}
                    for c in selection.export_classes(project)],
        "selection": {k: params[k] for k in ("scene_ids", "class_ids", "statuses", "sources", "include_examples")},
        "parameters": {k: v for k, v in params.items() if k not in ("definition_id", "selected")},
        "definition_id": params.get("definition_id"),
        "job_id": job.pk,
        "exported_by": created_by,
        "provenance": selection.provenance(scenes, params),
        "counts": {
            "objects_selected": sum(selected.values()),
            "objects_written": stats.objects_written,
            "labels_written": stats.labels_written,
            "per_class": stats.per_class,
            "chips": stats.chips,
            "negatives": stats.negatives,
            "dropped": stats.dropped,
        },
        "files": sorted(stats.files),
        "warnings": [stats.extra["warning"]] if stats.extra.get("warning") else [],
        "details": stats.extra,
    }


def _check_nothing_lost(stats: WriteStats, selected_total: int) -> None:
    """The writer saw and wrote every selected object, or the export fails saying so."""
    if stats.objects_selected != selected_total:
        raise DomainError(
            f"The export read {stats.objects_selected} objects where {selected_total} were selected (objects changed "
            "while it ran?); run it again.", detail={"selected": selected_total, "read": stats.objects_selected},
        )
    if stats.objects_written != selected_total:
        raise DomainError(
            f"{selected_total - stats.objects_written} of {selected_total} selected objects were not written; "
            "nothing was exported. Run it again; report this if it repeats.",
            detail={"selected": selected_total, "written": stats.objects_written},
        )


def _zip(root: Path, target: Path, run: RunContext) -> int:
    """Zip the export folder file by file (never the whole export in memory); its size in bytes."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    tmp = target.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for n, path in enumerate(files, start=1):
            compress = zipfile.ZIP_STORED if path.suffix.lower() in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            zf.write(path, path.relative_to(root).as_posix(), compress_type=compress)
            if n % 500 == 0:
                if run.should_cancel():
                    raise Cancelled()
                run.progress(n / len(files), f"Zipped {n} of {len(files)} files")
    tmp.replace(target)
    return target.stat().st_size


def download_name(project: Project, job: Job) -> str:
    """The zip's file name: project, format, job and date, in characters every file system takes."""
    slug = re.sub(r"[^0-9A-Za-z_-]+", "-", project.name).strip("-")[:60] or "project"
    day = (job.queued_at or timezone.now()).strftime("%Y%m%d")
    return f"{slug}-{job.params.get('format', 'export')}-{job.pk}-{day}.zip"


def export_run(*, job: Job, run: RunContext) -> dict:
    """Write the export under DATA_DIR/exports/<job>/, check it lost nothing, zip it; the result for the Job row."""
    project = job.project
    params = export_params({**{k: v for k, v in job.params.items() if k not in ("definition_id", "selected")},
                            "save": False})
    params["definition_id"] = job.params.get("definition_id")
    folder = exports_dir() / str(job.pk)
    shutil.rmtree(folder, ignore_errors=True)  # a run after a killed worker starts clean
    root = folder / "data"
    root.mkdir(parents=True)
    try:
        if run.should_cancel():  # cancelled while it waited for a worker
            raise Cancelled()
        with run.stage("write"):
            manifest = dataset_write(job=job, project=project, params=params, root=root, run=run.part(0.0, 0.9))
        name = download_name(project, job)
        if run.should_cancel():
            raise Cancelled()
        with run.stage("zip"):
            size = _zip(root, folder / name, run.part(0.9, 1.0))
    except ExportLoss as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise DomainError(f"The export would lose or empty a label, so nothing was exported: {exc.key} {exc.reason}.",
                          detail={"object": exc.key, "reason": exc.reason}) from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shutil.rmtree(root, ignore_errors=True)
    return {
        "file_name": name,
        "size_bytes": size,
        "download": f"/api/exports/{job.pk}/download/",
        "manifest": {k: manifest[k] for k in ("format", "counts", "warnings", "application_version")},
    }


def selection_check(project: Project, params: dict) -> int:
    """The number of objects validated export params select; refused (with what to do) when none or foreign."""
    return _validate_selection(project, params)


def dataset_write(*, job: Job, project: Project, params: dict, root: Path, run: RunContext) -> dict:
    """Write validated export params under root with its manifest (no zip) and return the manifest: the export's
    own writing, and what a job that consumes the dataset itself (YOLO training) calls. ExportLoss when a label
    would be lost or emptied (the caller says what was therefore not made)."""
    scenes = selection.export_scenes(project, params)
    selected = selection.selection_counts(scenes, params)
    total = sum(selected.values())
    if not total:
        raise DomainError("No object matches this selection any more (objects were deleted or re-reviewed since it "
                          "was started); widen the choice or review some objects.")
    stats = _write(root=root, params=params, project=project, scenes=scenes, total=total, run=run)
    _check_nothing_lost(stats, total)
    manifest = manifest_of(job=job, params=params, project=project, scenes=scenes, stats=stats, selected=selected)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def exports_prune(*, project: Project, keep: int | None = None) -> int:
    """Delete the files of the project's oldest finished exports beyond the newest `keep`; how many were deleted."""
    keep = settings.EXPORTS_KEPT_PER_PROJECT if keep is None else keep
    done = Job.objects.filter(project=project, kind=JobKind.EXPORT, status=JobStatus.SUCCEEDED)
    done = done.order_by("-queued_at", "-pk")
    pruned = 0
    for job in done[keep:]:
        folder = exports_dir() / str(job.pk)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            pruned += 1
    return pruned


def export_job_run(*, job_id: int, claim: bool = True, progress_extra=None) -> Job:
    """Run an export job under its Job row (called by datasets.tasks.export_dataset_task)."""
    job = Job.objects.select_related("project", "created_by").get(pk=job_id)

    def work(run: RunContext):
        result = export_run(job=job, run=run)
        counts = result["manifest"]["counts"]
        chips = sum(counts["chips"].values()) if counts["chips"] else 0
        what = f"{counts['objects_written']} objects" + (f" in {chips} chips" if chips else "")
        warnings = "".join(f"; {w}" for w in result["manifest"]["warnings"])
        return result, f"Exported {what} ({result['size_bytes'] / 1e6:.1f} MB){warnings}"

    job = job_services.job_run(job=job, work=work, claim=claim, progress_extra=progress_extra)
    if job.status == JobStatus.SUCCEEDED:
        exports_prune(project=job.project)
    return job


def export_file(*, job: Job) -> Path:
    """The finished export's zip, or a Conflict saying why there is none."""
    if job.kind != JobKind.EXPORT:
        raise DomainError(f"Job {job.pk} is a {job.get_kind_display()}, not an export.")
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"Export {job.pk} is {job.status}; download it once it has succeeded.")
    path = exports_dir() / str(job.pk) / str(job.result.get("file_name", ""))
    if not job.result.get("file_name") or not path.is_file():
        raise Conflict(f"Export {job.pk}'s file is no longer on the server; run the export again.")
    return path


def recent_exports(project: Project, limit: int = 20):
    """The project's latest export jobs, newest first."""
    return Job.objects.filter(project=project, kind=JobKind.EXPORT).order_by("-queued_at")[:limit]

