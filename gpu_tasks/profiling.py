"""Profiling switch (settings.GPU_PROFILE): NVTX stage ranges on CUDA and a torch profiler trace per job."""

import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from django.conf import settings

from .models import Job


def job_dir(job: Job) -> Path:
    """Where a job's files (profiler trace) are written."""
    path = Path(settings.DATA_DIR) / "jobs" / str(job.pk)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def job_profiling(*, job: Job):
    """With GPU_PROFILE on, record a torch profiler trace of the job to DATA_DIR/jobs/<id>/trace.json (Perfetto)."""
    if not settings.GPU_PROFILE or job.kind not in ("embed", "search", "refine"):
        yield
        return
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=False) as prof:
        yield
    prof.export_chrome_trace(str(trace_path(job)))


def trace_path(job: Job) -> Path:
    """The job's profiler trace file (exists only when the job ran with GPU_PROFILE on)."""
    return job_dir(job) / "trace.json"


@contextmanager
def stage(name: str, timings: dict):
    """Time one stage of a job into timings[name] (seconds), inside an NVTX range when profiling on CUDA."""
    started = time.perf_counter()
    if settings.GPU_PROFILE:
        from .inference.device import nvtx_range  # imports torch: only when profiling (CPU jobs never load it)

        ctx = nvtx_range(name, True)
    else:
        ctx = nullcontext()
    with ctx:
        yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
