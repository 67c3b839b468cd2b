"""Chip exports checked by the tools that consume them (issue 11): ultralytics' dataset check, label loading and a
one-epoch CPU training (detect, segment), its OBB label loader, and pycocotools evaluating the COCO export against
itself with AP = 1.0."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from tests.datasets.golden_scene import golden_scene
from tests.datasets.test_export_chips import chips_table, label_rows, run_export

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_font():
    """ultralytics checks for Arial.ttf (online) in every dataset check; any local TTF under that name will do."""
    from ultralytics.utils import USER_CONFIG_DIR

    target = Path(USER_CONFIG_DIR) / "Arial.ttf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", target)


@pytest.fixture
def scene(project, manager):
    return golden_scene(project, manager)


def labels_in(root: Path, split: str) -> int:
    return sum(len(label_rows(root, r)) for r in chips_table(root).values() if r["split"] == split)


def checked(root: Path) -> dict:
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(root / "data.yaml"))
    assert Path(data["train"]) == (root / "images" / "train").resolve()
    assert Path(data["val"]) == (root / "images" / "val").resolve()
    assert data["nc"] == len(data["names"]) >= 3
    return data


def train_one_epoch(model_yaml: str, root: Path, project: Path):
    from ultralytics import YOLO

    model = YOLO(model_yaml)
    model.train(data=str(root / "data.yaml"), epochs=1, imgsz=256, batch=2, workers=0, plots=False, device="cpu",
                amp=False, project=str(project), name="run", exist_ok=True, verbose=False, seed=0)
    return model.trainer


@pytest.mark.slow
def test_ultralytics_checks_and_trains_on_the_detection_export(scene, tmp_path):
    root = tmp_path / "export"
    root.mkdir()
    run_export(root, scene, "yolo_detect")
    checked(root)
    trainer = train_one_epoch("yolov8n.yaml", root, tmp_path / "runs")
    # ultralytics read every label line we wrote (a file it finds corrupt would be skipped with a warning).
    dataset = trainer.train_loader.dataset
    assert sum(len(lb["cls"]) for lb in dataset.labels) == labels_in(root, "train") > 0
    assert len(dataset.labels) == sum(1 for r in chips_table(root).values() if r["split"] == "train")
    assert (trainer.save_dir / "weights" / "last.pt").is_file()


@pytest.mark.slow
def test_ultralytics_checks_and_trains_on_the_segmentation_export(scene, tmp_path):
    root = tmp_path / "export"
    root.mkdir()
    run_export(root, scene, "yolo_segment")
    checked(root)
    trainer = train_one_epoch("yolov8n-seg.yaml", root, tmp_path / "runs")
    dataset = trainer.train_loader.dataset
    assert sum(len(lb["segments"]) for lb in dataset.labels) == labels_in(root, "train") > 0
    assert (trainer.save_dir / "weights" / "last.pt").is_file()


def test_ultralytics_loads_the_obb_export(scene, tmp_path):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.utils.ops import xywhr2xyxyxyxy

    run_export(tmp_path, scene, "yolo_obb")
    data = checked(tmp_path)
    chips = chips_table(tmp_path)
    rotated = chips[(0, 256)]
    dataset = YOLODataset(img_path=data[rotated["split"]], data=data, task="obb", imgsz=256, augment=False,
                          batch_size=1)
    labels = {Path(lb["im_file"]).name: lb for lb in dataset.labels}
    assert sum(len(lb["cls"]) for lb in labels.values()) == labels_in(tmp_path, rotated["split"])
    lb = labels[Path(rotated["file"]).name]
    assert lb["cls"].ravel().tolist() == [1]
    # ultralytics' own OBB sample: a rotated box whose corners are ours (the 30 degree rectangle), in pixels.
    sample = dataset[list(labels).index(Path(rotated["file"]).name)]
    corners = xywhr2xyxyxyxy(sample["bboxes"][:1]).numpy().reshape(4, 2)
    corners = corners * (np.array([256, 256]) if corners.max() <= 1.5 else 1)
    ours = np.asarray(label_rows(tmp_path, rotated)[0][1:]).reshape(4, 2) * 256
    for corner in ours:
        assert np.min(np.linalg.norm(corners - corner, axis=1)) < 0.5, (corners, ours)


def test_pycocotools_evaluates_the_coco_export_against_itself_with_ap_1(scene, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    stats = run_export(tmp_path, scene, "coco")
    evaluated = 0
    for split in stats.chips:
        path = tmp_path / "annotations" / f"instances_{split}.json"
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(path))
        anns = gt.loadAnns(gt.getAnnIds())
        assert len(anns) == labels_in_coco(path)
        if not anns:
            continue
        for iou_type in ("bbox", "segm"):
            if iou_type == "bbox":
                results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                            "score": 1.0} for a in anns]
            else:
                results = [{"image_id": a["image_id"], "category_id": a["category_id"],
                            "segmentation": gt.annToRLE(a), "score": 1.0} for a in anns]
            with contextlib.redirect_stdout(io.StringIO()):
                dt = gt.loadRes(results)
                ev = COCOeval(gt, dt, iou_type)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            assert ev.stats[0] == pytest.approx(1.0), (split, iou_type, ev.stats)
            evaluated += 1
    assert evaluated == 4  # train and val, bbox and segm
    assert stats.labels_written == 7


def labels_in_coco(path: Path) -> int:
    return len(json.loads(path.read_text())["annotations"])
