"""manage.py fetch_models: download the configured DINO and SAM2 weights into MODEL_DIR (needs internet)."""

import os
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gpu_tasks.inference.errors import ModelUnavailable
from gpu_tasks.inference.loading import (
    _looks_like_path,
    hf_fetch_plan,
    resolve_hf_source,
    resolve_sam2_source,
    sam2_fetch_plan,
)
from gpu_tasks.model_status import FETCH_COMMAND, hub_answers, hub_endpoint


@contextmanager
def _hub_allowed():
    """Lift huggingface_hub's offline mode for this command only; the rest of the process stays offline."""
    from huggingface_hub import constants

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    saved_offline = constants.HF_HUB_OFFLINE
    # Settings switch the hub off for every process; this command is the one place allowed to reach it.
    os.environ.update({k: "0" for k in saved_env})
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_offline
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Command(BaseCommand):
    """Fetch weights ahead of time, so that workers never touch the network (they run with HF_HUB_OFFLINE=1)."""

    help = "Download DINO_MODEL and SAM2_MODEL into MODEL_DIR; skips models already there."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="download again even when present")
        parser.add_argument("--revision", default=None, help="a hub revision (commit) to pin the backbone to")
        parser.add_argument(
            "--if-online",
            action="store_true",
            help="first check that the model hub answers; when it does not (or a download fails), say so and "
            "exit 0, so that a setup script goes on without the models",
        )
        parser.add_argument(
            "--hub-timeout", type=float, default=4.0, help="seconds to wait for the hub's answer with --if-online"
        )

    def handle(self, *args, force: bool, revision: str | None, if_online: bool, hub_timeout: float, **options):
        model_dir = Path(settings.MODEL_DIR)
        model_dir.mkdir(parents=True, exist_ok=True)
        plans, unfetchable = [], []
        dino, sam2 = settings.DINO_MODEL, settings.SAM2_MODEL
        dino_present = self._present(lambda: resolve_hf_source(dino, model_dir))
        if dino_present and (not force or _looks_like_path(dino)):  # a local path is never downloaded
            self.stdout.write(f"Backbone {dino} is installed; skipped.")
        elif _looks_like_path(dino):
            unfetchable.append(f"DINO_MODEL is a local path ({dino}) without a model: copy the model directory there")
        else:
            plans.append(("backbone", hf_fetch_plan(dino, model_dir), revision))
        if not force and self._present(lambda: resolve_sam2_source(sam2, model_dir)):
            self.stdout.write(f"SAM2 {sam2} is installed; skipped.")
        else:
            try:
                plans.append(("SAM2", sam2_fetch_plan(sam2, model_dir), None))
            except ValueError as exc:
                unfetchable.append(f"{exc}. A local SAM2 checkpoint is not fetched: copy it into place")
        for problem in unfetchable:
            if not if_online:
                raise CommandError(f"{problem}.")
            self.stdout.write(self.style.WARNING(f"Not installed: {problem}."))
        if not plans and unfetchable:
            return
        if not plans:
            self.stdout.write(self.style.SUCCESS(f"All models are present in {model_dir}."))
            return
        with _hub_allowed():
            self._fetch(plans, if_online=if_online, hub_timeout=hub_timeout, model_dir=model_dir, **options)

    def _fetch(self, plans, *, if_online: bool, hub_timeout: float, model_dir: Path, **options) -> None:
        """Download each plan with progress bars; with if_online, ask the hub first and never fail."""
        import huggingface_hub
        from huggingface_hub.utils import enable_progress_bars

        if options["verbosity"] > 0:
            enable_progress_bars()  # download progress per file
        names = ", ".join(plan.repo_id for _, plan, _ in plans)
        if if_online:
            started = time.monotonic()
            if not hub_answers(repo_id=plans[0][1].repo_id, timeout_s=hub_timeout):
                waited = time.monotonic() - started
                where = f"{hub_endpoint()}, gave up after {waited:.1f} s"
                self._not_installed(f"the model hub is not reachable from this machine ({where})", names, model_dir)
                return
        for label, plan, rev in plans:
            self.stdout.write(f"Fetching {label} {plan.repo_id} into {plan.local_dir} ...")
            try:
                huggingface_hub.snapshot_download(
                    plan.repo_id, revision=rev, local_dir=plan.local_dir, allow_patterns=list(plan.allow_patterns)
                )
            except Exception as exc:
                if if_online:
                    self._not_installed(f"downloading {plan.repo_id} failed ({exc})", names, model_dir)
                    return
                raise CommandError(
                    f"Could not download {plan.repo_id} ({exc}). This needs internet access to the model hub; "
                    f"on an offline machine, fetch on a connected one and copy {plan.local_dir} here."
                ) from exc
        self.stdout.write(self.style.SUCCESS(f"Models are ready in {model_dir}."))

    def _not_installed(self, reason: str, names: str, model_dir: Path) -> None:
        """Say plainly why the models are missing and what installs them (exit status stays 0)."""
        self.stdout.write(
            self.style.WARNING(
                f"Models are not installed: {reason}.\n"
                f"  Missing: {names}.\n"
                f"  On a machine with internet run: {FETCH_COMMAND}\n"
                f"  then copy {model_dir} to the same place here (or point MODEL_DIR at it).\n"
                "  Until then the app runs, and the scene page says that search needs these models."
            )
        )

    @staticmethod
    def _present(resolve) -> bool:
        try:
            resolve()
        except ModelUnavailable:
            return False
        return True
