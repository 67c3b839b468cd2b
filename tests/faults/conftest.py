"""Fault tests reuse the real-worker fixtures of tests/gpu_tasks (worker subprocesses, tiny models)."""

from tests.gpu_tasks.conftest import start_worker, tiny_dinov2_dir  # noqa: F401 - fixtures, found by name
