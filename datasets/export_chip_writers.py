"""Per-format label writers for chip exports: YOLO detect / segment / OBB (ultralytics layout) and COCO instances.

A writer sees one chip at a time: its image (uint8 RGB) and its labels, each a clipped piece of an object in the
chip's own pixel coordinates (x = column, y = row, origin at the chip's top-left corner).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from PIL import Image
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from datasets.export_types import ExportClass

DECIMALS = 6  # YOLO's normalised coordinates: 1e-6 of a 640 px chip is far below a pixel
COCO_DECIMALS = 3  # COCO's pixel coordinates


@dataclass(frozen=True)
class ChipLabel:
    """One object's visible piece in one chip (chip pixel coordinates) and the object it belongs to."""

    key: str
    class_index: int
    class_name: str
    piece_px: object  # shapely Polygon or MultiPolygon
    visible: float  # visible area / object area


def polygons_of(geom) -> list[Polygon]:
    """The non-empty polygon parts of a clipped piece (a clip may also yield lines or points: dropped)."""
    if isinstance(geom, Polygon):
        return [geom] if not geom.is_empty and geom.area > 0 else []
    parts = getattr(geom, "geoms", [])
    return [p for g in parts for p in polygons_of(g)]


def _fmt(values, decimals: int = DECIMALS) -> str:
    return " ".join(f"{v:.{decimals}f}" for v in values)


def _norm(xy: np.ndarray, size: int) -> np.ndarray:
    """Pixel coordinates normalised to the chip and clipped to [0, 1] (ultralytics rejects a file with any value
    outside, which would drop every label of the chip)."""
    return np.clip(np.asarray(xy, dtype=float) / size, 0.0, 1.0)


def bridged_ring(polygon: Polygon) -> list[tuple[float, float]]:
    """A polygon with holes as one ring: each hole joined to the shell by a zero-width bridge (there and back).

    YOLO segment labels are single rings; filling the bridged ring (cv2.fillPoly, as ultralytics does) leaves the
    holes empty because each hole is traced against the shell's direction. The closing vertex is not repeated.
    """
    polygon = orient(polygon, 1.0)  # shell counter-clockwise, holes clockwise
    ring = list(polygon.exterior.coords)[:-1]
    for hole in polygon.interiors:
        hole_pts = list(hole.coords)[:-1]
        ring_arr, hole_arr = np.asarray(ring), np.asarray(hole_pts)
        # The closest pair of vertices makes the shortest bridge (least likely to cross anything).
        d = ((ring_arr[:, None, :] - hole_arr[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        hole_loop = hole_pts[j:] + hole_pts[:j] + [hole_pts[j]]
        ring = ring[: i + 1] + hole_loop + ring[i:]
    return ring


class ChipWriter:
    """The interface every chip format implements (one instance per export)."""

    def __init__(self, *, root: Path, classes: list[ExportClass], chip_size: int, splits: list[str],
                 image_format: str = "png"):
        self.root, self.classes, self.size, self.splits = root, classes, chip_size, splits
        self.image_format = image_format
        self.files: list[str] = []
        self.extra: dict = {}
        for split in splits:
            (root / "images" / split).mkdir(parents=True, exist_ok=True)

    def write_image(self, split: str, name: str, image: np.ndarray) -> str:
        """Save the chip's pixels; return its path relative to the export root."""
        rel = f"images/{split}/{name}"
        Image.fromarray(image).save(self.root / rel, **({"quality": 95} if self.image_format == "jpg" else {}))
        self.files.append(rel)
        return rel

    def lines(self, label: ChipLabel) -> list[str]:
        """The label lines of one piece (YOLO formats)."""
        raise NotImplementedError

    def write_chip(self, *, split: str, name: str, image: np.ndarray, labels: list[ChipLabel]) -> list[int]:
        """Write one chip and its labels; return the lines written per label."""
        self.write_image(split, name, image)
        per_label = [self.lines(label) for label in labels]
        lines = [line for group in per_label for line in group]
        rel = f"labels/{split}/{Path(name).stem}.txt"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # A negative chip gets an empty file on purpose: ultralytics counts it as a background image.
        path.write_text("".join(line + "\n" for line in lines))
        self.files.append(rel)
        return [len(group) for group in per_label]

    def finish(self) -> None:
        """Write the files that describe the whole dataset (data.yaml, COCO json)."""
        names = {c.index: c.name for c in self.classes}
        top = max(names, default=-1)
        text = [
            "# Written by the export. No `path:` on purpose: ultralytics then resolves train/val/test against this",
            "# file's folder (`path: .` would mean the current working directory).",
        ]
        text += [f"{split}: images/{split}" for split in self.splits]
        text.append(f"nc: {top + 1}")
        text.append("names:")
        text += [f"  {i}: {json.dumps(names.get(i, f'unused_{i}'))}" for i in range(top + 1)]
        (self.root / "data.yaml").write_text("\n".join(text) + "\n")
        self.files.append("data.yaml")


class YoloDetectWriter(ChipWriter):
    """`c cx cy w h`: the axis-aligned box of the object's visible piece (both arms of a split U make one box)."""

    def lines(self, label: ChipLabel) -> list[str]:
        x0, y0, x1, y1 = _norm(label.piece_px.bounds, self.size)
        return [f"{label.class_index} " + _fmt([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])]


class YoloSegmentWriter(ChipWriter):
    """`c x1 y1 ...`: one line per polygon part of the piece; holes joined to the shell by a zero-width bridge."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extra["holes"] = "each hole joined to its shell by a zero-width bridge (one ring per line)"

    def lines(self, label: ChipLabel) -> list[str]:
        out = []
        for part in polygons_of(label.piece_px):
            xy = _norm(bridged_ring(part), self.size)
            out.append(f"{label.class_index} " + _fmt(xy.ravel()))
        return out


def obb_corners(geom) -> np.ndarray:
    """The minimum rotated rectangle's 4 corners (pixels), clockwise on screen (as DOTA), starting at the corner
    nearest the top-left so that the same rectangle always gives the same line."""
    rect = shapely.minimum_rotated_rectangle(geom)
    pts = np.asarray(orient(rect, 1.0).exterior.coords)[:-1] if isinstance(rect, Polygon) else None
    if pts is None or len(pts) != 4:
        x0, y0, x1, y1 = geom.bounds
        pts = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=float)
    start = int(np.argmin(pts[:, 0] + pts[:, 1]))
    return np.roll(pts, -start, axis=0)


class YoloObbWriter(ChipWriter):
    """`c x1 y1 x2 y2 x3 y3 x4 y4`: the minimum rotated rectangle of the visible piece (ultralytics OBB format)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.extra["obb"] = ("minimum rotated rectangle of each visible piece; corners beyond the chip are clipped "
                             "to its edge (ultralytics rejects coordinates outside [0, 1] and refits a rectangle)")

    def lines(self, label: ChipLabel) -> list[str]:
        return [f"{label.class_index} " + _fmt(_norm(obb_corners(label.piece_px), self.size).ravel())]


class CocoWriter(ChipWriter):
    """COCO instances per split: chips as images, each piece one annotation (polygons, or RLE when it has holes)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.images: dict[str, list] = {s: [] for s in self.splits}
        self.annotations: dict[str, list] = {s: [] for s in self.splits}
        self._image_id = 0
        self._ann_id = 0
        self.extra["segmentation"] = "polygons; a piece with holes as RLE (pycocotools); area = polygon area"

    def write_chip(self, *, split: str, name: str, image: np.ndarray, labels: list[ChipLabel]) -> list[int]:
        self.write_image(split, name, image)
        self._image_id += 1
        h, w = image.shape[:2]
        self.images[split].append({"id": self._image_id, "file_name": name, "width": w, "height": h})
        for label in labels:
            self._ann_id += 1
            self.annotations[split].append(self.annotation(label, self._image_id, self._ann_id, w, h))
        return [1] * len(labels)

    def annotation(self, label: ChipLabel, image_id: int, ann_id: int, w: int, h: int) -> dict:
        """One COCO annotation of a piece (bbox XYWH in chip pixels, category id = class index + 1)."""
        parts = polygons_of(label.piece_px)
        x0, y0, x1, y1 = np.clip(label.piece_px.bounds, 0, [w, h, w, h])
        if any(p.interiors for p in parts):
            from pycocotools import mask as mask_utils

            rings = [np.round(np.asarray(bridged_ring(p)), COCO_DECIMALS).ravel().tolist() for p in parts]
            rle = mask_utils.merge(mask_utils.frPyObjects(rings, h, w))
            segmentation = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        else:
            segmentation = [np.round(np.asarray(p.exterior.coords)[:-1], COCO_DECIMALS).ravel().tolist()
                            for p in parts]
        return {
            "id": ann_id, "image_id": image_id, "category_id": label.class_index + 1,
            "segmentation": segmentation, "area": round(float(label.piece_px.area), COCO_DECIMALS),
            "bbox": [round(float(v), COCO_DECIMALS) for v in (x0, y0, x1 - x0, y1 - y0)], "iscrowd": 0,
        }

    def finish(self) -> None:
        categories = [{"id": c.index + 1, "name": c.name, "supercategory": "object"}
                      for c in sorted(self.classes, key=lambda c: c.index)]
        (self.root / "annotations").mkdir(parents=True, exist_ok=True)
        for split in self.splits:
            rel = f"annotations/instances_{split}.json"
            doc = {"info": {"description": "chip export"}, "images": self.images[split],
                   "annotations": self.annotations[split], "categories": categories}
            (self.root / rel).write_text(json.dumps(doc))
            self.files.append(rel)


WRITERS = {"yolo_detect": YoloDetectWriter, "yolo_segment": YoloSegmentWriter, "yolo_obb": YoloObbWriter,
           "coco": CocoWriter}


def chip_writer(fmt: str, **kwargs) -> ChipWriter:
    """The writer of a chip format."""
    if fmt not in WRITERS:
        raise ValueError(f"{fmt!r} is not a chip format; choose one of {', '.join(WRITERS)}.")
    return WRITERS[fmt](**kwargs)

