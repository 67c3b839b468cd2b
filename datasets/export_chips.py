"""Chip exports (YOLO detect / segment / OBB, COCO): chip windows over each scene, the spatial split, clipping of
every object to every chip, negatives, and the loop that writes one chip at a time.

Frames: `_px` is a scene's native pixel grid (x = column, y = row); `chip px` is a chip's own (resampled) grid.
"""

import csv
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from django.utils.text import slugify
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box

from annotate.errors import DomainError
from annotate.geo import SceneFrame
from annotate.models import Scene
from datasets.export_chip_writers import ChipLabel, chip_writer, polygons_of
from datasets.export_types import ChipOptions, ExportClass, ExportLoss, ExportObject, WriteStats
from gpu_tasks.inference.tiled_detection import tile_offsets
from gpu_tasks.run_context import RunContext

CHIPS_CSV_COLUMNS = ["file", "split", "scene_id", "scene_name", "crs", "geotransform", "width", "height", "col_off",
                     "row_off", "window_width", "window_height", "objects"]
PROGRESS_EVERY_S = 0.5  # a Job row write per chip would cost more than the chip


@dataclass
class SceneObjects:
    """A scene's selected objects as shapely polygons in native pixels, with an STRtree to find them per chip."""

    objects: list[ExportObject]
    shapes_px: list
    areas_px: np.ndarray
    tree: shapely.STRtree


@dataclass
class Chip:
    """One chip window of a scene (native pixels) and what the plan decided for it."""

    scene_index: int
    i: int  # row of the chip grid
    j: int  # column of the chip grid
    col_off: int
    row_off: int
    window: int  # native side: chip_size * gsd_m / scene gsd
    object_ids: tuple = ()  # indices into the scene's objects with a label in this chip
    dropped: int = 0  # pieces below min_visible
    touched: bool = False  # any object intersects it (a chip with only dropped pieces is no clean negative)
    split: str = ""
    keep: str = ""  # "positive", "negative" or "" (not written)
    left_out: bool = False  # a training chip not written because it overlaps a val/test chip


def native_window(scene: Scene, options: ChipOptions) -> int:
    """The native pixels one chip covers: chip_size, or chip_size * gsd_m / scene gsd when resampling."""
    if options.gsd_m is None:
        return options.chip_size
    if not scene.gsd_m:
        raise DomainError(f"Scene {scene.name!r} has no ground resolution, so it cannot be resampled to "
                          f"{options.gsd_m} m per pixel; export without gsd_m or re-ingest the scene.",
                          detail={"scene_id": scene.pk})
    return max(1, round(options.chip_size * options.gsd_m / scene.gsd_m))


def chip_grid(scene_index: int, width: int, height: int, window: int, overlap: float) -> list[Chip]:
    """The chip windows of one scene, row by row."""
    step = max(1, round(window * (1.0 - overlap)))
    rows, cols = tile_offsets(height, window, step), tile_offsets(width, window, step)  # as detection tiles
    return [Chip(scene_index, i, j, c, r, window) for i, r in enumerate(rows) for j, c in enumerate(cols)]


def scene_objects(scene: Scene, objects: Iterable[ExportObject]) -> SceneObjects:
    """The scene's objects in native pixels (holes kept; invalid rings repaired so that clipping works)."""
    frame = SceneFrame.of(scene)
    kept, shapes = [], []
    for obj in objects:
        parts = getattr(obj.geometry, "geoms", [obj.geometry])
        polys = []
        for part in parts:
            shell, *holes = frame.rings_to_px([list(part.exterior.coords)] + [list(r.coords) for r in part.interiors])
            polys.append(Polygon(shell, holes))
        geom = polys[0] if len(polys) == 1 else MultiPolygon(polys)
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        kept.append(obj)
        shapes.append(geom)
    areas = np.array([g.area for g in shapes], dtype=float)
    return SceneObjects(kept, shapes, areas, shapely.STRtree(shapes))


def chip_pieces(chip: Chip, objs: SceneObjects, min_visible: float):
    """(object index, piece in native px, visible fraction) of every object intersecting the chip, and whether
    any does; pieces below min_visible come back too (the caller counts them)."""
    window = box(chip.col_off, chip.row_off, chip.col_off + chip.window, chip.row_off + chip.window)
    out = []
    for k in sorted(int(k) for k in objs.tree.query(window, predicate="intersects")):
        piece = objs.shapes_px[k].intersection(window)
        parts = polygons_of(piece)
        area = sum(p.area for p in parts)
        if area <= 0 or objs.areas_px[k] <= 0:
            continue  # touches the chip's edge only
        piece = parts[0] if len(parts) == 1 else MultiPolygon(parts)
        out.append((k, piece, min(1.0, area / objs.areas_px[k])))
    return out


def to_chip_px(piece, chip: Chip, chip_size: int):
    """A native-pixel piece in the chip's own pixels (shifted to its corner, scaled by the resampling)."""
    s = chip_size / chip.window
    return affinity.affine_transform(piece, [s, 0, 0, s, -chip.col_off * s, -chip.row_off * s])


def chip_geotransform(scene: Scene, chip: Chip, chip_size: int) -> list[float]:
    """The chip's own pixel grid on the scene's CRS (GDAL order), after resampling."""
    x0, dx, rx, y0, ry, dy = (float(v) for v in scene.geotransform)
    s = chip.window / chip_size  # native pixels per chip pixel
    return [x0 + chip.col_off * dx + chip.row_off * rx, dx * s, rx * s,
            y0 + chip.col_off * ry + chip.row_off * dy, ry * s, dy * s]


def chip_file_name(scene: Scene, chip: Chip, image_format: str) -> str:
    """`<scene name slug>_<scene id>_r<row_off>_c<col_off>.<ext>`: commas, dots and spaces never reach it."""
    slug = slugify(scene.name.replace(".", "-").replace(",", "-")) or "scene"
    return f"{slug}_{scene.pk}_r{chip.row_off}_c{chip.col_off}.{image_format}"


def assign_splits(chips: list[Chip], options: ChipOptions) -> dict:
    """Blocks of block_chips x block_chips chips go wholly to train, val or test (seeded); blocks with labels and
    empty blocks are split separately so that val gets labelled chips. Returns the block counts per split."""
    blocks: dict[tuple, list[Chip]] = {}
    for chip in chips:
        blocks.setdefault((chip.scene_index, chip.i // options.block_chips, chip.j // options.block_chips),
                          []).append(chip)
    rng = random.Random(options.seed)  # noqa: S311 - a reproducible split, not a secret
    counts = {"train": 0, "val": 0, "test": 0}
    for labelled in (True, False):
        keys = [k for k, cs in blocks.items() if any(c.object_ids for c in cs) == labelled]
        rng.shuffle(keys)
        n = len(keys)
        n_val = round(n * options.val_fraction)
        n_test = round(n * options.test_fraction)
        if labelled:  # at least one labelled block each for val and test when asked for and possible
            n_val = max(n_val, 1 if options.val_fraction > 0 and n >= 2 else 0)
            n_test = max(n_test, 1 if options.test_fraction > 0 and n >= 3 else 0)
        while n_val + n_test >= n and (n_val or n_test) and n > 0:  # train keeps at least one block
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        for rank, key in enumerate(keys):
            split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            counts[split] += 1
            for chip in blocks[key]:
                chip.split = split
    return counts


def _neighbours(chip: Chip, index: dict, reach: int):
    """The chips of the same scene whose windows overlap this one (same grid, so within `reach` grid steps)."""
    for di in range(-reach, reach + 1):
        for dj in range(-reach, reach + 1):
            other = index.get((chip.scene_index, chip.i + di, chip.j + dj))
            if other is not None and other is not chip:
                yield other


def separate_splits(chips: list[Chip], n_objects: list[int], overlap: float) -> dict:
    """No training chip may overlap a val/test chip (overlap > 0 makes neighbours across a block edge overlap).

    Such training chips are left out; where that would lose an object (its only labels were in them), the chip
    moves to the held-out split it overlaps instead (and the training chips it then overlaps are left out), until
    nothing is lost. Returns the counts for the manifest.
    """
    index = {(c.scene_index, c.i, c.j): c for c in chips}
    reach = max(((c.window - 1) // max(1, round(c.window * (1.0 - overlap))) for c in chips), default=0)
    counts = {"train_chips_left_out": 0, "train_chips_moved_to_held_out": 0}

    def leave_out_train_around(chip: Chip) -> None:
        for other in _neighbours(chip, index, reach):
            if other.split == "train" and other.keep:
                other.keep, other.left_out = "", True
                counts["train_chips_left_out"] += 1

    for chip in chips:
        if chip.split != "train":
            leave_out_train_around(chip)
    while True:
        written = [np.zeros(n, dtype=bool) for n in n_objects]
        for chip in chips:
            if chip.keep:
                written[chip.scene_index][list(chip.object_ids)] = True
        rescue = next((c for c in chips if c.left_out and c.object_ids
                       and not written[c.scene_index][list(c.object_ids)].all()), None)
        if rescue is None:
            break
        rescue.split = next(o.split for o in _neighbours(rescue, index, reach) if o.split != "train")
        rescue.keep, rescue.left_out = "positive", False
        counts["train_chips_left_out"] -= 1
        counts["train_chips_moved_to_held_out"] += 1
        leave_out_train_around(rescue)
    return counts


def _loss_reason(best_visible: float, had_label: bool, options: ChipOptions) -> str:
    if had_label:
        return ("its labels fall only in training chips that are left out because they overlap validation/test "
                "chips; lower overlap or raise block_chips.")
    if best_visible <= 0:
        return "it lies outside the scene's pixels (no chip holds any of it); fix its geometry or leave it out."
    return (f"at most {best_visible:.0%} of it fits in one chip, below min_visible {options.min_visible}: it is larger "
            f"than a chip. Raise chip_size, choose a coarser gsd_m, or lower min_visible.")


def write_chip_dataset(*, root: Path, fmt: str, scenes: list[Scene],
                       objects_of: Callable[[Scene], Iterable[ExportObject]], classes: list[ExportClass],
                       options: ChipOptions, run: RunContext) -> WriteStats:
    """Cut every scene into chips, split them by spatial blocks and write `fmt` under root, one chip at a time."""
    from gpu_tasks.embedding import scene_rgb_reader
    from gpu_tasks.inference.errors import Cancelled

    if options.image_format not in ("png", "jpg"):
        raise DomainError(f"image_format {options.image_format!r} is not supported; choose png or jpg.")
    stats = WriteStats()
    # Plan: which chips hold which objects (no pixels read). Only this scene's objects are in memory at once.
    chips: list[Chip] = []
    object_keys: list[list[str]] = []  # per scene: object keys (to name a lost one)
    best_visible: list[np.ndarray] = []
    for si, scene in enumerate(scenes):
        objs = scene_objects(scene, objects_of(scene))
        stats.objects_selected += len(objs.objects)
        object_keys.append([o.key for o in objs.objects])
        best = np.zeros(len(objs.objects))
        grid = chip_grid(si, scene.width, scene.height, native_window(scene, options), options.overlap)
        for chip in grid:
            pieces = chip_pieces(chip, objs, options.min_visible)
            chip.touched = bool(pieces)
            chip.object_ids = tuple(k for k, _, v in pieces if v >= options.min_visible)
            chip.dropped = sum(1 for _, _, v in pieces if v < options.min_visible)
            for k, _, v in pieces:
                best[k] = max(best[k], v)
        best_visible.append(best)
        chips.extend(grid)
        run.progress(0.05 * (si + 1) / len(scenes), f"Planned chips of scene {si + 1} of {len(scenes)}")
    for chip in chips:
        chip.keep = "positive" if chip.object_ids else ""
    splits = ["train", "val"] + (["test"] if options.test_fraction > 0 else [])
    blocks = assign_splits(chips, options)
    # Negatives: a seeded share of the chips no object touches (a chip with only cut-off pieces would teach that
    # a partly visible object is background, so it is never a negative).
    positives = sum(1 for c in chips if c.keep)
    candidates = [c for c in chips if not c.touched]
    for chip in random.Random(options.seed + 1).sample(candidates, min(len(candidates),  # noqa: S311
                                                                         round(options.negatives * positives))):
        chip.keep = "negative"
    separation = separate_splits(chips, [len(k) for k in object_keys], options.overlap)

    # Every selected object must be written somewhere, or the export fails naming it.
    written = [np.zeros(len(keys), dtype=bool) for keys in object_keys]
    labelled = [np.zeros(len(keys), dtype=bool) for keys in object_keys]
    for chip in chips:
        labelled[chip.scene_index][list(chip.object_ids)] = True
        if chip.keep:
            written[chip.scene_index][list(chip.object_ids)] = True
    for si, keys in enumerate(object_keys):
        for k in np.flatnonzero(~written[si]):
            raise ExportLoss(keys[k], _loss_reason(float(best_visible[si][k]), bool(labelled[si][k]), options))

    writer = chip_writer(fmt, root=root, classes=classes, chip_size=options.chip_size, splits=splits,
                         image_format=options.image_format)
    stats.chips = {s: 0 for s in splits}
    stats.negatives = {s: 0 for s in splits}
    stats.dropped = {"below_min_visible": sum(c.dropped for c in chips if not c.left_out)}
    to_write = [c for c in chips if c.keep]
    total, done, last = len(to_write), 0, 0.0
    with (root / "chips.csv").open("w", newline="") as fh:
        table = csv.writer(fh)
        table.writerow(CHIPS_CSV_COLUMNS)
        for si, scene in enumerate(scenes):
            scene_chips = [c for c in to_write if c.scene_index == si]
            if not scene_chips:
                continue
            objs = scene_objects(scene, objects_of(scene))
            read_rgb = scene_rgb_reader(scene)
            try:
                for chip in scene_chips:
                    if run.should_cancel():
                        raise Cancelled()
                    labels = [ChipLabel(objs.objects[k].key, objs.objects[k].class_index, objs.objects[k].class_name,
                                        to_chip_px(piece, chip, options.chip_size), v)
                              for k, piece, v in chip_pieces(chip, objs, options.min_visible)
                              if v >= options.min_visible]
                    image = read_rgb(chip.col_off, chip.row_off, chip.window, chip.window, options.chip_size,
                                     options.chip_size)
                    name = chip_file_name(scene, chip, options.image_format)
                    counts = writer.write_chip(split=chip.split, name=name, image=image, labels=labels)
                    stats.labels_written += sum(counts)
                    stats.chips[chip.split] += 1
                    if not labels:
                        stats.negatives[chip.split] += 1
                    for label, lines in zip(labels, counts, strict=True):
                        per = stats.per_class.setdefault(label.class_name, {"all": 0})
                        per[chip.split] = per.get(chip.split, 0) + lines
                        per["all"] += lines
                    table.writerow([f"images/{chip.split}/{name}", chip.split, scene.pk, scene.name, scene.crs,
                                    json.dumps(chip_geotransform(scene, chip, options.chip_size)),
                                    options.chip_size, options.chip_size, chip.col_off, chip.row_off, chip.window,
                                    chip.window, len(labels)])
                    done += 1
                    if time.monotonic() - last >= PROGRESS_EVERY_S or done == total:
                        last = time.monotonic()
                        run.progress(0.05 + 0.95 * done / max(total, 1), f"Chip {done} of {total}")
            finally:
                read_rgb.close()
    writer.finish()
    stats.objects_written = int(sum(w.sum() for w in written))
    stats.files = [*writer.files, "chips.csv"]
    stats.extra = {
        "chip_size": options.chip_size,
        "overlap": options.overlap,
        "native_window_px": {str(s.pk): native_window(s, options) for s in scenes},
        "gsd_m": options.gsd_m,
        "blocks": blocks,
        **separation,
        "train_chips_left_out_why": ("a training chip that overlaps a validation/test chip is left out (no leakage); "
                                     "where that would lose an object, it moves to that held-out split instead"),
        "chips_skipped_only_cut_objects": sum(1 for c in chips if c.touched and not c.object_ids),
        "labels": "one label per visible piece of an object per chip; pieces below min_visible are dropped",
        **writer.extra,
    }
    if options.val_fraction > 0 and stats.chips.get("val", 0) == 0:
        stats.extra["warning"] = ("no validation chips: the labelled chips fill fewer than two split blocks; lower "
                                  "block_chips or chip_size, or add scenes, to validate a detector on held-out ground")
    return stats

