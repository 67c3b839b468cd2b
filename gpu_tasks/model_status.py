"""Which configured models are installed (files on disk only: no torch import, safe in the web process)."""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .inference.errors import ModelUnavailable
from .inference.loading import SAM2_HF_MODELS, _looks_like_path, resolve_hf_source, resolve_sam2_source

FETCH_COMMAND = ".venv/bin/python manage.py fetch_models"


@dataclass(frozen=True)
class ModelState:
    """One configured model: is it on disk, what it is needed for, and how to install it."""

    setting: str  # the setting that names it: DINO_MODEL or SAM2_MODEL
    model: str
    needed_for: str  # "search" or "refinement"
    installed: bool
    fetchable: bool  # a hub id that `fetch_models` can download (not a local path)

    def install_hint(self) -> str:
        """What an administrator does to install this model (one sentence; no server paths, users see it)."""
        if self.fetchable:
            return (
                f"An administrator runs `{FETCH_COMMAND}` on a machine with internet "
                "(then copies MODEL_DIR to this server if that was another machine)."
            )
        return f"{self.setting} names a local path that has no weights: copy them there or change {self.setting}."


@dataclass(frozen=True)
class ModelStatus:
    """The backbone (search) and SAM2 (refinement) as this server sees them."""

    backbone: ModelState
    sam2: ModelState
    model_dir: Path

    @property
    def missing(self) -> list[ModelState]:
        """The models that are not installed, backbone first."""
        return [m for m in (self.backbone, self.sam2) if not m.installed]

    def message(self) -> str:
        """A plain sentence or two for people: what is missing, what it blocks, what installs it ('' if none)."""
        missing = self.missing
        if not missing:
            return ""
        what = " and ".join(f"{m.model} ({m.setting}, for {m.needed_for})" for m in missing)
        verb = "is" if len(missing) == 1 else "are"
        hints = dict.fromkeys(m.install_hint() for m in missing)  # one hint when both share it
        return f"Models are not installed: {what} {verb} not on this server. " + " ".join(hints)


def _backbone_injected() -> bool:
    """True when a backbone object was put behind runtime.embedder() in this process (tests, notebooks).

    Looked up only if gpu_tasks.runtime is already imported: importing it here would pull torch into the web process.
    """
    runtime = sys.modules.get("gpu_tasks.runtime")
    return bool(getattr(runtime, "_embedder_override", None))


def _state(setting: str, model: str, needed_for: str, resolve, fetchable: bool) -> ModelState:
    """Resolve one model the way the worker's loader does and describe the outcome."""
    try:
        resolve()
    except ModelUnavailable:
        return ModelState(setting, model, needed_for, installed=False, fetchable=fetchable)
    return ModelState(setting, model, needed_for, installed=True, fetchable=fetchable)


def model_status() -> ModelStatus:
    """Whether DINO_MODEL and SAM2_MODEL resolve to files on this machine (the loader's own resolution, no network)."""
    # The web server reads the workers' MODEL_DIR: the same disk in the demo, the shared `data` volume in docker/.
    model_dir = Path(settings.MODEL_DIR)
    dino, sam2 = settings.DINO_MODEL, settings.SAM2_MODEL
    if _backbone_injected():
        backbone = ModelState("DINO_MODEL", dino, "search", installed=True, fetchable=False)
    else:
        backbone = _state(
            "DINO_MODEL", dino, "search", lambda: resolve_hf_source(dino, model_dir), not _looks_like_path(dino)
        )
    refiner = _state(
        "SAM2_MODEL", sam2, "refinement", lambda: resolve_sam2_source(sam2, model_dir), sam2 in SAM2_HF_MODELS
    )
    return ModelStatus(backbone=backbone, sam2=refiner, model_dir=model_dir)


def hub_endpoint() -> str:
    """The model hub's base URL as huggingface_hub is configured (HF_ENDPOINT or its default)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_answers(*, repo_id: str, timeout_s: float) -> bool:
    """True when the model hub answers an API request about `repo_id` within timeout_s (any HTTP status counts).

    Uses huggingface_hub's own session (its endpoint, proxies, token), so the caller must have lifted its offline
    mode. The request runs in a daemon thread with a hard deadline: a hung DNS lookup ignores the HTTP timeout.
    """
    from huggingface_hub.utils import get_session

    url = f"{hub_endpoint().rstrip('/')}/api/models/{repo_id}"
    done = threading.Event()
    answered: list[bool] = []

    def probe() -> None:
        # Whatever the transport raises (DNS, refused, TLS, offline mode) means "no": nothing is appended.
        with contextlib.suppress(Exception):
            get_session().head(url, timeout=timeout_s, follow_redirects=False)
            answered.append(True)
        done.set()

    threading.Thread(target=probe, name="hub-probe", daemon=True).start()
    done.wait(timeout_s + 0.5)
    return bool(answered)
