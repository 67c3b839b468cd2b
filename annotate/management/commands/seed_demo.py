"""manage.py seed_demo: a demo user, a demo project and the demo scene (idempotent)."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from annotate import storage
from annotate.models import Project, SceneStatus
from annotate.services import membership_set, project_create

DEMO_SCENE = Path(settings.BASE_DIR) / "data" / "samples" / "neon_trees_OSBS_029.tif"
DEMO_SCENE_NAME = "NEON OSBS 029 (0.1 m)"


class Command(BaseCommand):
    """Create what the demo needs; running it again changes nothing that exists."""

    help = "Create the demo user, project and scene (from data/samples)."

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
        ready = proj.scenes.filter(name=DEMO_SCENE_NAME, status=SceneStatus.READY).first()
        # A row whose COG is gone (DATA_DIR wiped or moved) is ingested again rather than shown broken.
        if ready is None or not ready.cog_path or not storage.absolute(ready.cog_path).is_file():
            proj.scenes.filter(name=DEMO_SCENE_NAME).delete()
            call_command(
                "ingest_scene", str(DEMO_SCENE), project=project, name=DEMO_SCENE_NAME,
                verbosity=options["verbosity"],
            )
        scene = proj.scenes.get(name=DEMO_SCENE_NAME)
        self.stdout.write(self.style.SUCCESS(f"Demo scene {scene.pk} is ready in project {project!r}"))
