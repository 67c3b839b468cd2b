"""manage.py seed_demo: a demo user and project, classes that fit its imagery, and the sample scenes (idempotent)."""

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from annotate import storage
from annotate.demo import DEMO_SCENES, demo_classes_apply
from annotate.models import Project, SceneStatus
from annotate.services import membership_set, project_create


class Command(BaseCommand):
    """Create what the demo needs; running it again changes nothing that exists."""

    help = "Create the demo user, project, classes and scenes (from data/samples)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")
        parser.add_argument("--project", default="Demo")

    def handle(self, *args, username: str, password: str, project: str, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(password)
            user.save()
            self.stdout.write(f"Created user {username}")
        proj = Project.objects.filter(name=project).first()
        if proj is None:
            proj = project_create(name=project, user=user, description="Demo project with real sample imagery.")
            self.stdout.write(f"Created project {project}")
        membership_set(project=proj, user=user, role="manager")
        self._classes(proj)
        for demo in DEMO_SCENES:
            ready = proj.scenes.filter(name=demo.name, status=SceneStatus.READY).first()
            # A row whose COG is gone (DATA_DIR wiped or moved) is ingested again rather than shown broken.
            if ready is None or not ready.cog_path or not storage.absolute(ready.cog_path).is_file():
                proj.scenes.filter(name=demo.name).delete()
                call_command(
                    "ingest_scene", str(demo.path), project=project, name=demo.name, bands=demo.bands,
                    verbosity=options["verbosity"],
                )
            scene = proj.scenes.get(name=demo.name)
            ready_text = f"Demo scene {scene.pk} ({demo.name}) is ready in project {project!r}"
            self.stdout.write(self.style.SUCCESS(ready_text))

    def _classes(self, proj: Project) -> None:
        """Demo classes in place of the unused defaults; say what changed."""
        changes = demo_classes_apply(project=proj)
        for old, new in changes.renamed:
            self.stdout.write(f"Class {old!r} (unused) is now {new!r}")
        for name in changes.created:
            self.stdout.write(f"Created class {name!r}")
        if changes.removed:
            self.stdout.write(f"Removed unused classes that fit no demo scene: {', '.join(changes.removed)}")
        if changes.kept:
            self.stdout.write(f"Kept classes that examples or detections use: {', '.join(changes.kept)}")
