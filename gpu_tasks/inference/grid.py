"""The on-disk patch-token grid of one scene: a float16 memmap, its metadata, and a completion marker."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IncompatibleEmbeddings, InsufficientDiskSpace

TOKENS_FILE = "tokens.f16"
META_FILE = "meta.json"
COMPLETE_FILE = "COMPLETE"
# One byte per tile of the tiling plan, 1 once the tile's tokens are flushed: a re-run resumes from it.
TILES_DONE_FILE = "tiles_done"
TOKEN_DTYPE = np.float16


def stable_digest(payload: Any, length: int = 16) -> str:
    """Short hex digest of a JSON-serialisable value, independent of dict key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class GridMeta:
    """Shape, geometry and provenance of a token grid; cell (r, c) covers native px [c*cell_px, (c+1)*cell_px)."""

    grid_h: int
    grid_w: int
    dim: int
    cell_px: float  # native-resolution pixels per grid cell = patch_size / scale
    scale: float  # input pixels per native pixel (2.0 = upsampled twice before the backbone)
    tile_px: int  # backbone input tile side, a multiple of the patch size
    margin_patches: int
    scene_width_px: int
    scene_height_px: int
    embedder: dict = field(default_factory=dict)  # EmbedderSpec.describe()
    preprocessing: dict = field(default_factory=dict)  # opaque: band mapping + stretch, from the caller
    key: str = ""

    @property
    def embedder_key(self) -> str:
        """Key of the embedder spec that produced these tokens."""
        return str(self.embedder.get("key", ""))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(grid_h, grid_w, dim) of the token memmap."""
        return (self.grid_h, self.grid_w, self.dim)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GridMeta:
        """Inverse of to_dict; ignores unknown keys written by newer versions."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: Path) -> None:
        """Write meta.json atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> GridMeta:
        """Read meta.json."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def grid_key(
    *,
    embedder_key: str,
    preprocessing: dict,
    scale: float,
    tile_px: int,
    margin_patches: int,
    scene_width_px: int,
    scene_height_px: int,
) -> str:
    """Digest of everything that determines a grid's content: same key = reusable tokens."""
    return stable_digest(
        {
            "embedder": embedder_key,
            "preprocessing": preprocessing,
            "scale": float(scale),
            "tile_px": int(tile_px),
            "margin": int(margin_patches),
            "scene": [int(scene_width_px), int(scene_height_px)],
        }
    )


def is_complete(directory: Path, key: str | None = None) -> bool:
    """True if the grid in `directory` was fully written (and, if given, with this key)."""
    directory = Path(directory)
    marker = directory / COMPLETE_FILE
    if not (marker.is_file() and (directory / META_FILE).is_file() and (directory / TOKENS_FILE).is_file()):
        return False
    return key is None or marker.read_text().strip() == key


def open_grid(directory: Path) -> tuple[GridMeta, np.memmap]:
    """Metadata and read-only token memmap (grid_h, grid_w, dim) float16 of a complete grid."""
    directory = Path(directory)
    if not is_complete(directory):
        raise FileNotFoundError(f"no complete token grid in {directory}")
    meta = GridMeta.load(directory / META_FILE)
    tokens = np.memmap(directory / TOKENS_FILE, dtype=TOKEN_DTYPE, mode="r", shape=meta.shape)
    return meta, tokens


def reserve_space(path: Path, nbytes: int) -> None:
    """Create (or grow) `path` to nbytes with every block allocated now, or raise InsufficientDiskSpace.

    A write to a memory-mapped page the filesystem cannot back kills the process with SIGBUS (no exception,
    no log line, the job left running): allocating up front turns a full disk into an error the job reports.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    size_before = os.fstat(fd).st_size
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate: compare instead
                have = os.fstat(fd).st_blocks * 512
                if shutil.disk_usage(path.parent).free < nbytes - have:
                    raise _no_space(path, nbytes) from exc
                os.ftruncate(fd, max(nbytes, os.fstat(fd).st_size))
                return
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                os.ftruncate(fd, size_before)  # give back what was allocated before it ran out
                raise _no_space(path, nbytes) from exc
            raise
    finally:
        os.close(fd)


def _no_space(path: Path, nbytes: int) -> InsufficientDiskSpace:
    """The error naming the needed and free space."""
    free = shutil.disk_usage(path.parent).free
    return InsufficientDiskSpace(
        f"Not enough disk space for the scene's embedding grid: it needs {nbytes / 1024**2:.1f} MiB and "
        f"{free / 1024**2:.1f} MiB are free in {path.parent.parent}. Free space (or ask the administrator to), "
        "then retry the job."
    )


class GridStore:
    """Writes one grid directory: create() the memmap, fill it, then mark_complete() (the last write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def tokens_path(self) -> Path:
        """The raw float16 token file."""
        return self.directory / TOKENS_FILE

    def is_complete(self, key: str | None = None) -> bool:
        """See module-level is_complete."""
        return is_complete(self.directory, key)

    def open(self) -> tuple[GridMeta, np.memmap]:
        """See module-level open_grid."""
        return open_grid(self.directory)

    def create(self, meta: GridMeta) -> np.memmap:
        """Start (or restart) a grid: drop the marker first so a crash leaves it visibly incomplete."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / COMPLETE_FILE).unlink()
        if self._resumable(meta):
            # An interrupted run with the same key: keep the tokens of the tiles it finished (tiles_done).
            return np.memmap(self.tokens_path, dtype=TOKEN_DTYPE, mode="r+", shape=meta.shape)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / TILES_DONE_FILE).unlink()
        with contextlib.suppress(FileNotFoundError):
            # A fresh file: never reuse stale tokens from an interrupted run of another shape.
            self.tokens_path.unlink()
        meta.save(self.directory / META_FILE)
        reserve_space(self.tokens_path, int(np.prod(meta.shape)) * np.dtype(TOKEN_DTYPE).itemsize)
        return np.memmap(self.tokens_path, dtype=TOKEN_DTYPE, mode="r+", shape=meta.shape)

    def _resumable(self, meta: GridMeta) -> bool:
        """Whether the directory holds a partial grid of this very key and shape, with its finished tiles listed."""
        try:
            old = GridMeta.load(self.directory / META_FILE)
            size = self.tokens_path.stat().st_size
        except (OSError, ValueError, TypeError):
            return False
        expected = int(np.prod(meta.shape)) * np.dtype(TOKEN_DTYPE).itemsize
        done = self.directory / TILES_DONE_FILE
        return old.key == meta.key and old.shape == meta.shape and size == expected and done.is_file()

    def tiles_done(self, n_tiles: int) -> np.ndarray:
        """Which of the plan's n_tiles tiles are on disk already (bool array; none for a new grid)."""
        try:
            done = np.fromfile(self.directory / TILES_DONE_FILE, dtype=np.uint8)
        except (FileNotFoundError, ValueError):
            return np.zeros(n_tiles, dtype=bool)
        return done.astype(bool) if done.size == n_tiles else np.zeros(n_tiles, dtype=bool)

    def mark_tiles_done(self, done: np.ndarray) -> None:
        """Record the finished tiles; call after their tokens were flushed (temp file + rename: never half-written)."""
        path = self.directory / TILES_DONE_FILE
        tmp = path.with_name(TILES_DONE_FILE + ".tmp")
        np.asarray(done, dtype=np.uint8).tofile(tmp)
        os.replace(tmp, path)

    @staticmethod
    def release(tokens: np.memmap) -> None:
        """Write finished tokens to disk and drop their pages from memory.

        Written pages of a shared file mapping count as resident memory until the kernel reclaims them, so
        without this a 20k x 20k scene's 1.5 GB grid would be held in RAM while it is being written.
        """
        tokens.flush()
        mapping = getattr(tokens, "_mmap", None)  # numpy's own mmap object (no public accessor)
        if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)

    def mark_complete(self, meta: GridMeta, tokens: np.memmap) -> None:
        """Flush tokens to disk, then atomically write the COMPLETE marker holding the grid key."""
        tokens.flush()
        with open(self.tokens_path, "rb+") as fh:
            os.fsync(fh.fileno())
        marker = self.directory / COMPLETE_FILE
        tmp = marker.with_name(COMPLETE_FILE + ".tmp")
        tmp.write_text(meta.key)
        os.replace(tmp, marker)


def _embedder_key_of(other: Any) -> str:
    """Embedder key of a GridMeta, an EmbedderSpec-like object or a plain key string."""
    if isinstance(other, GridMeta):
        return other.embedder_key
    if isinstance(other, str):
        return other
    key = getattr(other, "key", None)
    if isinstance(key, str):
        return key
    raise TypeError(f"cannot compare embeddings with {type(other).__name__}")


def check_compatible(
    meta_a: GridMeta,
    other: GridMeta | str | Any,
    *,
    preprocessing_keys: Iterable[str] | None = None,
) -> None:
    """Raise IncompatibleEmbeddings unless `other` (grid meta, embedder spec or spec key) lives in meta_a's space.

    Model key and token dim are always compared. Preprocessing is compared only between two grids: all of it
    by default, or only `preprocessing_keys` (e.g. the band mapping and stretch method, not per-scene values).
    """
    model_a = meta_a.embedder.get("model_id", "?")
    key_b = _embedder_key_of(other)
    problems: list[str] = []
    if meta_a.embedder_key != key_b:
        model_b = other.embedder.get("model_id", "?") if isinstance(other, GridMeta) else key_b
        problems.append(f"embedder {model_a} [{meta_a.embedder_key}] vs {model_b} [{key_b}]")
    if isinstance(other, GridMeta):
        if meta_a.dim != other.dim:
            problems.append(f"token dim {meta_a.dim} vs {other.dim}")
        keys = sorted(set(meta_a.preprocessing) | set(other.preprocessing))
        if preprocessing_keys is not None:
            keys = sorted(set(preprocessing_keys))
        diff = [k for k in keys if meta_a.preprocessing.get(k) != other.preprocessing.get(k)]
        if diff:
            shown = "; ".join(f"{k}: {meta_a.preprocessing.get(k)!r} vs {other.preprocessing.get(k)!r}" for k in diff)
            problems.append(f"preprocessing differs ({shown})")
    if problems:
        raise IncompatibleEmbeddings(
            "embeddings are not comparable: "
            + "; ".join(problems)
            + f". Re-embed the scene with model {model_a} and the same band mapping/stretch, "
            "or rebuild the examples with the current model."
        )
