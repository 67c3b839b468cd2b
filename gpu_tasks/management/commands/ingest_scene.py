"""manage.py ingest_scene PATH --project NAME [--bands 3,2,1] [--name NAME]: ingest a local GeoTIFF."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.errors import DomainError
from annotate.models import Project
from annotate.services import scene_create_from_path
from gpu_tasks.management.progress import progress_bar
from gpu_tasks.models import JobKind, JobStatus
from gpu_tasks.services import ingest_job_run, job_create


def parse_bands(value: str | None) -> list[int] | None:
    """`3,2,1` -> [3, 2, 1]; CommandError on anything else."""
    if not value:
        return None
    try:
        bands = [int(v) for v in value.split(",")]
    except ValueError as exc:
        raise CommandError(f"--bands must be three band numbers like 3,2,1 (got {value!r})") from exc
    if len(bands) != 3:
        raise CommandError(f"--bands must name exactly three bands (got {len(bands)})")
    return bands


class Command(BaseCommand):
    """Copy a local GeoTIFF into the store and ingest it in this process, with a progress bar."""

    help = "Ingest a local GeoTIFF into a project (validates, converts to COG, stores footprint and stretch)."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--bands", help="source bands for red,green,blue, e.g. 3,2,1 (default: from the file)")
        parser.add_argument("--name", default="", help="scene name (default: the file name)")

    def handle(self, *args, path: Path, project: str, bands: str | None, name: str, **options):
        rgb = parse_bands(bands)
        try:
            proj = Project.objects.get(name=project)
        except Project.DoesNotExist as exc:
            raise CommandError(f"No project named {project!r}; create it first (or check the spelling).") from exc
        try:
            scene = scene_create_from_path(project=proj, user=None, source=path.resolve(), name=name)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        job = job_create(kind=JobKind.INGEST, project_id=proj.pk, scene=scene, params={"rgb_bands": rgb})
        with progress_bar(f"ingest {scene.name}", disable=options["verbosity"] == 0) as show:
            job = ingest_job_run(job_id=job.pk, progress_extra=show)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Scene {scene.pk} failed: {job.error}")
        scene.refresh_from_db()
        self.stdout.write(
            self.style.SUCCESS(
                f"Scene {scene.pk} ({scene.name}) ready: {scene.width} x {scene.height} px, "
                f"{scene.gsd_m:.2f} m/px, zoom {scene.min_zoom}-{scene.max_zoom}"
            )
        )
        for warning in scene.warnings:
            self.stdout.write(self.style.WARNING(f"Warning: {warning['message']}"))
