"""Fixtures for the Django-free inference package: tiny real models, a colour embedder, a synthetic scene."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gpu_tasks.inference.grid import stable_digest

PATCH = 14


def tiny_dinov2_dir(root: Path, model_id: str, **overrides) -> Path:
    """Save a randomly initialised tiny DINOv2 where resolve_hf_source looks for a fetched hub id."""
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, **overrides)
    target = root / model_id.replace("/", "--")
    Dinov2Model(cfg).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A MODEL_DIR with tiny DINOv2, DINOv2-with-registers and DINOv3 ViT models saved as fetch_models would."""
    import torch
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    tiny_dinov2_dir(root, "test/dinov2-tiny", patch_size=PATCH)
    reg_cfg = Dinov2WithRegistersConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        patch_size=PATCH,
        num_register_tokens=4,
    )
    Dinov2WithRegistersModel(reg_cfg).save_pretrained(root / "test--dinov2-reg-tiny")
    try:
        from transformers import DINOv3ViTConfig, DINOv3ViTModel
    except ImportError:  # older transformers: the DINOv3 test skips itself
        return root
    v3_cfg = DINOv3ViTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        patch_size=16,
        num_register_tokens=4,
    )
    DINOv3ViTModel(v3_cfg).save_pretrained(root / "test--dinov3-tiny")
    return root


# ---------------------------------------------------------------- deterministic colour embedder

# Anchor colours of the colour embedding: every patch becomes soft memberships to these.
_LEVELS = (0.0, 96.0, 160.0, 255.0)
ANCHORS = np.array([(r, g, b) for r in _LEVELS for g in _LEVELS for b in _LEVELS], dtype=np.float32)
SIGMA = 48.0


def colour_vector(rgb: np.ndarray) -> np.ndarray:
    """Gaussian memberships of mean colours (..., 3) to the anchor palette: similar colours, high cosine."""
    d2 = ((rgb[..., None, :] - ANCHORS) ** 2).sum(-1)
    return np.exp(-d2 / (2 * SIGMA**2)).astype(np.float32)


@dataclass(frozen=True)
class ColourSpec:
    """EmbedderSpec stand-in for ColourEmbedder."""

    patch_size: int = PATCH
    hidden_size: int = len(ANCHORS)

    @property
    def key(self) -> str:
        return stable_digest({"colour": self.patch_size, "anchors": ANCHORS.tolist(), "sigma": SIGMA})

    def describe(self) -> dict:
        return {"model_id": "test/colour", "key": self.key, "patch_size": self.patch_size}


class ColourEmbedder:
    """Same interface as Embedder; a patch's token is its mean colour's palette membership (no context)."""

    def __init__(self, batch_size: int = 4) -> None:
        self.spec = ColourSpec()
        self.batch_size = batch_size
        self.calls = 0
        self.tiles_seen = 0

    def embed_tiles(self, tiles_rgb: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.tiles_seen += len(tiles_rgb)
        n, h, w, _ = tiles_rgb.shape
        p = self.spec.patch_size
        means = tiles_rgb.reshape(n, h // p, p, w // p, p, 3).astype(np.float32).mean(axis=(2, 4))
        return colour_vector(means)


@pytest.fixture
def colour_embedder() -> ColourEmbedder:
    return ColourEmbedder()


# ---------------------------------------------------------------- synthetic scene

RED = (200, 30, 30)
LOOKALIKE = (210, 50, 60)  # cosine 0.75 to red: matches red without a negative
BLUE = (40, 60, 200)
GREY = (128, 128, 128)


@dataclass
class Scene:
    """A synthetic RGB scene with planted objects; boxes are xyxy native px aligned to 14 px cells."""

    rgb: np.ndarray
    objects: dict[str, tuple[int, int, int, int]]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


def make_scene() -> Scene:
    """700 x 504 px grey noise with two red squares (one across a tile seam), a blue one and a look-alike."""
    rng = np.random.default_rng(7)
    h, w = 36 * PATCH, 50 * PATCH
    rgb = np.clip(rng.normal(GREY, 6, size=(h, w, 3)), 0, 255).astype(np.uint8)
    objects = {
        "red_a": (5 * PATCH, 5 * PATCH, 9 * PATCH, 9 * PATCH),
        # With 10-cell tiles and 2-cell margins the owned blocks break at cells 8, 14, 20, ...: this one
        # spans columns 12-16 and rows 18-22, across a seam in both directions.
        "red_seam": (12 * PATCH, 18 * PATCH, 17 * PATCH, 23 * PATCH),
        "blue": (30 * PATCH, 6 * PATCH, 34 * PATCH, 9 * PATCH),
        "lookalike": (36 * PATCH, 24 * PATCH, 40 * PATCH, 28 * PATCH),
    }
    colours = {"red_a": RED, "red_seam": RED, "blue": BLUE, "lookalike": LOOKALIKE}
    for name, (x0, y0, x1, y1) in objects.items():
        rgb[y0:y1, x0:x1] = colours[name]
    return Scene(rgb, objects)


@pytest.fixture(scope="session")
def scene() -> Scene:
    return make_scene()


def array_reader(rgb: np.ndarray, calls: list | None = None):
    """read_rgb over an in-memory image: zero outside, nearest-neighbour resampling to the out size."""
    h, w = rgb.shape[:2]

    def read(col_off: int, row_off: int, width: int, height: int, out_w: int, out_h: int) -> np.ndarray:
        if calls is not None:
            calls.append((col_off, row_off, width, height, out_w, out_h))
        xs = col_off + ((np.arange(out_w) + 0.5) * width / out_w).astype(np.int64)
        ys = row_off + ((np.arange(out_h) + 0.5) * height / out_h).astype(np.int64)
        out = np.zeros((out_h, out_w, 3), dtype=np.uint8)
        vx, vy = (xs >= 0) & (xs < w), (ys >= 0) & (ys < h)
        out[np.ix_(vy, vx)] = rgb[np.ix_(ys[vy], xs[vx])]
        return out

    return read


def digest(a: np.ndarray) -> str:
    """Content hash of an array, for 'same result' assertions."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
