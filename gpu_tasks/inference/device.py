"""Device selection, mixed precision and profiling helpers shared by the embedder and the refiner."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


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
