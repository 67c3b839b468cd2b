"""Chip exports on the golden scene (issue 11): label lines built by hand per format, the spatial split, min_visible,
negatives, gsd_m resampling, loud loss of an object larger than a chip, and file names with commas and dots."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon, box

from annotate.geo import SceneFrame
from annotate.models import Detection
from datasets.export_chips import write_chip_dataset
from datasets.export_types import ChipOptions, ExportClass, ExportLoss, ExportObject
from datasets.import_readers import read_chips_csv
from gpu_tasks.inference.errors import Cancelled
from gpu_tasks.run_context import RunContext
from tests.datasets.golden_scene import GOLDEN_PARAMS, golden_scene, to_lonlat

pytestmark = pytest.mark.django_db
TOL = 2e-6  # 6 decimals, and the pixel -> lon/lat -> pixel round trip of the fixture


def export_objects(scene) -> list[ExportObject]:
    """The scene's accepted detections as the core's selection hands them to a writer."""
    rows = Detection.objects.filter(scene=scene, status="accepted").select_related("object_class").order_by("id")
    return [ExportObject(key=f"detection:{d.pk}", scene_id=scene.pk, class_index=d.object_class.index,
                         class_name=d.object_class.name, geometry=shapely.from_wkb(bytes(d.geometry.wkb)),
                         status=d.status, source=d.source, score=d.score, model_key=d.model_key, reviewer="",
                         reviewed_at=None) for d in rows]


def export_classes(project) -> list[ExportClass]:
    return [ExportClass(index=c.index, name=c.name, id=c.pk) for c in project.classes.order_by("index")]


def run_export(root: Path, scene, fmt: str, extra_objects=(), run=None, **overrides):
    options = ChipOptions(**{**GOLDEN_PARAMS, **overrides})
    objects = export_objects(scene) + list(extra_objects)
    stats = write_chip_dataset(root=root, fmt=fmt, scenes=[scene], objects_of=lambda s: objects,
                               classes=export_classes(scene.project), options=options, run=run or RunContext())
    return stats


def chips_table(root: Path) -> dict[tuple[int, int], dict]:
    """chips.csv rows by (row_off, col_off)."""
    with (root / "chips.csv").open(newline="") as fh:
        return {(int(r["row_off"]), int(r["col_off"])): r for r in csv.DictReader(fh)}


def label_rows(root: Path, row: dict) -> list[list[float]]:
    stem = Path(row["file"]).stem
    text = (root / "labels" / row["split"] / f"{stem}.txt").read_text()
    return [[float(v) for v in line.split()] for line in text.splitlines()]


def close(a, b, tol=TOL) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b, atol=tol))


def n(*px) -> list[float]:
    """Chip pixels normalised by the golden 256 px chip."""
    return [v / 256 for v in px]


@pytest.fixture
def scene(project, manager):
    return golden_scene(project, manager)


def test_yolo_detect_golden_labels_yaml_and_chips_csv(scene, tmp_path):
    stats = run_export(tmp_path, scene, "yolo_detect")
    chips = chips_table(tmp_path)
    # Boxes by hand: (class, cx, cy, w, h) in chip pixels of the chip at (row_off, col_off).
    x0, x1 = 380 - 53.30127, 380 + 53.30127  # the 100 x 40 box rotated by 30 degrees about (380, 130)
    y0, y1 = 130 - 42.32051, 130 + 42.32051
    expected = {
        (0, 0): [[0, *n(80, 70, 80, 60)]],
        (0, 256): [[1, *n((x0 + x1) / 2 - 256, 130, x1 - x0, y1 - y0)]],
        (256, 0): [[0, *n(238, 74, 36, 60)]],  # the cut box, left of x = 256
        (256, 256): [[0, *n(22, 74, 44, 60)]],  # and right of it
        (256, 512): [[2, *n(148, 200, 120, 112)]],  # the U's two arms above y = 512: one box over both
        (512, 512): [[2, *n(148, 44, 120, 88)]],  # the U's base
        (512, 768): [[2, *n(112, 148, 120, 120)]],  # the holed square
    }
    for key, lines in expected.items():
        got = label_rows(tmp_path, chips[key])
        assert len(got) == 1 and close(got[0], lines[0], tol=1e-5), (key, got, lines)
    negatives = [k for k, r in chips.items() if int(r["objects"]) == 0]
    assert len(negatives) == 1 and label_rows(tmp_path, chips[negatives[0]]) == []  # round(0.1 * 7) empty chip
    assert (tmp_path / "labels" / chips[negatives[0]]["split"] / (Path(chips[negatives[0]]["file"]).stem + ".txt")
            ).read_text() == ""
    assert set(chips) == set(expected) | set(negatives)
    for r in chips.values():
        assert (tmp_path / r["file"]).is_file()
    # data.yaml: every index 0..max named, train/val relative to the yaml's own folder.
    import yaml

    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    names = [c.name for c in scene.project.classes.order_by("index")]
    assert data["names"] == dict(enumerate(names)) and data["nc"] == len(names)
    assert data["train"] == "images/train" and data["val"] == "images/val" and "test" not in data
    # chips.csv: the chip's own geotransform maps its pixels onto the scene; the import side reads it back.
    frame = SceneFrame.of(scene)
    row = chips[(256, 512)]
    gt = json.loads(row["geotransform"])
    assert len(gt) == 6
    x, y = gt[0] + 10 * gt[1] + 20 * gt[2], gt[3] + 10 * gt[4] + 20 * gt[5]
    assert np.allclose(frame.transform @ (512 + 10, 256 + 20), (x, y))
    back = read_chips_csv((tmp_path / "chips.csv").read_text())
    assert back[Path(row["file"]).name]["window"] == (512, 256, 256, 256)
    assert back[Path(row["file"]).name]["scene_id"] == scene.pk
    # Stats: every object written, labels per class and split add up.
    assert stats.objects_selected == stats.objects_written == 5
    assert stats.labels_written == 7 and sum(stats.chips.values()) == 8 and sum(stats.negatives.values()) == 1
    assert sum(v["all"] for v in stats.per_class.values()) == 7
    assert stats.dropped == {"below_min_visible": 0}
    assert "chips.csv" in stats.files and "data.yaml" in stats.files
    assert all((tmp_path / f).is_file() for f in stats.files)


def test_yolo_segment_golden_polygons_arms_and_hole(scene, tmp_path):
    from ultralytics.data.utils import polygon2mask

    run_export(tmp_path, scene, "yolo_segment")
    chips = chips_table(tmp_path)

    def polygon(values):
        return Polygon(np.asarray(values[1:]).reshape(-1, 2) * 256)

    left = label_rows(tmp_path, chips[(256, 0)])
    assert len(left) == 1 and left[0][0] == 0
    assert shapely.hausdorff_distance(polygon(left[0]), box(220, 44, 256, 104)) < 1e-3  # clipped at x = 256
    arms = label_rows(tmp_path, chips[(256, 512)])
    assert len(arms) == 2 and {r[0] for r in arms} == {2}  # a multipolygon piece: one line per part
    got = sorted((polygon(r) for r in arms), key=lambda p: p.bounds[0])
    for part, want in zip(got, [box(88, 144, 118, 256), box(178, 144, 208, 256)], strict=True):
        assert shapely.hausdorff_distance(part, want) < 1e-3
    base = label_rows(tmp_path, chips[(512, 512)])
    want = Polygon([(88, 0), (118, 0), (118, 48), (178, 48), (178, 0), (208, 0), (208, 88), (88, 88)])
    assert len(base) == 1 and shapely.hausdorff_distance(polygon(base[0]), want) < 1e-3
    # The hole: shell and hole joined by a zero-width bridge; ultralytics' own rasterisation leaves the hole empty.
    hole = label_rows(tmp_path, chips[(512, 768)])
    assert len(hole) == 1 and len(hole[0][1:]) == 2 * (4 + 5 + 1)
    ring = np.asarray(hole[0][1:]).reshape(-1, 2) * 256
    assert abs(Polygon(ring).area - (120 * 120 - 40 * 40)) < 0.1
    mask = polygon2mask((256, 256), [ring.ravel()], color=1, downsample_ratio=1)
    assert mask[148, 112] == 0 and mask[100, 60] == 1 and abs(int(mask.sum()) - 12800) < 600
    for r in chips.values():
        for line in label_rows(tmp_path, r):
            assert all(0 <= v <= 1 for v in line[1:])


def test_yolo_obb_golden_rotated_rectangle(scene, tmp_path):
    run_export(tmp_path, scene, "yolo_obb")
    chips = chips_table(tmp_path)
    rows = label_rows(tmp_path, chips[(0, 256)])
    assert len(rows) == 1 and rows[0][0] == 1
    corners = np.asarray(rows[0][1:]).reshape(4, 2) * 256
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    want = [(380 + dx * c - dy * s - 256, 130 + dx * s + dy * c) for dx, dy in
            [(-50, -20), (50, -20), (50, 20), (-50, 20)]]  # the 100 x 40 box's corners, rotated by 30 degrees
    for corner in want:
        assert np.min(np.linalg.norm(corners - corner, axis=1)) < 1e-3, (corner, corners)
    long_edge = max((corners[(i + 1) % 4] - corners[i] for i in range(4)), key=np.linalg.norm)
    angle = math.degrees(math.atan2(long_edge[1], long_edge[0])) % 180
    assert abs(angle - 30) < 1e-3
    # A cut axis-aligned box: its OBB is the clipped box.
    cut = np.asarray(label_rows(tmp_path, chips[(256, 256)])[0][1:]).reshape(4, 2) * 256
    assert shapely.hausdorff_distance(Polygon(cut), box(0, 44, 44, 104)) < 1e-3


def test_coco_golden_annotations(scene, tmp_path):
    from pycocotools.coco import COCO

    stats = run_export(tmp_path, scene, "coco")
    chips = chips_table(tmp_path)
    by_file = {}
    for split in stats.chips:
        coco = COCO(str(tmp_path / "annotations" / f"instances_{split}.json"))
        assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == [i + 1 for i in range(len(coco.getCatIds()))]
        for img in coco.loadImgs(coco.getImgIds()):
            assert (tmp_path / "images" / split / img["file_name"]).is_file()
            by_file[img["file_name"]] = (coco, coco.loadAnns(coco.getAnnIds(imgIds=img["id"])))
    assert len(by_file) == 8

    def anns(key):
        return by_file[Path(chips[key]["file"]).name]

    coco, (box_ann,) = anns((0, 0))
    assert box_ann["bbox"] == [40, 40, 80, 60] and box_ann["category_id"] == 1 and box_ann["iscrowd"] == 0
    assert box_ann["area"] == pytest.approx(4800, abs=0.01)
    _, (cut,) = anns((256, 0))
    assert cut["bbox"] == pytest.approx([220, 44, 36, 60], abs=1e-3)
    _, (arms,) = anns((256, 512))
    assert arms["category_id"] == 3 and len(arms["segmentation"]) == 2  # one annotation, two polygons
    coco, (holed,) = anns((512, 768))
    assert isinstance(holed["segmentation"], dict)  # RLE: the hole stays a hole
    mask = coco.annToMask(holed)
    assert mask[148, 112] == 0 and mask[100, 60] == 1 and abs(int(mask.sum()) - 12800) < 600
    assert holed["bbox"] == pytest.approx([52, 88, 120, 120], abs=1e-3)


def windows(root: Path, split: str) -> list:
    return [box(int(r["col_off"]), int(r["row_off"]), int(r["col_off"]) + int(r["window_width"]),
                int(r["row_off"]) + int(r["window_height"])) for r in chips_table(root).values() if r["split"] == split]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_by_blocks_no_val_chip_overlaps_a_train_chip(scene, tmp_path, seed):
    stats = run_export(tmp_path, scene, "yolo_detect", overlap=0.2, seed=seed, negatives=1.0)
    train, val = windows(tmp_path, "train"), windows(tmp_path, "val")
    assert train and val
    assert not any(t.intersection(v).area > 0 for t in train for v in val)
    # The 205 px stride makes neighbours overlap: training chips next to a held-out block are left out or moved.
    assert stats.extra["train_chips_left_out"] + stats.extra["train_chips_moved_to_held_out"] > 0
    assert stats.objects_written == stats.objects_selected == 5


def test_min_visible_drops_small_pieces_and_counts_them(scene, tmp_path):
    stats = run_export(tmp_path, scene, "yolo_detect", min_visible=0.5)
    chips = chips_table(tmp_path)
    # The cut box is 45% / 55% either side of x = 256; the U's arms are 47% of it, its base 53%.
    assert stats.dropped["below_min_visible"] == 2
    assert (256, 0) not in chips  # only a dropped piece there: neither a positive nor a clean negative
    assert close(label_rows(tmp_path, chips[(256, 256)])[0], [0, *n(22, 74, 44, 60)], 1e-5)
    assert (256, 512) not in chips and stats.extra["chips_skipped_only_cut_objects"] == 2
    assert stats.objects_written == 5 and stats.labels_written == 5


@pytest.mark.parametrize(("share", "expected"), [(0.0, 0), (1.0, 5)])
def test_negatives_share_of_empty_chips(scene, tmp_path, share, expected):
    stats = run_export(tmp_path, scene, "yolo_detect", negatives=share)
    empty = [r for r in chips_table(tmp_path).values() if r["objects"] == "0"]
    assert len(empty) == sum(stats.negatives.values()) == expected
    for r in empty:
        assert label_rows(tmp_path, r) == []


def test_gsd_resampling_chip_covers_twice_the_native_pixels(scene, tmp_path):
    run_export(tmp_path, scene, "yolo_detect", gsd_m=2 * scene.gsd_m)
    chips = chips_table(tmp_path)
    assert set(chips) >= {(0, 0), (512, 512)} and all(int(r["window_width"]) == 512 for r in chips.values())
    row = chips[(0, 0)]
    assert int(row["width"]) == 256 and int(row["height"]) == 256
    from PIL import Image

    assert Image.open(tmp_path / row["file"]).size == (256, 256)
    gt = json.loads(row["geotransform"])
    assert gt[1] == pytest.approx(2 * scene.geotransform[1]) and gt[5] == pytest.approx(2 * scene.geotransform[5])
    lines = label_rows(tmp_path, row)
    # Box (40, 40, 120, 100) at half scale in a 256 px chip covering 512 native pixels.
    assert any(close(line, [0, *n(40, 35, 40, 30)], 1e-5) for line in lines), lines


def test_object_larger_than_a_chip_fails_loudly(scene, tmp_path):
    frame = SceneFrame.of(scene)
    big = to_lonlat(frame, box(100, 100, 700, 700))
    obj = ExportObject(key="detection:999999", scene_id=scene.pk, class_index=0, class_name="big",
                       geometry=shapely.from_wkb(bytes(big.wkb)), status="accepted", source="manual", score=None,
                       model_key="", reviewer="", reviewed_at=None)
    with pytest.raises(ExportLoss) as err:
        run_export(tmp_path, scene, "yolo_detect", extra_objects=[obj])
    assert err.value.key == "detection:999999"
    assert "larger than a chip" in err.value.reason and "chip_size" in err.value.reason
    assert not (tmp_path / "chips.csv").exists()  # nothing half-written


def test_gsd_m_on_a_scene_without_ground_resolution_is_refused_clearly(scene, tmp_path):
    from annotate.errors import DomainError

    scene.gsd_m = None
    with pytest.raises(DomainError, match="export without gsd_m"):
        run_export(tmp_path, scene, "yolo_detect", gsd_m=1.0)
    with pytest.raises(DomainError, match="choose png or jpg"):
        run_export(tmp_path, scene, "coco", image_format="tiff")


def test_scene_names_with_commas_and_dots(scene, tmp_path):
    scene.name = "site 3, v1.2.final"
    scene.save(update_fields=["name"])
    run_export(tmp_path, scene, "yolo_detect")
    chips = chips_table(tmp_path)
    names = [Path(r["file"]).name for r in chips.values()]
    assert f"site-3-v1-2-final_{scene.pk}_r0_c0.png" in names
    assert all("," not in name and name.count(".") == 1 for name in names)
    back = read_chips_csv((tmp_path / "chips.csv").read_text())
    assert set(back) == set(names) and {r["scene_name"] for r in back.values()} == {scene.name}


def test_cancel_between_chips(scene, tmp_path):
    calls = []
    run = RunContext(progress=lambda f, m: calls.append(m), should_cancel=lambda: True)
    with pytest.raises(Cancelled):
        run_export(tmp_path, scene, "coco", run=run)


def test_test_split_and_progress(scene, tmp_path):
    seen = []
    stats = run_export(tmp_path, scene, "yolo_obb", test_fraction=0.25, overlap=0.2,
                       run=RunContext(progress=lambda f, m: seen.append((f, m))))
    import yaml

    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert data["test"] == "images/test" and stats.chips["test"] > 0 and stats.chips["val"] > 0
    train = windows(tmp_path, "train")
    for held_out in ("val", "test"):
        assert not any(t.intersection(h).area > 0 for t in train for h in windows(tmp_path, held_out))
    assert stats.objects_written == 5
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    total = sum(stats.chips.values())
    assert seen[-1][1] == f"Chip {total} of {total}"


def test_gsd_m_gives_two_scenes_of_different_resolution_the_same_chips(scene, tmp_path, project, manager, settings):
    """The golden scene (0.5 m) and a 1 m copy of it, exported at the coarse gsd: chips of the same ground and size."""
    from rasterio.transform import from_origin

    from annotate.services import scene_create_from_path, scene_ingest
    from tests.datasets.golden_scene import golden_pixels
    from tests.rasters import ORIGIN, UTM43, write_tif

    path = write_tif(Path(settings.DATA_DIR) / "coarse.tif", golden_pixels()[:, ::2, ::2], crs=UTM43,
                     transform=from_origin(*ORIGIN, 1.0, 1.0))
    coarse = scene_ingest(scene=scene_create_from_path(project=project, user=manager, source=path, name="coarse"))
    assert coarse.status == "ready" and coarse.gsd_m == pytest.approx(2 * scene.gsd_m)
    objects = export_objects(scene)  # lon/lat polygons: the same ground in both scenes
    options = ChipOptions(**{**GOLDEN_PARAMS, "gsd_m": 2 * scene.gsd_m, "negatives": 1.0})
    stats = write_chip_dataset(root=tmp_path, fmt="yolo_detect", scenes=[scene, coarse], objects_of=lambda s: objects,
                               classes=export_classes(project), options=options, run=RunContext())
    assert stats.extra["native_window_px"] == {str(scene.pk): 512, str(coarse.pk): 256}
    with (tmp_path / "chips.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    fine = {(int(r["row_off"]) // 2, int(r["col_off"]) // 2): r for r in rows if int(r["scene_id"]) == scene.pk}
    rough = {(int(r["row_off"]), int(r["col_off"])): r for r in rows if int(r["scene_id"]) == coarse.pk}
    assert set(fine) == set(rough) and len(fine) == 4
    for key, r in fine.items():
        assert json.loads(r["geotransform"]) == pytest.approx(json.loads(rough[key]["geotransform"]))
        ours, theirs = label_rows(tmp_path, r), label_rows(tmp_path, rough[key])
        assert len(ours) == len(theirs) and all(close(a, b, 1e-5) for a, b in zip(sorted(ours), sorted(theirs),
                                                                                   strict=True))
    assert stats.objects_selected == 10 and stats.objects_written == 10
