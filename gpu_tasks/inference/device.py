"""Device selection, mixed precision and profiling helpers shared by the embedder and the refiner."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present unless `prefer` names another device ("cpu", "cuda:1")."""
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")
        return dev
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """bf16 on GPUs that support it (no overflow risk), fp16 on older ones, None (fp32) on CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        # CPU bf16 autocast is slower than fp32 on most server CPUs without AMX, and less exact.
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device | str) -> Iterator[None]:
    """Mixed-precision autocast on CUDA; a no-op on CPU."""
    device = torch.device(device)
    dtype = autocast_dtype(device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def nvtx_range(name: str, enabled: bool) -> Iterator[None]:
    """An NVTX range for Nsight profiles when on CUDA and `enabled`; otherwise a no-op."""
    active = enabled and torch.cuda.is_available()
    if active:
        torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        if active:
            torch.cuda.nvtx.range_pop()


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA (or CPU allocator) out-of-memory error, which callers retry with a smaller batch."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def empty_cache(device: torch.device | str) -> None:
    """Release cached CUDA blocks after an OOM so that the smaller retry can allocate."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def run_in_chunks(n: int, size: int, run, device: torch.device | str, what: str) -> int:
    """Call run(start, stop) over [0, n) in chunks of `size`, halving it on out-of-memory; the size that worked.

    The failed chunk is retried at the smaller size; callers keep the returned size for the rest of the process.
    """
    start = 0
    while start < n:
        stop = min(n, start + size)
        try:
            run(start, stop)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_oom(exc) or size == 1:
                raise
            size = max(1, size // 2)
            empty_cache(device)
            log.warning("out of memory: %s per call now %d", what, size)
            continue
        start = stop
    return size
