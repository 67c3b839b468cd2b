"""YOLO training on an exported dataset (issue 12, section 2, core): offline, a report per epoch with losses and
validation metrics, a cancel that stops at the end of the epoch keeping its best weights, a missing checkpoint
refused in words."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpu_tasks.inference.yolo_training import ModelNotFound, load_model, train_yolo

pytestmark = pytest.mark.slow


def tiny_dataset(root: Path) -> Path:
    """A YOLO detection dataset of 128 px images with one bright square each (6 train, 2 val)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(20, 60, (128, 128, 3), dtype=np.uint8)
            x, y, s = rng.integers(10, 80), rng.integers(10, 80), rng.integers(20, 40)
            img[y:y + s, x:x + s] = (230, 200, 60)
            Image.fromarray(img).save(root / "images" / split / f"chip_{i}.png")
            cx, cy = (x + s / 2) / 128, (y + s / 2) / 128
            (root / "labels" / split / f"chip_{i}.txt").write_text(f"0 {cx:.6f} {cy:.6f} {s / 128:.6f} {s / 128:.6f}\n")
    data = root / "data.yaml"
    data.write_text("train: images/train\nval: images/val\nnc: 1\nnames:\n  0: kiln\n")
    return data


def test_two_epochs_report_each_and_keep_weights(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    reports = []
    result = train_yolo(data_yaml=data, model="yolov8n.yaml", workdir=tmp_path / "runs", epochs=2, imgsz=128,
                        batch=2, on_epoch=reports.append)
    assert [r.epoch for r in reports] == [1, 2] and result.epochs_run == 2 and not result.cancelled
    assert {"box_loss", "cls_loss", "dfl_loss"} <= set(reports[0].losses)
    assert {"map50", "map50_95", "precision", "recall"} <= set(reports[-1].metrics)
    assert result.best is not None and result.best.is_file() and result.last.is_file()
    assert set(result.best_metrics) == {"map50", "map50_95", "precision", "recall"}  # best.pt validated at the end


def test_cancel_stops_at_the_end_of_the_epoch_with_its_best_weights(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    asked = {"n": 0}

    def should_cancel():
        asked["n"] += 1
        return True  # asked once per epoch: the first epoch ends the run

    result = train_yolo(data_yaml=data, model="yolov8n.yaml", workdir=tmp_path / "runs", epochs=5, imgsz=128,
                        batch=2, should_cancel=should_cancel)
    assert result.cancelled and result.epochs_run == 1 and asked["n"] == 1
    assert result.best is not None and result.best.is_file()
    again = load_model(result.best)  # the kept weights load as a model
    assert again.names == {0: "kiln"}


def test_a_missing_checkpoint_is_refused_in_words(tmp_path):
    with pytest.raises(ModelNotFound, match="does not download"):
        load_model(tmp_path / "nowhere" / "yolov8s.pt")
