"""Test support for search: a deterministic colour embedder and a synthetic scene with planted objects."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.contrib.gis.geos import Polygon
from rasterio.crs import CRS

from annotate import geo
from gpu_tasks.inference.embedder import EmbedderSpec
from tests.rasters import write_tif

PATCH = 14
BACKGROUND = (40, 150, 40)  # grass green
RED = (210, 30, 30)  # the "kiln" colour
BLUE = (30, 40, 200)  # the "pond" colour
DARK_RED = (150, 60, 110)  # a look-alike of red (cosine ~0.75) that only a negative example pushes away


class ColourEmbedder:
    """Same interface as gpu_tasks.inference.embedder.Embedder; a patch's token is its mean colour.

    Colours that differ in hue are nearly orthogonal, so cosine similarity behaves like a real backbone
    on this synthetic scene, and every result can be predicted exactly.
    """

    def __init__(self, model_id: str = "test/colour", dim: int = 4, batch_size: int = 4):
        self.spec = EmbedderSpec(
            model_id=model_id,
            revision=None,
            arch="test-colour",
            patch_size=PATCH,
            hidden_size=dim,
            num_register_tokens=0,
            image_mean=(0.0, 0.0, 0.0),
            image_std=(1.0, 1.0, 1.0),
        )
        self.batch_size = batch_size
        self.calls = 0
        self.tiles_seen = 0

    def embed_tiles(self, tiles_rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, H/14, W/14, dim): mean colour of each patch (minus a grey offset)."""
        self.calls += 1
        self.tiles_seen += len(tiles_rgb)
        n, h, w, _ = tiles_rgb.shape
        patches = tiles_rgb.reshape(n, h // PATCH, PATCH, w // PATCH, PATCH, 3).astype(np.float32).mean(axis=(2, 4))
        centred = patches / 255.0 - 0.25  # remove part of the common grey so hues separate
        out = np.zeros((n, h // PATCH, w // PATCH, self.spec.hidden_size), dtype=np.float32)
        out[..., :3] = centred
        out[..., 3] = 0.05
        return out


@dataclass
class Planted:
    """An object painted into the synthetic scene: its colour and pixel box (XYXY)."""

    name: str
    colour: tuple[int, int, int]
    box_px: tuple[int, int, int, int]

    @property
    def centre_px(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box_px
        return (x0 + x1) / 2, (y0 + y1) / 2


# 1036 px = 74 patches: tiles of 37 patches with 4-patch margins own patches 0-32, 33-61, 62-73 along each
# axis, so the first seam is at patch 33 = 462 px. "red_seam" straddles it.
SCENE_PX = 1036
PLANTED = [
    Planted("red_a", RED, (84, 84, 140, 140)),
    Planted("red_b", RED, (700, 140, 756, 196)),
    Planted("red_seam", RED, (434, 600, 490, 656)),  # crosses x = 462
    Planted("blue_a", BLUE, (840, 840, 896, 896)),
    Planted("blue_b", BLUE, (140, 840, 196, 896)),
    Planted("lookalike", DARK_RED, (600, 500, 656, 556)),
]


def planted_scene(path: Path, size_px: int = SCENE_PX) -> Path:
    """Write the synthetic 1 m UTM scene (uint8 RGB, size_px square) with the planted objects."""
    data = np.empty((3, size_px, size_px), dtype=np.uint8)
    for band, value in enumerate(BACKGROUND):
        data[band] = value
    rng = np.random.default_rng(7)
    data = np.clip(data.astype(np.int16) + rng.integers(-6, 7, size=data.shape), 0, 255).astype(np.uint8)
    for obj in PLANTED:
        x0, y0, x1, y1 = obj.box_px
        for band, value in enumerate(obj.colour):
            data[band, y0:y1, x0:x1] = value
    return write_tif(path, data, photometric="RGB")


def px_box_to_polygon(scene, box_px, inset: float = 0.0) -> Polygon:
    """An XYXY pixel box of a scene as an EPSG:4326 polygon (optionally shrunk by `inset` px)."""
    x0, y0, x1, y1 = box_px
    box = (x0 + inset, y0 + inset, x1 - inset, y1 - inset)
    crs, transform = CRS.from_user_input(scene.crs), geo.transform_from_gdal(scene.geotransform)
    ring = geo.rings_px_to_lonlat(crs, transform, [geo.box_px_to_ring(box)])[0]
    return Polygon(ring, srid=4326)


def polygon_centre_px(scene, polygon: Polygon) -> tuple[float, float]:
    """A polygon's centroid in scene pixels."""
    crs, transform = CRS.from_user_input(scene.crs), geo.transform_from_gdal(scene.geotransform)
    c = polygon.centroid
    xs, ys = geo.lonlat_to_px(crs, transform, [c.x], [c.y])
    return float(xs[0]), float(ys[0])
