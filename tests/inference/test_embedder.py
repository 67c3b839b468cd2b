"""The real backbone code path on tiny random DINOv2 / DINOv2-with-registers / DINOv3 models."""

import numpy as np
import pytest
import torch

from gpu_tasks.inference.embedder import Embedder
from gpu_tasks.inference.grid import open_grid
from gpu_tasks.inference.loading import resolve_hf_source
from gpu_tasks.inference.scene_embedding import embed_scene, rasterio_rgb_reader

from .conftest import array_reader


def _load(model_dir, model_id, **kwargs) -> Embedder:
    return Embedder.load(resolve_hf_source(model_id, model_dir), model_id, device="cpu", **kwargs)


def _reference_patches(embedder: Embedder, tiles: np.ndarray) -> np.ndarray:
    """Patch tokens computed the plain way: normalise in numpy, run the model, slice off CLS + registers."""
    mean = np.array(embedder.spec.image_mean, dtype=np.float32)
    std = np.array(embedder.spec.image_std, dtype=np.float32)
    x = torch.from_numpy(((tiles / 255.0 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.inference_mode():
        hidden = embedder.model(pixel_values=x).last_hidden_state
    p = embedder.spec.patch_size
    n, h, w = tiles.shape[:3]
    return hidden[:, 1 + embedder.spec.num_register_tokens :].reshape(n, h // p, w // p, -1).numpy()


def test_dinov2_shapes_square_and_non_square(model_dir):
    emb = _load(model_dir, "test/dinov2-tiny")
    assert emb.spec.arch == "dinov2" and emb.spec.num_register_tokens == 0 and emb.spec.patch_size == 14
    assert emb.spec.describe()["key"] == emb.spec.key and len(emb.spec.key) == 16
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, size=(2, 518, 518, 3), dtype=np.uint8)
    out = emb.embed_tiles(square)
    assert out.shape == (2, 37, 37, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference_patches(emb, square), atol=1e-4)
    wide = rng.integers(0, 256, size=(1, 140, 280, 3), dtype=np.uint8)
    assert emb.embed_tiles(wide).shape == (1, 10, 20, 64)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        emb.embed_tiles(np.zeros((1, 100, 140, 3), dtype=np.uint8))


def test_register_tokens_are_dropped(model_dir):
    emb = _load(model_dir, "test/dinov2-reg-tiny")
    assert emb.spec.arch == "dinov2_with_registers" and emb.spec.num_register_tokens == 4
    tiles = np.random.default_rng(1).integers(0, 256, size=(1, 70, 98, 3), dtype=np.uint8)
    out = emb.embed_tiles(tiles)
    assert out.shape == (1, 5, 7, 64)
    np.testing.assert_allclose(out, _reference_patches(emb, tiles), atol=1e-4)


def test_dinov3_patch16_with_registers(model_dir):
    if not (model_dir / "test--dinov3-tiny").exists():
        pytest.skip("this transformers has no DINOv3ViTModel")
    emb = _load(model_dir, "test/dinov3-tiny")
    assert (emb.spec.arch, emb.spec.patch_size, emb.spec.num_register_tokens) == ("dinov3_vit", 16, 4)
    tiles = np.random.default_rng(2).integers(0, 256, size=(2, 64, 96, 3), dtype=np.uint8)
    out = emb.embed_tiles(tiles)
    assert out.shape == (2, 4, 6, 64)
    np.testing.assert_allclose(out, _reference_patches(emb, tiles), atol=1e-4)


def test_specs_differ_between_models_and_read_preprocessor_stats(model_dir, tmp_path):
    a = _load(model_dir, "test/dinov2-tiny").spec
    b = _load(model_dir, "test/dinov2-reg-tiny").spec
    assert a.key != b.key
    # Weights whose preprocessor config has its own statistics (e.g. DINOv3 satellite weights).
    import shutil

    custom = tmp_path / "sat"
    shutil.copytree(model_dir / "test--dinov2-tiny", custom)
    (custom / "preprocessor_config.json").write_text(
        '{"image_mean": [0.43, 0.411, 0.296], "image_std": [0.213, 0.156, 0.143]}'
    )
    c = _load(tmp_path, str(custom)).spec
    assert c.image_mean == (0.43, 0.411, 0.296) and c.key != a.key


def test_out_of_memory_halves_the_batch(model_dir, monkeypatch):
    emb = _load(model_dir, "test/dinov2-tiny", batch_size=4)
    real_forward = emb._forward
    sizes = []

    def flaky_forward(chunk):
        sizes.append(len(chunk))
        if len(chunk) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(chunk)

    monkeypatch.setattr(emb, "_forward", flaky_forward)
    tiles = np.random.default_rng(3).integers(0, 256, size=(3, 28, 28, 3), dtype=np.uint8)
    out = emb.embed_tiles(tiles)
    assert sizes == [3, 2, 1, 1, 1] and emb.batch_size == 1
    monkeypatch.undo()
    np.testing.assert_allclose(out, emb.embed_tiles(tiles), atol=1e-5)


def test_embed_region_is_a_unit_vector(model_dir):
    emb = _load(model_dir, "test/dinov2-tiny")
    rgb = np.random.default_rng(4).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), dtype=bool)
    mask[:14, :14] = True
    v = emb.embed_region(rgb, mask)
    assert v.shape == (64,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_embed_scene_with_a_real_backbone(model_dir, scene, tmp_path):
    emb = _load(model_dir, "test/dinov2-tiny", batch_size=3)
    meta = embed_scene(
        read_rgb=array_reader(scene.rgb),
        scene_w_px=scene.width,
        scene_h_px=scene.height,
        embedder=emb,
        out_dir=tmp_path / "grid",
        scale=0.5,
        preprocessing={"rgb_bands": [1, 2, 3]},
    )
    assert meta.cell_px == 28 and (meta.grid_h, meta.grid_w) == (18, 25)
    assert meta.embedder["arch"] == "dinov2" and meta.embedder["key"] == emb.spec.key
    _, grid = open_grid(tmp_path / "grid")
    assert np.isfinite(grid).all() and grid.std() > 0.1


def test_rasterio_reader_stretch_padding_and_nodata(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "scene.tif"
    data = np.zeros((4, 40, 60), dtype=np.uint16)
    data[0], data[1], data[2], data[3] = 100, 200, 300, 1000
    data[:, 0:10, 0:10] = 0  # nodata corner
    profile = dict(driver="GTiff", width=60, height=40, count=4, dtype="uint16", nodata=0, crs="EPSG:32633")
    with rasterio.open(path, "w", transform=from_origin(500000, 4000000, 1, 1), **profile) as dst:
        dst.write(data)
    stretch = [[0, 400], [100, 300], [300, 300], [0, 2000]]
    with rasterio_rgb_reader(path, (4, 2, 1), stretch) as read:
        chip = read(-10, -10, 40, 30, 40, 30)
        assert chip.shape == (30, 40, 3) and chip.dtype == np.uint8
        assert (chip[:10] == 0).all() and (chip[:, :10] == 0).all()  # outside the scene
        assert (chip[10:20, 10:20] == 0).all()  # nodata
        np.testing.assert_array_equal(chip[25, 25], [128, 128, 64])  # 1000/2000, (200-100)/200, 100/400
        half = read(20, 10, 40, 30, 20, 15)
        assert half.shape == (15, 20, 3) and (half == [128, 128, 64]).all()
        assert (read(100, 100, 10, 10, 5, 5) == 0).all()
