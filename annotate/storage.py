"""Where a scene's files live: DATA_DIR/scenes/<uuid>/{upload.tif,cog-<hex>.tif}; names never come from users."""

import errno
import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings

UPLOAD_NAME = "upload.tif"

# EFBIG too: a file-size limit (RLIMIT_FSIZE, a quota) stops a write the way a full disk does.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "file too large")
def _chain(exc: BaseException | None):
    """An exception and those it was raised from or during."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an exception (or one behind it) is the OS saying a write found the disk full."""
    return any(
        (isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS) or any(t in str(e).lower() for t in DISK_FULL_TEXTS)
        for e in _chain(exc)
    )


def free_bytes(path: Path | str) -> int:
    """Free bytes on the filesystem holding `path` (or its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def mib(nbytes: float) -> str:
    """A byte count as MiB, for messages."""
    return f"{nbytes / 1024**2:.1f} MiB"


def new_scene_dir() -> Path:
    """A fresh, empty directory for one scene's files."""
    path = Path(settings.SCENES_DIR) / uuid.uuid4().hex
    path.mkdir(parents=True, exist_ok=False)
    return path


def new_cog_path(scene_dir: Path) -> Path:
    """A fresh COG file name in a scene directory: a re-ingest writes beside the working COG, never over it."""
    return scene_dir / f"cog-{uuid.uuid4().hex[:12]}.tif"


def scene_cogs(scene_dir: Path) -> list[Path]:
    """Every COG (finished or partial) in a scene directory."""
    return sorted(p for p in scene_dir.glob("cog*.tif"))


def relative(path: Path) -> str:
    """A path under DATA_DIR as stored in the database."""
    return str(Path(path).resolve().relative_to(Path(settings.DATA_DIR).resolve()))


def absolute(stored: str) -> Path:
    """The absolute path of a stored relative path; refuses anything that escapes DATA_DIR."""
    root = Path(settings.DATA_DIR).resolve()
    path = (root / stored).resolve()
    if root not in path.parents:
        raise ValueError(f"stored path escapes DATA_DIR: {stored!r}")
    return path


def store_local_file(source: Path, scene_dir: Path) -> Path:
    """Put a local file into a scene directory (hard link when possible, else copy)."""
    target = scene_dir / UPLOAD_NAME
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def store_uploaded_file(uploaded, scene_dir: Path) -> Path:
    """Move an uploaded file (a Django UploadedFile) into a scene directory without reading it into memory."""
    target = scene_dir / UPLOAD_NAME
    temp_path = getattr(uploaded, "temporary_file_path", None)
    if temp_path is not None:
        shutil.move(temp_path(), target)
    else:
        with open(target, "wb") as out:
            for chunk in uploaded.chunks():
                out.write(chunk)
    return target


def remove_scene_dir(stored_upload_path: str) -> None:
    """Delete a scene's directory and everything in it."""
    if stored_upload_path:
        shutil.rmtree(absolute(stored_upload_path).parent, ignore_errors=True)
