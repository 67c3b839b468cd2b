"""How well a proposer finds what reviewers accepted: per-class matching at IoU thresholds, precision, recall, F1,
the precision-recall curve and average precision (COCO's 101-point interpolation), on axis-aligned boxes.

Plain numpy. Boxes are XYXY in one metric frame (pixels or metres). One call evaluates one "image": the accuracy
areas of a project flattened into one frame, so every proposal competes for every reviewed object of its class.
"""

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)  # COCO's 0.50:0.05:0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (N x 4, XYXY) with every box in `b` (M x 4): N x M."""
    a = np.asarray(a, dtype=float).reshape(-1, 4)
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(scores: np.ndarray, iou: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy matching as COCO does it: proposals by descending score (ties in input order) each take the
    unmatched reviewed object they overlap most, at IoU >= threshold. True where a proposal matched."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="mergesort")
    taken = np.zeros(iou.shape[1], dtype=bool)
    hit = np.zeros(len(order), dtype=bool)
    for d in order:
        if not iou.shape[1]:
            break
        candidates = np.where(taken, -1.0, iou[d])
        best = int(np.argmax(candidates))
        if candidates[best] >= threshold:
            taken[best] = True
            hit[d] = True
    return hit


def average_precision(scores: np.ndarray, hit: np.ndarray, n_truth: int) -> tuple[float | None, np.ndarray, np.ndarray]:
    """AP by COCO's 101-point interpolation, and the (recall, precision) curve; AP None when nothing is to be found."""
    if n_truth == 0:
        return None, np.zeros(0), np.zeros(0)
    order = np.argsort(-np.asarray(scores, dtype=float), kind="mergesort")
    tp = np.cumsum(hit[order])
    fp = np.cumsum(~hit[order])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
    # Precision made non-increasing (the best precision at this recall or beyond), read at 101 recall points;
    # a recall never reached reads 0.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.append(envelope, 0.0)[np.minimum(at, len(envelope))]
    return float(sampled.mean()), recall, precision


@dataclass
class ClassAccuracy:
    """One class's figures at IoU 0.5 (and AP over 0.5:0.95)."""

    truths: int
    proposals: int
    true_positives: int
    precision: float | None
    recall: float | None
    f1: float | None
    ap50: float | None
    ap50_95: float | None
    best_f1: float | None = None
    best_f1_score: float | None = None  # the score threshold that gives best_f1
    curve: dict = field(default_factory=dict)  # {"recall": [...], "precision": [...], "score": [...]}


def class_accuracy(pred_boxes, pred_scores, truth_boxes, curve_points: int = 200) -> ClassAccuracy:
    """One class: proposals (boxes, scores; None scores count as 0) against the reviewed objects."""
    pred_boxes = np.asarray(pred_boxes, dtype=float).reshape(-1, 4)
    scores = np.asarray([0.0 if s is None else s for s in pred_scores], dtype=float)
    truth_boxes = np.asarray(truth_boxes, dtype=float).reshape(-1, 4)
    iou = box_iou(pred_boxes, truth_boxes)
    aps = []
    hit50 = None
    for t in IOU_THRESHOLDS:
        hit = match(scores, iou, float(t))
        ap, recall, precision = average_precision(scores, hit, len(truth_boxes))
        aps.append(ap)
        if t == 0.5:
            hit50, curve_recall, curve_precision = hit, recall, precision
    tp = int(hit50.sum())
    n_pred, n_truth = len(pred_boxes), len(truth_boxes)
    precision = tp / n_pred if n_pred else None
    recall = tp / n_truth if n_truth else None
    f1 = (2 * precision * recall / (precision + recall) if precision and recall else
          (0.0 if precision is not None and recall is not None else None))
    result = ClassAccuracy(
        truths=n_truth, proposals=n_pred, true_positives=tp, precision=precision, recall=recall, f1=f1,
        ap50=aps[0], ap50_95=None if aps[0] is None else float(np.mean(aps)),
    )
    if n_truth and n_pred:
        order = np.argsort(-scores, kind="mergesort")
        tps = np.cumsum(hit50[order])
        f1s = 2 * tps / (np.arange(1, n_pred + 1) + n_truth)
        best = int(np.argmax(f1s))
        result.best_f1, result.best_f1_score = float(f1s[best]), float(scores[order][best])
        keep = np.unique(np.linspace(0, n_pred - 1, min(n_pred, curve_points)).round().astype(int))
        result.curve = {"recall": curve_recall[keep].round(4).tolist(),
                        "precision": curve_precision[keep].round(4).tolist(),
                        "score": scores[order][keep].round(4).tolist()}
    return result


def accuracy_by_class(predictions: list[tuple], truths: list[tuple]) -> dict:
    """{class: ClassAccuracy} from predictions [(class, score, xyxy)] and truths [(class, xyxy)], every class seen."""
    classes = sorted({c for c, *_ in predictions} | {c for c, _ in truths}, key=str)
    out = {}
    for c in classes:
        preds = [(s, b) for k, s, b in predictions if k == c]
        out[c] = class_accuracy([b for _, b in preds], [s for s, _ in preds], [b for k, b in truths if k == c])
    return out
