"""manage.py sweep_uploads: delete stale upload temp files now (workers also do it at start and hourly)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from annotate.upload_sweep import uploads_sweep


class Command(BaseCommand):
    """Delete upload temp files older than UPLOAD_STALE_AFTER_S (or --older-than) that no scene holds."""

    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                            help=f"age in seconds (default UPLOAD_STALE_AFTER_S = {settings.UPLOAD_STALE_AFTER_S})")

    def handle(self, *args, older_than, **options):
        removed = uploads_sweep(older_than_s=older_than)
        for path in removed:
            self.stdout.write(f"removed {path}")
        self.stdout.write(f"{len(removed)} stale upload file(s) removed")
