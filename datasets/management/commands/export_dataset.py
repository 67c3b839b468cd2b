"""manage.py export_dataset --project ID|NAME --user NAME (--format F [options] | --definition ID) [--out PATH]:
export in this process, with a progress bar; the zip is copied to --out when given."""

import json
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import ValidationError

from annotate.errors import DomainError
from datasets import export_services
from datasets.export_options import CHIP_FIELDS
from datasets.export_types import FORMATS
from datasets.management.member import project_member
from datasets.models import ExportDefinition
from gpu_tasks.management.progress import progress_bar
from gpu_tasks.models import JobStatus


def _ids(text: str | None) -> list[int]:
    return [int(v) for v in (text or "").split(",") if v.strip()]


class Command(BaseCommand):
    """Run an export as the given member, in-process (the same runner as the job)."""

    help = "Export a project's reviewed objects as YOLO, COCO, GeoJSON or GeoPackage (a zip with a manifest)."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project id or name")
        parser.add_argument("--user", required=True, help="the exporting member (recorded in the manifest)")
        parser.add_argument("--definition", type=int, help="run this saved export again")
        parser.add_argument("--format", choices=sorted(FORMATS))
        parser.add_argument("--name", default="", help="save the export under this name")
        parser.add_argument("--scenes", help="scene ids, comma separated (default: every ready scene)")
        parser.add_argument("--classes", help="class ids, comma separated (default: every class)")
        parser.add_argument("--statuses", default="accepted", help="comma separated: accepted, proposed, rejected")
        parser.add_argument("--sources", default="", help="comma separated (default: every source)")
        parser.add_argument("--include-examples", action="store_true")
        parser.add_argument("--gpkg-layout", choices=["per_scene", "single"], default="per_scene")
        for name in CHIP_FIELDS:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int if name in (
                "chip_size", "block_chips", "seed") else float)
        parser.add_argument("--out", type=Path, help="copy the finished zip here (a file or a folder)")

    def handle(self, *args, project: str, user: str, definition, out, **options):
        proj, member, role = project_member(project, user)
        try:
            if definition:
                saved = ExportDefinition.objects.filter(pk=definition, project=proj).first()
                if saved is None:
                    raise CommandError(f"No saved export {definition} in project {proj.name!r}.")
                job = export_services.definition_run(definition=saved, user=member, role=role, enqueue=False)
            else:
                if not options["format"]:
                    raise CommandError("Give --format (or --definition to run a saved export).")
                data = {
                    "format": options["format"], "name": options["name"], "save": bool(options["name"]),
                    "scene_ids": _ids(options["scenes"]), "class_ids": _ids(options["classes"]),
                    "statuses": [s for s in options["statuses"].split(",") if s],
                    "sources": [s for s in options["sources"].split(",") if s],
                    "include_examples": options["include_examples"], "gpkg_layout": options["gpkg_layout"],
                    **{k: options[k] for k in CHIP_FIELDS if options.get(k) is not None},
                }
                job, _saved = export_services.export_submit(project=proj, user=member, role=role, data=data,
                                                            enqueue=False)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:
            raise CommandError(json.dumps(exc.detail)) from exc
        with progress_bar(f"export {job.params['format']}", disable=options["verbosity"] == 0) as show:
            job = export_services.export_job_run(job_id=job.pk, progress_extra=show)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Export job {job.pk} {job.status}: {job.error}")
        path = export_services.export_file(job=job)
        if out:
            target = out / path.name if out.is_dir() else out
            shutil.copyfile(path, target)
            path = target
        self.stdout.write(json.dumps(job.result["manifest"], indent=1))
        self.stdout.write(self.style.SUCCESS(f"Job {job.pk}: {job.message}: {path}"))
