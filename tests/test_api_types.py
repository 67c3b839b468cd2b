"""The front end's API types (frontend/src/api-schema.d.ts) are generated from the OpenAPI schema and kept current."""

import difflib
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

FRONTEND = ROOT / "frontend"
COMMITTED = FRONTEND / "src" / "api-schema.d.ts"
FIX = "cd frontend && npm run api-types"


def test_committed_api_types_match_the_schema(tmp_path):
    """Regenerate schema and types with the npm script itself (into tmp_path) and compare with the committed file."""
    if not (FRONTEND / "node_modules" / ".bin" / "openapi-typescript").exists():
        pytest.fail("openapi-typescript is not installed: run `cd frontend && npm ci` (scripts/setup.sh does)")
    npm = shutil.which("npm")
    assert npm, "npm is not installed: run scripts/setup.sh"
    fresh = tmp_path / "api-schema.d.ts"
    env = {**os.environ, "API_SCHEMA_FILE": str(tmp_path / "openapi.yaml"), "API_TYPES_OUT": str(fresh)}
    done = subprocess.run([npm, "run", "--silent", "api-types"], cwd=FRONTEND, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"`npm run api-types` failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    expected = fresh.read_text()
    committed = COMMITTED.read_text() if COMMITTED.exists() else ""
    if committed != expected:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), expected.splitlines(keepends=True),
            "committed api-schema.d.ts", "from the current schema", n=1))[:60])
        pytest.fail(f"frontend/src/api-schema.d.ts is out of date with the API schema; run `{FIX}` and commit "
                    f"it (then `npm run build` shows what in the page no longer fits).\n{diff}")
