"""manage.py fetch_models: download the configured DINO and SAM2 weights into MODEL_DIR (needs internet)."""

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gpu_tasks.inference.errors import ModelUnavailable
from gpu_tasks.inference.loading import (
    hf_fetch_plan,
    resolve_hf_source,
    resolve_sam2_source,
    sam2_fetch_plan,
)


class Command(BaseCommand):
    """Fetch weights ahead of time, so that workers never touch the network (they run with HF_HUB_OFFLINE=1)."""

    help = "Download DINO_MODEL and SAM2_MODEL into MODEL_DIR; skips models already there."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="download again even when present")
        parser.add_argument("--revision", default=None, help="a hub revision (commit) to pin the backbone to")

    def handle(self, *args, force: bool, revision: str | None, **options):
        model_dir = Path(settings.MODEL_DIR)
        model_dir.mkdir(parents=True, exist_ok=True)
        plans = []
        if force or not self._present(lambda: resolve_hf_source(settings.DINO_MODEL, model_dir)):
            plans.append(("backbone", hf_fetch_plan(settings.DINO_MODEL, model_dir), revision))
        if force or not self._present(lambda: resolve_sam2_source(settings.SAM2_MODEL, model_dir)):
            try:
                plans.append(("SAM2", sam2_fetch_plan(settings.SAM2_MODEL, model_dir), None))
            except ValueError as exc:
                raise CommandError(f"{exc}. A local SAM2 checkpoint is not fetched: copy it into place.") from exc
        if not plans:
            self.stdout.write(self.style.SUCCESS(f"All models are present in {model_dir}."))
            return
        # Settings switch the hub off for every process; this command is the one place allowed to reach it.
        os.environ["HF_HUB_OFFLINE"] = "0"
        os.environ["TRANSFORMERS_OFFLINE"] = "0"
        import huggingface_hub
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = False
        for label, plan, rev in plans:
            self.stdout.write(f"Fetching {label} {plan.repo_id} into {plan.local_dir} ...")
            try:
                huggingface_hub.snapshot_download(
                    plan.repo_id, revision=rev, local_dir=plan.local_dir, allow_patterns=list(plan.allow_patterns)
                )
            except Exception as exc:
                raise CommandError(
                    f"Could not download {plan.repo_id} ({exc}). This needs internet access to the model hub; "
                    f"on an offline machine, fetch on a connected one and copy {plan.local_dir} here."
                ) from exc
        self.stdout.write(self.style.SUCCESS("Models are ready."))

    @staticmethod
    def _present(resolve) -> bool:
        try:
            resolve()
        except ModelUnavailable:
            return False
        return True
