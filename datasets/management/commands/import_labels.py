"""manage.py import_labels PATH --project ID|NAME --user NAME [--target examples|accepted] [--scene ID]
[--map NAME=CLASS_ID|new|skip ...]: import a label file in this process, with a progress bar and the report."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.errors import DomainError
from datasets import import_services
from datasets.management.member import project_member
from gpu_tasks.management.progress import progress_bar
from gpu_tasks.models import JobStatus


def parse_map(items: list[str]) -> dict:
    """`Tank=new`, `Kiln=12`, `Other=skip` -> the API's class_map."""
    out: dict = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise CommandError(f"--map takes NAME=CLASS_ID, NAME=new or NAME=skip (got {item!r})")
        value = value.strip()
        out[name] = None if value == "skip" else "new" if value == "new" else int(value) if value.isdigit() else value
    return out


class Command(BaseCommand):
    """Store, inspect and import a label file as the given user, in-process (the same runner as the job)."""

    help = "Import GeoJSON, GeoPackage, zipped Shapefile, YOLO or COCO labels as examples or accepted objects."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", required=True, help="project id or name")
        parser.add_argument("--user", required=True, help="the importing member (recorded as author / reviewer)")
        parser.add_argument("--target", choices=import_services.TARGETS, default="examples")
        parser.add_argument("--scene", type=int, help="the scene every unmatched image or object belongs to")
        parser.add_argument("--map", action="append", default=[], help="NAME=CLASS_ID|new|skip (repeatable)")

    def handle(self, *args, path: Path, project: str, user: str, target: str, scene, map, **options):
        proj, member, role = project_member(project, user)
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        try:
            meta = import_services.import_upload(project=proj, user=member, role=role, uploaded=path, scene_id=scene)
            self.stdout.write(json.dumps(meta["inspection"], indent=1))
            job = import_services.import_job_submit(
                user=member, role=role, import_id=meta["id"], target=target, class_map=parse_map(map), enqueue=False
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        with progress_bar(f"import {path.name}", disable=options["verbosity"] == 0) as show:
            job = import_services.import_job_run(job_id=job.pk, progress_extra=show)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Import job {job.pk} {job.status}: {job.error}")
        self.stdout.write(json.dumps({k: v for k, v in job.result.items() if k != "timings"}, indent=1))
        self.stdout.write(self.style.SUCCESS(f"Job {job.pk}: {job.message}"))
