"""Tiled detection over a whole scene: overlapping tiles read one batch at a time (never the scene in memory),
resampled to the detector's ground resolution, boxes mapped back to native pixels, and seams resolved.

Seams: a box that touches a tile edge inside the scene is a cut object; with an overlap of at least the object's
size a neighbouring tile holds it whole, so a cut box mostly inside an uncut box of its class is dropped (one larger
than the overlap, seen whole nowhere, keeps its pieces); then class-wise NMS removes the copies that two
overlapping tiles both saw whole. The detector is any `predict(tiles) -> [(xyxy, scores, classes)]`;
`ultralytics_predictor` wraps an ultralytics YOLO model.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .search import nms_xyxy

ReadRGB = Callable[[int, int, int, int, int, int], np.ndarray]
Predict = Callable[[list[np.ndarray]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]
EDGE_PX = 1.0  # a box this close (tile px) to an inner tile edge is cut by it


@dataclass(frozen=True)
class TiledBox:
    """One detection on the scene: class index (the detector's), score and XYXY box in native pixels."""

    class_index: int
    score: float
    box_px: tuple[float, float, float, float]


def tile_offsets(length: int, window: int, step: int) -> list[int]:
    """Offsets along one axis every `step` until a window reaches the end (the last one runs past, zero-padded)."""
    offsets = [0]
    while offsets[-1] + window < length:
        offsets.append(offsets[-1] + step)
    return offsets


def tile_windows(width: int, height: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """(col, row) of every native window of side `window` overlapping its neighbours by `overlap` px."""
    step = max(1, window - overlap)
    return [(c, r) for r in tile_offsets(height, window, step) for c in tile_offsets(width, window, step)]


def _inner_edge_cut(box: np.ndarray, col: int, row: int, window: int, width: int, height: int, tile_px: int
                    ) -> np.ndarray:
    """Which boxes (tile px) touch an edge of their tile that lies inside the scene."""
    s = tile_px / window
    edge = EDGE_PX
    left = (col > 0) & (box[:, 0] <= edge)
    top = (row > 0) & (box[:, 1] <= edge)
    right = (col + window < width) & (box[:, 2] >= tile_px - edge)
    bottom = (row + window < height) & (box[:, 3] >= tile_px - edge)
    # The far edges of the last tiles lie beyond the scene: padding there cuts nothing.
    right &= (width - col) * s > tile_px - edge
    bottom &= (height - row) * s > tile_px - edge
    return left | top | right | bottom


def _inside_share(parts: np.ndarray, wholes: np.ndarray) -> np.ndarray:
    """For each part box, the largest share of its area inside one of the whole boxes.

    From the intersecting pairs only (an STR tree): a dense parts x wholes matrix took 3.8 GB and 12 s on 20,000
    objects of one class.
    """
    import shapely

    out = np.zeros(len(parts))
    if not len(parts) or not len(wholes):
        return out
    tree = shapely.STRtree(shapely.box(wholes[:, 0], wholes[:, 1], wholes[:, 2], wholes[:, 3]))
    i, j = tree.query(shapely.box(parts[:, 0], parts[:, 1], parts[:, 2], parts[:, 3]), predicate="intersects")
    p, w = parts[i], wholes[j]
    ix = np.clip(np.minimum(p[:, 2], w[:, 2]) - np.maximum(p[:, 0], w[:, 0]), 0, None)
    iy = np.clip(np.minimum(p[:, 3], w[:, 3]) - np.maximum(p[:, 1], w[:, 1]), 0, None)
    area = np.maximum((parts[:, 2] - parts[:, 0]) * (parts[:, 3] - parts[:, 1]), 1e-9)
    np.maximum.at(out, i, ix * iy / area[i])
    return out


def detect_tiled(*, read_rgb: ReadRGB, width: int, height: int, predict: Predict, tile_px: int = 640,
                 overlap_px: int = 128, scale: float = 1.0, batch: int = 8, nms_iou: float = 0.5,
                 progress: Callable[[float, str], None] | None = None, should_cancel: Callable[[], bool] | None = None,
                 timings: dict | None = None) -> list[TiledBox]:
    """Every detection of the scene. `scale` = tile px per native px (the detector's ground resolution over the
    scene's); `overlap_px` (native) should be at least the largest object."""
    window = max(1, round(tile_px / scale))
    windows = tile_windows(width, height, window, min(overlap_px, window - 1))
    boxes, scores, classes, cut = [], [], [], []
    t_read = t_predict = 0.0
    for start in range(0, len(windows), batch):
        if should_cancel is not None and should_cancel():
            from .errors import Cancelled

            raise Cancelled()
        part = windows[start:start + batch]
        t0 = time.perf_counter()
        tiles = [read_rgb(c, r, window, window, tile_px, tile_px) for c, r in part]
        t1 = time.perf_counter()
        found = predict(tiles)
        t_predict += time.perf_counter() - t1
        t_read += t1 - t0
        for (col, row), (xyxy, conf, cls) in zip(part, found, strict=True):
            xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
            cut.append(_inner_edge_cut(xyxy, col, row, window, width, height, tile_px))
            native = xyxy * (window / tile_px) + np.array([col, row, col, row], dtype=np.float64)
            boxes.append(np.minimum(native, [width, height, width, height]))
            scores.append(np.asarray(conf, dtype=np.float64).reshape(-1))
            classes.append(np.asarray(cls, dtype=np.int64).reshape(-1))
        if progress is not None:
            done = min(len(windows), start + batch)
            progress(done / len(windows), f"Tile {done} of {len(windows)}")
    if not boxes:
        return []
    all_boxes, all_scores, all_classes = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
    all_cut = np.concatenate(cut)
    t0 = time.perf_counter()
    kept = []
    for c in np.unique(all_classes):
        idx = np.flatnonzero(all_classes == c)
        whole, pieces = idx[~all_cut[idx]], idx[all_cut[idx]]
        covered = _inside_share(all_boxes[pieces], all_boxes[whole]) >= 0.5 if len(whole) else np.zeros(0, bool)
        idx = np.concatenate([whole, pieces[~covered] if len(whole) else pieces])
        kept.extend(idx[nms_xyxy(all_boxes[idx], all_scores[idx], nms_iou)])
    if timings is not None:
        timings.update({"tiles_read": t_read, "tiles_predict": t_predict, "seam_nms": time.perf_counter() - t0,
                        "tiles": len(windows)})
    kept.sort(key=lambda i: -all_scores[i])
    return [TiledBox(int(all_classes[i]), float(all_scores[i]), tuple(float(v) for v in all_boxes[i])) for i in kept]


def ultralytics_predictor(model, *, imgsz: int, conf: float = 0.25, device: str | None = None,
                          half: bool = False) -> Predict:
    """A `predict` over an ultralytics YOLO model (RGB tiles in; ultralytics takes numpy images as BGR)."""

    def predict(tiles: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        # `half` only when asked: ultralytics 8.4 warns on every call that passes it at all.
        extra = {"half": True} if half else {}
        results = model.predict([np.ascontiguousarray(t[..., ::-1]) for t in tiles], imgsz=imgsz, conf=conf,
                                device=device, verbose=False, **extra)
        out = []
        for r in results:
            b = r.boxes
            out.append((b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(np.int64)))
        return out

    return predict
