"""manage.py search_scene SCENE_ID [--classes ...] [--threshold T] [--scale S] [--refine]: search in this process."""

from django.core.management.base import BaseCommand, CommandError

from annotate.errors import DomainError
from annotate.models import ObjectClass, Scene
from annotate.permissions import ALLOWED_ROLES, Action
from gpu_tasks.management.progress import progress_bar
from gpu_tasks.models import JobStatus
from gpu_tasks.services import refine_job_run, refine_job_submit, search_job_run, search_job_submit

# Commands run as the operator, with a role that may run jobs.
OPERATOR_ROLE = sorted(ALLOWED_ROLES[Action.RUN_JOBS])[0]


class Command(BaseCommand):
    """Embed (when needed) and search a scene with a progress bar; optionally refine the results with SAM2."""

    help = "Visual search of a scene for objects like the project's examples (runs here, not on a worker)."

    def add_arguments(self, parser):
        parser.add_argument("scene", type=int, help="scene id")
        parser.add_argument("--classes", nargs="*", default=[], help="class names (default: all with examples)")
        parser.add_argument("--threshold", type=float, default=0.5, help="minimum score (cosine similarity)")
        parser.add_argument("--scale", type=float, default=1.0, help="2 = enlarge twice, for small objects")
        parser.add_argument("--negative-weight", type=float, default=0.5)
        parser.add_argument("--max-candidates", type=int, default=None)
        parser.add_argument("--refine", action="store_true", help="refine the new candidates with SAM2 afterwards")

    def handle(
        self,
        *args,
        scene: int,
        classes: list[str],
        threshold: float,
        scale: float,
        negative_weight: float,
        max_candidates: int | None,
        refine: bool,
        **options,
    ):
        try:
            sc = Scene.objects.select_related("project").get(pk=scene)
        except Scene.DoesNotExist as exc:
            raise CommandError(f"No scene {scene}; list them with the API (/api/scenes/).") from exc
        class_ids = []
        for name in classes:
            found = ObjectClass.objects.filter(project=sc.project, name=name).first()
            if found is None:
                names = ", ".join(sc.project.classes.values_list("name", flat=True))
                raise CommandError(f"No class {name!r} in project {sc.project.name!r} (classes: {names}).")
            class_ids.append(found.pk)
        params = {
            "classes": class_ids,
            "default_threshold": threshold,
            "scale": scale,
            "negative_weight": negative_weight,
            "max_candidates": max_candidates,
        }
        quiet = options["verbosity"] == 0
        try:
            job = search_job_submit(scene=sc, user=None, role=OPERATOR_ROLE, params=params, enqueue=False).job
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        with progress_bar(f"search {sc.name}", disable=quiet) as show:
            job = search_job_run(job_id=job.pk, progress_extra=show)
        self._report(job)
        if refine and job.result.get("detections"):
            ids = list(sc.detections.filter(job=job).values_list("pk", flat=True))
            rjob = refine_job_submit(scene=sc, user=None, role=OPERATOR_ROLE, detection_ids=ids, enqueue=False).job
            with progress_bar(f"refine {len(ids)} boxes", disable=quiet) as show:
                rjob = refine_job_run(job_id=rjob.pk, progress_extra=show)
            self._report(rjob)

    def _report(self, job) -> None:
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Job {job.pk} {job.status}: {job.error or job.message}")
        timings = ", ".join(f"{k} {v:.2f}s" for k, v in job.result.get("timings", {}).items())
        self.stdout.write(self.style.SUCCESS(f"Job {job.pk}: {job.message}"))
        self.stdout.write(f"  stages: {timings}")
