"""The import layers of pyproject's [tool.importlinter] contracts hold, and a forbidden import breaks the build."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "accounts", "annotate", "review", "gpu_tasks")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the tree at cwd (its pyproject.toml), uncached so every run reads the code afresh."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """A copy of the project's packages and pyproject.toml, to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("gpu_tasks/inference/errors.py", "import django", "gpu_tasks.inference is plain Python"),
        ("gpu_tasks/inference/errors.py", "from gpu_tasks import models", "gpu_tasks.inference is plain Python"),
        ("annotate/geo.py", "import gpu_tasks.models", "annotate is the base"),
        ("annotate/geo.py", "import review", "annotate is the base"),
        ("gpu_tasks/broker.py", "from gpu_tasks import tasks", "no import cycles"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree_copy: Path, module: str, line: str, contract: str):
    assert lint_imports(tree_copy).returncode == 0  # the untouched copy is clean
    with open(tree_copy / module, "a") as fh:
        fh.write(f"\n{line}  # noqa\n")
    result = lint_imports(tree_copy)
    assert result.returncode != 0, result.stdout
    assert contract in result.stdout.split("Broken contracts", 1)[1], result.stdout
