"""Tiled detection over a scene (issue 12, section 3, core): boxes land at the right scene pixels at any ground
resolution, objects on tile seams are found once, an object larger than the overlap is not lost, and a real
ultralytics model runs through the same path."""

import cv2
import numpy as np
import pytest

from gpu_tasks.inference.tiled_detection import detect_tiled, tile_windows, ultralytics_predictor

W, H = 1000, 700


def scene_with_squares(squares):
    """An RGB scene (dark ground) with bright squares: (x, y, side, class) -> red for class 0, green for 1."""
    rgb = np.full((H, W, 3), 30, dtype=np.uint8)
    for x, y, side, cls in squares:
        rgb[y:y + side, x:x + side] = (230, 40, 40) if cls == 0 else (40, 230, 40)
    return rgb


def array_reader(rgb):
    """read_rgb over an array: the native window, zero-padded past the edge, resampled (nearest) to out size."""
    def read(col, row, w, h, out_w, out_h):
        tile = np.zeros((h, w, 3), dtype=np.uint8)
        part = rgb[row:row + h, col:col + w]
        tile[:part.shape[0], :part.shape[1]] = part
        return tile if (out_w, out_h) == (w, h) else cv2.resize(tile, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    return read


def colour_detector(tiles):
    """A detector by colour: connected components of red (class 0) and green (class 1) pixels."""
    out = []
    for tile in tiles:
        boxes, scores, classes = [], [], []
        for cls, channel in ((0, 0), (1, 1)):
            mask = (tile[..., channel] > 200).astype(np.uint8)
            n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for i in range(1, n):
                x, y, w, h = stats[i, :4]
                boxes.append((x, y, x + w, y + h))
                scores.append(0.5 + 0.5 * min(1.0, stats[i, 4] / 900))
                classes.append(cls)
        out.append((np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores), np.asarray(classes)))
    return out


SQUARES = [
    (40, 40, 30, 0),  # inside one tile
    (180, 100, 30, 0),  # across the first vertical seam (tiles at 0 and 192 with a 256 px window)
    (370, 170, 30, 1),  # across a seam both ways
    (246, 400, 30, 1),  # a third of it in the first tile (cut at its right edge), whole in the next: found once
    (560, 560, 30, 0),
    (960, 650, 30, 1),  # at the scene's far corner (the last tiles run past the edge)
]


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_every_object_found_once_at_its_scene_pixels(scale):
    rgb = scene_with_squares(SQUARES)
    timings = {}
    found = detect_tiled(read_rgb=array_reader(rgb), width=W, height=H, predict=colour_detector, tile_px=256,
                         overlap_px=64, scale=scale, batch=3, timings=timings)
    assert timings["tiles"] == len(tile_windows(W, H, round(256 / scale), 64))
    assert len(found) == len(SQUARES)
    tolerance = 1.0 / scale  # one detector pixel, in native pixels
    for x, y, side, cls in SQUARES:
        match = [f for f in found if f.class_index == cls
                 and np.allclose(f.box_px, (x, y, x + side, y + side), atol=tolerance)]
        assert len(match) == 1, (x, y, found)


def test_an_object_larger_than_the_overlap_keeps_its_pieces():
    rgb = scene_with_squares([(150, 50, 120, 0)])  # 120 px across the seams at 192 and 256, overlap 32
    found = detect_tiled(read_rgb=array_reader(rgb), width=W, height=H, predict=colour_detector, tile_px=224,
                         overlap_px=32)
    assert found, "the object was lost"
    x0, y0 = min(f.box_px[0] for f in found), min(f.box_px[1] for f in found)
    x1, y1 = max(f.box_px[2] for f in found), max(f.box_px[3] for f in found)
    assert np.allclose((x0, y0, x1, y1), (150, 50, 270, 170), atol=1)


def test_a_real_ultralytics_model_runs_through_the_tiles(tmp_path):
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")  # random weights of the real architecture: boxes are noise, shapes are real
    rgb = scene_with_squares(SQUARES)
    found = detect_tiled(read_rgb=array_reader(rgb), width=W, height=H,
                         predict=ultralytics_predictor(model, imgsz=320, conf=0.0001), tile_px=320, overlap_px=64,
                         batch=4)
    for f in found:
        assert 0 <= f.box_px[0] <= f.box_px[2] <= W and 0 <= f.box_px[1] <= f.box_px[3] <= H
        assert 0 <= f.score <= 1 and 0 <= f.class_index < 80
