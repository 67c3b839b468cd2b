"""SAM2 refinement through the real checkpoint loader, crop planning, and mask -> polygon conversion."""

import numpy as np
import pytest
import shapely
import torch
from shapely.geometry import Polygon as ShapelyPolygon

from gpu_tasks.inference.errors import Cancelled, ModelUnavailable
from gpu_tasks.inference.polygons import mask_to_polygons
from gpu_tasks.inference.refiner import Refiner, plan_crops, refine_boxes

from .conftest import array_reader

SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="module")
def refiner(tmp_path_factory) -> Refiner:
    """A random SAM2.1 tiny saved as a checkpoint and loaded back through Refiner.load (the production path)."""
    torch.manual_seed(0)
    random = Refiner.load(SAM2_CONFIG, None, device="cpu", allow_random_weights=True)
    ckpt = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": random.predictor.model.state_dict()}, ckpt)
    loaded = Refiner.load(SAM2_CONFIG, ckpt, device="cpu")
    a = random.predictor.model.state_dict()
    b = loaded.predictor.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    return loaded


def test_checkpoint_is_required_unless_random_weights_are_allowed(tmp_path):
    with pytest.raises(ModelUnavailable, match="fetch_models"):
        Refiner.load(SAM2_CONFIG, None)
    with pytest.raises(ModelUnavailable, match="no such checkpoint"):
        Refiner.load(SAM2_CONFIG, tmp_path / "missing.pt")


def _valid(polygons) -> bool:
    for poly in polygons:
        shape = ShapelyPolygon(poly[0], poly[1:])
        if not shape.is_valid or shape.area <= 0:
            return False
    return True


def test_refine_boxes_on_random_sam2(refiner, scene):
    boxes = np.array([scene.objects["red_a"], (130, 80, 170, 120), (60, 60, 80, 80)], dtype=float)
    crops = plan_crops(boxes, scene.width, scene.height)
    assert len(crops) == 1  # the three boxes are close: one image embedding serves them all

    reads, progress, timings = [], [], {}
    results = refine_boxes(
        refiner=refiner,
        read_rgb=array_reader(scene.rgb, reads),
        boxes_px=boxes,
        scene_w=scene.width,
        scene_h=scene.height,
        progress=lambda f, m: progress.append(f),
        timings=timings,
    )
    assert len(reads) == 1 and progress[-1] == 1.0
    assert {"read", "sam_embed", "sam_decode", "polygons"} <= timings.keys()
    assert len(results) == 3
    for box, result in zip(boxes, results, strict=True):
        if result is None:  # random weights may produce an empty mask: the caller keeps the box
            continue
        assert _valid(result.polygons_px)
        x0, y0, x1, y1 = result.box_px
        assert 0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height
        # Masks are confined to the prompt box plus slack.
        assert x0 >= box[0] - 0.25 * (box[2] - box[0]) - 16 - 1e-6
        assert isinstance(result.iou_pred, float) and result.mask_area_px > 0

    # The batched (shared-image) decoder path gives what SAM2's own predictor gives for each box (guards
    # upstream drift); refine_boxes above used the windowed variant of the same path.
    assert refiner.fast_decoder_unsupported is None
    chip_boxes = boxes - [crops[0].col_off_px, crops[0].row_off_px] * 2
    masks, ious = refiner.predict(chip_boxes)
    assert masks.shape == (3, crops[0].out_h_px, crops[0].out_w_px) and masks.dtype == bool
    for j in range(3):
        ref_masks, ref_ious, _ = refiner.predictor.predict(box=chip_boxes[j], multimask_output=True)
        best = int(np.argmax(ref_ious))
        assert ious[j] == pytest.approx(ref_ious[best], abs=1e-4)
        assert (ref_masks[best].astype(bool) != masks[j]).mean() < 1e-3

    # Keep windows: the same mask pixels inside each window, nothing outside.
    keep = np.array([[0, 0, 60, 50], [40, 30, 200, 160], [0, 0, masks.shape[2], masks.shape[1]]])
    windowed, windowed_ious = refiner.predict(chip_boxes, keep_xyxy_px=keep)
    assert np.array_equal(windowed_ious, ious)
    for j, (c0, r0, c1, r1) in enumerate(keep):
        assert np.array_equal(windowed[j, r0:r1, c0:c1], masks[j, r0:r1, c0:c1])
        assert windowed[j].sum() == windowed[j, r0:r1, c0:c1].sum()

    # The stock-decoder fallback (a SAM2 layout the fast decoder does not know) gives the same answer.
    refiner.fast_decoder_unsupported = "test"
    try:
        stock_masks, stock_ious = refiner.predict(chip_boxes)
        stock_windowed, _ = refiner.predict(chip_boxes, keep_xyxy_px=keep)
    finally:
        refiner.fast_decoder_unsupported = None
    assert np.allclose(stock_ious, ious, atol=1e-4)
    assert (stock_masks != masks).mean() < 1e-3
    assert (stock_windowed != windowed).mean() < 1e-3

    with pytest.raises(Cancelled):
        refine_boxes(
            refiner=refiner,
            read_rgb=array_reader(scene.rgb),
            boxes_px=boxes,
            scene_w=scene.width,
            scene_h=scene.height,
            should_cancel=lambda: True,
        )


def test_plan_crops_groups_nearby_boxes_and_sizes_crops():
    boxes = np.array(
        [
            [100, 100, 140, 130],  # 40 px object
            [150, 120, 180, 160],  # near it: shares its crop
            [5000, 5000, 5020, 5020],  # far away: own crop
            [2000, 2000, 3500, 2600],  # larger than max_crop: crop still contains it
            [9990, 9990, 10000, 10000],  # at the scene corner: crop shifted inside the scene
        ],
        dtype=float,
    )
    crops = plan_crops(boxes, 10000, 10000)
    by_box = {i: c for c in crops for i in c.box_indices}
    assert sorted(i for c in crops for i in c.box_indices) == [0, 1, 2, 3, 4]
    assert by_box[0] is by_box[1] and by_box[2] is not by_box[0] and len(crops) == 4
    for i, crop in by_box.items():
        x0, y0, x1, y1 = boxes[i]
        assert crop.col_off_px <= x0 and x1 <= crop.col_off_px + crop.width_px
        assert crop.row_off_px <= y0 and y1 <= crop.row_off_px + crop.height_px
        assert crop.col_off_px >= 0 and crop.col_off_px + crop.width_px <= 10000
        assert max(crop.out_w_px, crop.out_h_px) <= 1024
    # A 40 px object's crop is small enough that the object is large at SAM's input.
    assert by_box[0].width_px == 256
    assert by_box[3].width_px >= 1500 and by_box[3].out_w_px == 1024
    # A scene smaller than the crop: the crop is the scene.
    (small,) = plan_crops(np.array([[10, 10, 20, 20]]), 100, 80)
    assert (small.col_off_px, small.row_off_px, small.width_px, small.height_px) == (0, 0, 100, 80)


def test_mask_to_polygons_ring_with_hole():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:18, 2:18] = True
    mask[7:13, 7:13] = False
    (poly,) = mask_to_polygons(mask, 1000, 2000, 2.0, 2.0, simplify_px=0.5)
    assert len(poly) == 2  # exterior + one hole
    shape = ShapelyPolygon(poly[0], poly[1:])
    assert shape.is_valid
    assert shape.bounds == (1004.0, 2004.0, 1036.0, 2036.0)
    assert shape.area == pytest.approx((16 * 16 - 6 * 6) * 4)
    assert poly[0][0] == poly[0][-1]  # closed rings


def test_mask_to_polygons_parts_specks_and_empty():
    mask = np.zeros((30, 30), dtype=bool)
    mask[0:10, 0:10] = True
    mask[15:30, 15:30] = True
    mask[0, 29] = True  # a 1-pixel speck, < 5 % of the largest part
    polys = mask_to_polygons(mask, 0, 0, 1.0, 1.0)
    assert len(polys) == 2 and _valid(polys)
    assert ShapelyPolygon(polys[0][0]).area == 225  # largest first
    assert mask_to_polygons(np.zeros((5, 5), dtype=bool), 0, 0, 1, 1) == []
    # Pixels touching only at a corner become two valid parts, not one self-touching ring.
    diag = np.eye(4, dtype=bool)
    polys = mask_to_polygons(diag, 0, 0, 1.0, 1.0, simplify_px=0, min_part_fraction=0)
    assert len(polys) == 4 and _valid(polys)
    assert shapely.union_all([ShapelyPolygon(p[0]) for p in polys]).area == 4


def test_windowed_upsampling_matches_full_bilinear_upsampling():
    """Upsampling only the keep windows gives exactly F.interpolate's mask there, and False elsewhere."""
    import torch.nn.functional as F

    from gpu_tasks.inference.refiner import _upsample_windows

    torch.manual_seed(0)
    for hw in [(1024, 1024), (700, 900)]:
        low = torch.randn(4, 256, 256)
        logits = F.interpolate(low[:, None], hw, mode="bilinear", align_corners=False)[:, 0].numpy()
        full = logits > 0
        keep = np.array([[0, 0, 100, 80], [500, 300, 700, 699], [10.5, 20.2, 300.7, 200.1], [0, 0, hw[1], hw[0]]])
        got = _upsample_windows(low, keep, hw, 0.0)
        for j, (c0, r0, c1, r1) in enumerate(keep):
            r0, c0, r1, c1 = int(r0), int(c0), int(np.ceil(r1)), int(np.ceil(c1))
            differ = got[j, r0:r1, c0:c1] != full[j, r0:r1, c0:c1]
            # Rounding may differ in the last bit from PyTorch's vectorised kernel: only exact ties may flip.
            assert np.all(np.abs(logits[j, r0:r1, c0:c1][differ]) < 1e-5)
            assert got[j].sum() == got[j, r0:r1, c0:c1].sum()
