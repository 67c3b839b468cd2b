"""What a unit of job work reports to and checks, in one object: progress, cancellation and stage timings."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .profiling import stage

Progress = Callable[[float, str], None]


def _silent(fraction: float, message: str) -> None:
    """Progress nobody reads (a call from a shell or a test)."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    """Passed down from the job runner to every step, instead of three loose arguments at each layer.

    `progress(fraction, message)` writes the Job row (and a command's progress bar); `should_cancel()` is
    polled between batches; `timings` collects seconds per stage into the job's `result.timings`.
    """

    progress: Progress = _silent
    should_cancel: Callable[[], bool] = _never
    timings: dict = field(default_factory=dict)

    def part(self, start: float, end: float) -> "RunContext":
        """The same run seen by a step that fills [start, end] of the progress bar (same cancel and timings)."""
        outer = self.progress

        def scaled(fraction: float, message: str) -> None:
            outer(start + (end - start) * fraction, message)

        return replace(self, progress=scaled)

    def stage(self, name: str):
        """Time a stage into this run's timings (an NVTX range when profiling)."""
        return stage(name, self.timings)
