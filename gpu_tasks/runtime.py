"""Models loaded once per worker process and kept warm between jobs, resolved from settings."""

import threading
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from .inference.loading import resolve_hf_source, resolve_sam2_source

_lock = threading.Lock()
_embedders: dict[tuple, object] = {}
_refiners: dict[tuple, object] = {}
_embedder_override: list = []


def device_name() -> str | None:
    """The configured device ("cuda", "cpu") or None for automatic."""
    return settings.TORCH_DEVICE or None


def ultralytics_device() -> str:
    """The configured device as ultralytics names it ("cpu", "0")."""
    from .inference.device import pick_device

    dev = pick_device(device_name())
    return "cpu" if dev.type != "cuda" else str(dev.index or 0)


def embedder():
    """The configured backbone (DINO_MODEL), loaded on first use; ModelUnavailable when it is not on disk."""
    if _embedder_override:
        return _embedder_override[-1]
    model_id = settings.DINO_MODEL
    # Resolved on every call (cheap, no network): weights removed from disk fail now, not mid-job.
    source = resolve_hf_source(model_id, Path(settings.MODEL_DIR))
    key = (model_id, str(source), device_name(), settings.EMBED_BATCH_SIZE)
    with _lock:
        if key not in _embedders:
            # torch and transformers load here, on the worker, never in the web process that imports this module.
            from .inference.device import pick_device
            from .inference.embedder import Embedder

            _embedders.clear()  # one backbone in memory at a time
            _embedders[key] = Embedder.load(
                source,
                model_id=model_id,
                device=pick_device(device_name()),
                batch_size=settings.EMBED_BATCH_SIZE or None,
            )
        emb = _embedders[key]
    emb.nvtx = settings.GPU_PROFILE  # forward passes inside NVTX ranges when profiling
    return emb


def refiner():
    """The configured SAM2 model (SAM2_MODEL), loaded on first use; ModelUnavailable when it is not on disk."""
    model = settings.SAM2_MODEL
    config_name, checkpoint = resolve_sam2_source(model, Path(settings.MODEL_DIR))
    key = (model, config_name, str(checkpoint), device_name())
    with _lock:
        if key not in _refiners:
            from .inference.device import pick_device
            from .inference.refiner import Refiner

            _refiners.clear()
            _refiners[key] = Refiner.load(config_name, checkpoint, device=pick_device(device_name()))
        ref = _refiners[key]
    ref.nvtx = settings.GPU_PROFILE
    return ref


@contextmanager
def use_embedder(embedder_obj):
    """Run with another object behind embedder() (anything with `spec`, `batch_size` and `embed_tiles`)."""
    _embedder_override.append(embedder_obj)
    try:
        yield embedder_obj
    finally:
        _embedder_override.remove(embedder_obj)


def unload() -> None:
    """Forget loaded models (tests that switch settings, or to free memory)."""
    with _lock:
        _embedders.clear()
        _refiners.clear()
