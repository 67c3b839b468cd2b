"""Resolve configured model names to local weight files, offline and fast; describe what to fetch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ModelUnavailable

# HF repo id -> (sam2 package config name, checkpoint file name in that repo); same table as
# sam2.build_sam.HF_MODEL_ID_TO_FILENAMES (sam2 1.1.0), copied so that resolving needs no torch import.
SAM2_HF_MODELS: dict[str, tuple[str, str]] = {
    "facebook/sam2-hiera-tiny": ("configs/sam2/sam2_hiera_t.yaml", "sam2_hiera_tiny.pt"),
    "facebook/sam2-hiera-small": ("configs/sam2/sam2_hiera_s.yaml", "sam2_hiera_small.pt"),
    "facebook/sam2-hiera-base-plus": ("configs/sam2/sam2_hiera_b+.yaml", "sam2_hiera_base_plus.pt"),
    "facebook/sam2-hiera-large": ("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large.pt"),
    "facebook/sam2.1-hiera-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "facebook/sam2.1-hiera-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "facebook/sam2.1-hiera-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "facebook/sam2.1-hiera-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}

# A local SAM2 spec is "CONFIG_NAME::/path/to/checkpoint.pt".
SAM2_SPEC_SEPARATOR = "::"

# What a backbone needs from its HF repo: config, preprocessor config and safetensors weights.
HF_ALLOW_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors")


@dataclass(frozen=True)
class FetchPlan:
    """What a connected machine must download for one model: repo, files, and where to put them."""

    repo_id: str
    allow_patterns: tuple[str, ...]
    local_dir: Path


def hf_local_dir(model_id: str, model_dir: Path) -> Path:
    """Where `fetch_models` stores (and we look for) a hub repo: MODEL_DIR/owner--name."""
    return Path(model_dir) / model_id.replace("/", "--")


def _looks_like_path(model: str) -> bool:
    """A value with a path separator that is not a bare 'owner/name' hub id is meant as a path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def resolve_hf_source(model_id: str, model_dir: Path) -> Path:
    """Local directory holding `model_id` (a path, or a hub id fetched into model_dir); never touches the network."""
    direct = Path(model_id).expanduser()
    if direct.is_dir():
        if not (direct / "config.json").is_file():
            raise ModelUnavailable(model_id, f"{direct} has no config.json")
        return direct
    if _looks_like_path(model_id):
        raise ModelUnavailable(model_id, f"no directory {direct}")
    fetched = hf_local_dir(model_id, model_dir)
    if (fetched / "config.json").is_file():
        return fetched
    raise ModelUnavailable(model_id, f"looked for {fetched}/config.json")


def hf_fetch_plan(model_id: str, model_dir: Path) -> FetchPlan:
    """Download plan for a backbone hub id (for snapshot_download(repo_id, allow_patterns, local_dir))."""
    return FetchPlan(repo_id=model_id, allow_patterns=HF_ALLOW_PATTERNS, local_dir=hf_local_dir(model_id, model_dir))


def resolve_sam2_source(model: str, model_dir: Path) -> tuple[str, Path]:
    """(sam2 config name, checkpoint path) for a known hub id, a 'CONFIG::ckpt.pt' spec or a known .pt file name."""
    if SAM2_SPEC_SEPARATOR in model:
        config_name, _, ckpt = model.partition(SAM2_SPEC_SEPARATOR)
        ckpt_path = Path(ckpt).expanduser()
        if not config_name:
            raise ModelUnavailable(model, "empty config name before '::'")
    elif model in SAM2_HF_MODELS:
        config_name, filename = SAM2_HF_MODELS[model]
        ckpt_path = hf_local_dir(model, model_dir) / filename
    else:
        # A bare checkpoint path whose file name is one of the official ones implies its config.
        ckpt_path = Path(model).expanduser()
        by_file = {fname: cfg for cfg, fname in SAM2_HF_MODELS.values()}
        if ckpt_path.name not in by_file:
            known = ", ".join(sorted(SAM2_HF_MODELS))
            raise ModelUnavailable(model, f"unknown SAM2 model; use one of {known} or 'CONFIG_NAME::/path/ckpt.pt'")
        config_name = by_file[ckpt_path.name]
    if not ckpt_path.is_file():
        raise ModelUnavailable(model, f"no checkpoint file {ckpt_path}")
    return config_name, ckpt_path


def sam2_fetch_plan(model: str, model_dir: Path) -> FetchPlan:
    """Download plan for a SAM2 hub id: only its checkpoint (the configs ship inside the sam2 package)."""
    if model not in SAM2_HF_MODELS:
        raise ValueError(f"{model!r} is not a known SAM2 hub id ({', '.join(sorted(SAM2_HF_MODELS))})")
    _, filename = SAM2_HF_MODELS[model]
    return FetchPlan(repo_id=model, allow_patterns=(filename,), local_dir=hf_local_dir(model, model_dir))
