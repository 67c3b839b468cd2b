"""The reference tile server for benchmarks/tiles.py: TiTiler's stock COG endpoints (runs in .venv-titiler)."""

from fastapi import FastAPI
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

app = FastAPI(title="TiTiler reference")
app.include_router(TilerFactory().router, prefix="/cog")
add_exception_handlers(app, DEFAULT_STATUS_CODES)


@app.get("/healthz")
def healthz() -> dict:
    """Liveness for the benchmark's start-up wait."""
    return {"ok": True}
