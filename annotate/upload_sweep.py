"""Deletes upload temp files that outlived their request (a web worker killed mid-upload leaves them behind)."""

import logging
import time
from pathlib import Path

from django.conf import settings

from . import storage
from .models import Scene

log = logging.getLogger(__name__)


def _held_paths(root: Path) -> set[Path]:
    """Files under `root` that a scene points to (scenes keep theirs under SCENES_DIR; this is a safeguard)."""
    try:
        prefix = storage.relative(root)
    except ValueError:  # the temp directory lies outside DATA_DIR, where no stored path can point
        return set()
    stored = Scene.objects.filter(upload_path__startswith=prefix + "/").values_list("upload_path", flat=True)
    return {storage.absolute(p) for p in stored}


def uploads_sweep(*, older_than_s: float | None = None, now: float | None = None) -> list[Path]:
    """Delete files under UPLOAD_TMP_DIR untouched for older_than_s (UPLOAD_STALE_AFTER_S) that no scene holds.

    A request in progress writes its file continuously, so a file silent for hours belongs to no request.
    Returns the deleted paths.
    """
    older_than_s = settings.UPLOAD_STALE_AFTER_S if older_than_s is None else older_than_s
    cutoff = (time.time() if now is None else now) - older_than_s
    root = Path(settings.UPLOAD_TMP_DIR)
    if not root.is_dir():
        return []
    held = _held_paths(root)
    removed = []
    for path in root.iterdir():
        try:
            if not path.is_file() or path.stat().st_mtime > cutoff or path.resolve() in held:
                continue
            path.unlink()
        except FileNotFoundError:  # finished or swept by another worker meanwhile
            continue
        removed.append(path)
    if removed:
        log.info("removed %d stale upload file(s) from %s", len(removed), root)
    return removed
