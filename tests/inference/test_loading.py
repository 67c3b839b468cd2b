"""Model resolution is offline and fails fast with a message that says how to get the weights."""

import time
from pathlib import Path

import pytest

from gpu_tasks.inference.errors import ModelUnavailable
from gpu_tasks.inference.loading import (
    SAM2_HF_MODELS,
    hf_fetch_plan,
    resolve_hf_source,
    resolve_sam2_source,
    sam2_fetch_plan,
)


def test_missing_hub_model_fails_fast_with_fetch_hint(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as info:
        resolve_hf_source("facebook/dinov2-small", tmp_path)
    assert time.perf_counter() - t0 < 1.0
    message = str(info.value)
    assert "facebook/dinov2-small" in message
    assert "manage.py fetch_models" in message
    assert "DINO_MODEL" in message and "SAM2_MODEL" in message
    assert str(tmp_path / "facebook--dinov2-small") in message


def test_missing_local_path_and_dir_without_config(tmp_path):
    with pytest.raises(ModelUnavailable, match="no directory"):
        resolve_hf_source(str(tmp_path / "nowhere"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="config.json"):
        resolve_hf_source(str(tmp_path / "empty"), tmp_path)


def test_fetched_and_local_directories_resolve(tmp_path):
    fetched = tmp_path / "facebook--dinov2-small"
    fetched.mkdir()
    (fetched / "config.json").write_text("{}")
    assert resolve_hf_source("facebook/dinov2-small", tmp_path) == fetched
    assert resolve_hf_source(str(fetched), Path("/nonexistent")) == fetched
    plan = hf_fetch_plan("facebook/dinov2-small", tmp_path)
    assert plan.local_dir == fetched and plan.repo_id == "facebook/dinov2-small"


def test_sam2_sources(tmp_path):
    with pytest.raises(ModelUnavailable, match="fetch_models"):
        resolve_sam2_source("facebook/sam2.1-hiera-tiny", tmp_path)
    ckpt = tmp_path / "facebook--sam2.1-hiera-tiny" / "sam2.1_hiera_tiny.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    assert resolve_sam2_source("facebook/sam2.1-hiera-tiny", tmp_path) == ("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt)
    spec = f"configs/sam2.1/sam2.1_hiera_s.yaml::{ckpt}"
    assert resolve_sam2_source(spec, tmp_path) == ("configs/sam2.1/sam2.1_hiera_s.yaml", ckpt)
    assert resolve_sam2_source(str(ckpt), Path("/nonexistent"))[0] == "configs/sam2.1/sam2.1_hiera_t.yaml"
    with pytest.raises(ModelUnavailable, match="no checkpoint file"):
        resolve_sam2_source(f"configs/sam2.1/sam2.1_hiera_t.yaml::{tmp_path}/missing.pt", tmp_path)
    with pytest.raises(ModelUnavailable, match="unknown SAM2 model"):
        resolve_sam2_source("someone/sam-whatever", tmp_path)
    plan = sam2_fetch_plan("facebook/sam2.1-hiera-large", tmp_path)
    assert plan.allow_patterns == ("sam2.1_hiera_large.pt",)


def test_sam2_table_matches_the_installed_package():
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    assert {k: tuple(v) for k, v in HF_MODEL_ID_TO_FILENAMES.items()} == SAM2_HF_MODELS
