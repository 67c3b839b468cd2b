"""Where a scene's files live: DATA_DIR/scenes/<uuid>/{upload.tif,cog-<hex>.tif}; names never come from users."""

import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings

UPLOAD_NAME = "upload.tif"


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
