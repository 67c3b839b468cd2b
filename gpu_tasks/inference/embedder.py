"""DINOv2 / DINOv2-with-registers / DINOv3 ViT patch-token embedder: uint8 RGB tiles in, token grids out."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .device import autocast, nvtx_range, pick_device, run_in_chunks
from .errors import ModelUnavailable
from .grid import stable_digest
from .prototypes import mean_direction

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPPORTED_ARCHS = ("dinov2", "dinov2_with_registers", "dinov3_vit")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class EmbedderSpec:
    """Everything that defines the embedding space of a backbone; `key` names it in files and db columns."""

    model_id: str
    revision: str | None
    arch: str
    patch_size: int
    hidden_size: int
    num_register_tokens: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    @property
    def key(self) -> str:
        """16-hex digest of all fields: equal keys mean comparable tokens."""
        return stable_digest(asdict(self))

    def describe(self) -> dict:
        """JSON-ready fields plus the key (stored in grid metadata and job records)."""
        data = asdict(self)
        data["image_mean"] = list(self.image_mean)
        data["image_std"] = list(self.image_std)
        data["key"] = self.key
        return data


def _read_revision(source: Path, config) -> str | None:
    """Hub commit of the weights: config._commit_hash, else the metadata snapshot_download(local_dir=) leaves."""
    commit = getattr(config, "_commit_hash", None)
    if isinstance(commit, str) and _COMMIT_RE.match(commit):
        return commit
    meta = source / ".cache" / "huggingface" / "download" / "config.json.metadata"
    if meta.is_file():
        first = meta.read_text().splitlines()[:1]
        if first and _COMMIT_RE.match(first[0].strip()):
            return first[0].strip()
    return None


def _read_norm_stats(source: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Image mean/std from preprocessor_config.json (e.g. DINOv3 SAT weights differ), else ImageNet's."""
    path = source / "preprocessor_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        mean, std = cfg.get("image_mean"), cfg.get("image_std")
        if isinstance(mean, list) and isinstance(std, list) and len(mean) == 3 and len(std) == 3:
            return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]
    return IMAGENET_MEAN, IMAGENET_STD


def spec_from_config(config, *, model_id: str, source: Path) -> EmbedderSpec:
    """EmbedderSpec of a loaded transformers config."""
    arch = config.model_type
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"{model_id}: unsupported backbone type {arch!r} (supported: {', '.join(SUPPORTED_ARCHS)})")
    patch = config.patch_size
    if isinstance(patch, list | tuple):
        if patch[0] != patch[1]:
            raise ValueError(f"{model_id}: non-square patches {patch} are not supported")
        patch = patch[0]
    mean, std = _read_norm_stats(source)
    return EmbedderSpec(
        model_id=model_id,
        revision=_read_revision(source, config),
        arch=arch,
        patch_size=int(patch),
        hidden_size=int(config.hidden_size),
        num_register_tokens=int(getattr(config, "num_register_tokens", 0) or 0),
        image_mean=mean,
        image_std=std,
    )


def default_batch_size(device: torch.device, hidden_size: int) -> int:
    """Tiles per forward: larger on GPU (scaled down for wider models), small on CPU where it barely matters."""
    if device.type == "cuda":
        return max(1, round(32 * 384 / hidden_size))
    return 2


class Embedder:
    """A loaded ViT backbone; `embed_tiles` maps (N, H, W, 3) uint8 to (N, H/p, W/p, C) float32 patch tokens."""

    def __init__(self, model: torch.nn.Module, spec: EmbedderSpec, device: torch.device, batch_size: int) -> None:
        self.model = model
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.nvtx = False  # set True to mark forward passes in Nsight profiles
        mean = torch.tensor(spec.image_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(spec.image_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        # (x/255 - mean)/std folded into one multiply-subtract on the device.
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        self._prefix_tokens = 1 + spec.num_register_tokens  # CLS, then registers, then patches

    @classmethod
    def load(
        cls,
        source: Path | str,
        model_id: str,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
    ) -> Embedder:
        """Load a backbone from a local directory (see loading.resolve_hf_source) in eval mode."""
        from transformers import AutoConfig, AutoModel

        source = Path(source)
        if not (source / "config.json").is_file():
            raise ModelUnavailable(model_id, f"{source} has no config.json")
        dev = pick_device(str(device)) if device is not None else pick_device()
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        spec = spec_from_config(config, model_id=model_id, source=source)
        try:
            model = AutoModel.from_pretrained(source, local_files_only=True, attn_implementation="sdpa")
        except (ValueError, ImportError):
            # Architectures without an SDPA path fall back to eager attention.
            model = AutoModel.from_pretrained(source, local_files_only=True)
        model.eval().to(dev)
        bs = batch_size or default_batch_size(dev, spec.hidden_size)
        log.info(
            "loaded %s (%s, p=%d, C=%d) on %s, batch %d",
            model_id,
            spec.arch,
            spec.patch_size,
            spec.hidden_size,
            dev,
            bs,
        )
        return cls(model, spec, dev, bs)

    def _forward(self, tiles_rgb: np.ndarray) -> torch.Tensor:
        """One forward pass on a chunk: (n, H, W, 3) uint8 -> (n, H/p, W/p, C) float32 on the CPU."""
        n, h, w, _ = tiles_rgb.shape
        p = self.spec.patch_size
        x = torch.from_numpy(tiles_rgb).to(self.device, non_blocking=True)
        # uint8 crosses the bus (4x less than float); the float conversion happens on the device.
        x = x.permute(0, 3, 1, 2).to(dtype=torch.float32, memory_format=torch.contiguous_format)
        x = x.mul_(self._scale).sub_(self._shift)
        with autocast(self.device), nvtx_range("dino_forward", self.nvtx):
            hidden = self.model(pixel_values=x).last_hidden_state  # already final-layernormed
        patches = hidden[:, self._prefix_tokens :, :]
        return patches.reshape(n, h // p, w // p, -1).float().cpu()

    @torch.inference_mode()
    def embed_tiles(self, tiles_rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 tiles (H, W multiples of the patch size) -> (N, H/p, W/p, C) float32 patch tokens."""
        if tiles_rgb.ndim != 4 or tiles_rgb.shape[-1] != 3 or tiles_rgb.dtype != np.uint8:
            raise ValueError(f"expected (N, H, W, 3) uint8 tiles, got {tiles_rgb.shape} {tiles_rgb.dtype}")
        n, h, w, _ = tiles_rgb.shape
        p = self.spec.patch_size
        if h % p or w % p:
            raise ValueError(f"tile size {h}x{w} is not a multiple of the patch size {p}")
        tiles_rgb = np.ascontiguousarray(tiles_rgb)
        out = np.empty((n, h // p, w // p, self.spec.hidden_size), dtype=np.float32)

        def run(start: int, stop: int) -> None:
            out[start:stop] = self._forward(tiles_rgb[start:stop]).numpy()

        self.batch_size = run_in_chunks(n, self.batch_size, run, self.device, "embedding tiles")
        return out

    def embed_region(self, rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """(C,) L2-normalised mean of the patch tokens of an (H, W, 3) uint8 crop inside a pixel mask."""
        p = self.spec.patch_size
        h, w = rgb.shape[:2]
        hp, wp = -(-h // p), -(-w // p)
        padded = np.zeros((hp * p, wp * p, 3), dtype=np.uint8)
        padded[:h, :w] = rgb
        tokens = self.embed_tiles(padded[None])[0]
        if mask is None:
            mask = np.ones((h, w), dtype=bool)
        m = np.zeros((hp * p, wp * p), dtype=np.float32)
        m[:h, :w] = mask
        cover = m.reshape(hp, p, wp, p).mean(axis=(1, 3))
        cells = cover >= 0.5
        if not cells.any():
            cells = cover == cover.max()
        return mean_direction(tokens[cells])
