"""Proposer accuracy (issue 12, section 1): the metric code against hand-computed cases and against pycocotools on
the same boxes."""

import numpy as np
import pytest

from gpu_tasks.inference.accuracy import accuracy_by_class, box_iou, class_accuracy


def test_iou_by_hand():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]]
    assert np.allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_hand_computed_precision_recall_f1_and_ap():
    truths = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    preds = [
        ([0, 0, 10, 10], 0.9),  # matches truth 0 (IoU 1)
        ([100, 0, 110, 10], 0.8),  # nothing there: a false positive
        ([21, 0, 31, 10], 0.7),  # truth 1 at IoU 9/11 = 0.82: a match at 0.5 and 0.8, not at 0.85 and above
        ([0, 0, 10, 10], 0.6),  # truth 0 again: already taken, a false positive
    ]
    got = class_accuracy([b for b, _ in preds], [s for _, s in preds], truths)
    assert (got.truths, got.proposals, got.true_positives) == (3, 4, 2)
    assert got.precision == pytest.approx(0.5) and got.recall == pytest.approx(2 / 3)
    assert got.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # Ranked: TP, FP, TP, FP -> precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3; the envelope is 1 up to
    # recall 1/3 and 2/3 up to recall 2/3, 0 beyond. Of the 101 recall points, 34 are <= 1/3 (0.00..0.33) and
    # 33 more are <= 2/3 (0.34..0.66).
    assert got.ap50 == pytest.approx((34 * 1.0 + 33 * (2 / 3)) / 101)
    # At IoU >= 0.85 only truth 0 is found: 34 points at precision 1. Thresholds 0.50..0.80 (7) as at 0.5.
    high = 34 / 101
    assert got.ap50_95 == pytest.approx((7 * got.ap50 + 3 * high) / 10)
    # Best F1 over score thresholds: keeping the top 3 (2 TP of 3 proposals, 3 truths) gives 2*2/(3+3) = 0.667.
    assert got.best_f1 == pytest.approx(2 / 3) and got.best_f1_score == pytest.approx(0.7)
    assert got.curve["recall"][-1] == pytest.approx(2 / 3, abs=1e-4)  # the curve is rounded to 4 decimals


def test_no_truth_or_no_proposal():
    none_found = class_accuracy([], [], [[0, 0, 1, 1]])
    assert (none_found.recall, none_found.precision, none_found.ap50) == (0.0, None, 0.0)
    nothing_to_find = class_accuracy([[0, 0, 1, 1]], [0.5], [])
    assert nothing_to_find.precision == 0.0 and nothing_to_find.recall is None and nothing_to_find.ap50 is None


def test_classes_are_kept_apart():
    got = accuracy_by_class([("kiln", 0.9, [0, 0, 10, 10]), ("pond", 0.8, [0, 0, 10, 10])],
                            [("kiln", [0, 0, 10, 10])])
    assert got["kiln"].true_positives == 1 and got["kiln"].precision == 1.0
    assert got["pond"].true_positives == 0 and got["pond"].ap50 is None


def _coco_per_class(predictions, truths, classes):
    """pycocotools' AP50 and AP50:95 per class for the same boxes (one image; no detection limit)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 2000, "height": 2000}],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
        "annotations": [{"id": n + 1, "image_id": 1, "category_id": classes.index(c) + 1,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1]),
                         "iscrowd": 0} for n, (c, b) in enumerate(truths)],
    }
    gt.createIndex()
    dt = gt.loadRes([{"image_id": 1, "category_id": classes.index(c) + 1, "score": s,
                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]} for c, s, b in predictions])
    ev = COCOeval(gt, dt, "bbox")
    ev.params.maxDets = [10_000]
    ev.params.areaRng = [[0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    ev.evaluate()
    ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, 0]  # T x R x K
    out = {}
    for k, c in enumerate(classes):
        per_t = [precision[t, :, k].mean() for t in range(precision.shape[0])]
        out[c] = (per_t[0], float(np.mean(per_t)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_equals_pycocotools(seed):
    rng = np.random.default_rng(seed)
    classes = ["kiln", "pond", "shed"]
    truths, predictions = [], []
    for _ in range(60):
        c = classes[rng.integers(3)]
        x, y = rng.uniform(0, 1800, 2)
        w, h = rng.uniform(20, 120, 2)
        truths.append((c, [x, y, x + w, y + h]))
    for c, (x0, y0, x1, y1) in truths:
        if rng.random() < 0.8:  # found, with a jitter that sweeps IoU across the thresholds
            j = rng.normal(0, 0.08 * (x1 - x0), 4)
            predictions.append((c, float(rng.random()), [x0 + j[0], y0 + j[1], x1 + j[2], y1 + j[3]]))
    for _ in range(40):  # false positives, some of the wrong class on a real object
        if rng.random() < 0.5:
            _c, b = truths[rng.integers(len(truths))]
            predictions.append((classes[rng.integers(3)], float(rng.random()), list(b)))
        else:
            x, y = rng.uniform(0, 1800, 2)
            predictions.append((classes[rng.integers(3)], float(rng.random()), [x, y, x + 50, y + 40]))
    ours = accuracy_by_class(predictions, truths)
    coco = _coco_per_class(predictions, truths, classes)
    for c in classes:
        assert ours[c].ap50 == pytest.approx(coco[c][0], abs=1e-9), c
        assert ours[c].ap50_95 == pytest.approx(coco[c][1], abs=1e-9), c
