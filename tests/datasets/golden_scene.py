"""The golden scene shared by the dataset export and import tests: a fixed synthetic GeoTIFF and its objects.

1024 x 768 px, UTM 43N (EPSG:32643), 0.5 m pixels. Shapes are laid out for GOLDEN_PARAMS' 256 px chips with no
overlap (chip edges at x = 256, 512, 768 and y = 256, 512), so the "cut" objects are cut by a chip edge there.
Everything is deterministic (pixels, geometry, scores, review times); only database ids differ between runs.
"""

import datetime as dt
import math
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.gis.geos import GEOSGeometry
from rasterio.features import rasterize
from rasterio.transform import from_origin
from shapely import affinity
from shapely.geometry import Polygon, box

from annotate.geo import SceneFrame
from annotate.models import Annotation, Detection, Scene
from annotate.services import scene_create_from_path, scene_ingest
from tests.rasters import ORIGIN, UTM43, write_tif

WIDTH, HEIGHT, PIXEL_M = 1024, 768, 0.5
GOLDEN_NAME = "golden"
# Export parameters the golden files are made with (chip edges as described above).
GOLDEN_PARAMS = {"chip_size": 256, "overlap": 0.0, "min_visible": 0.3, "negatives": 0.1, "block_chips": 2,
                 "val_fraction": 0.25, "test_fraction": 0.0, "seed": 0}
REVIEWED_AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _u_shape() -> Polygon:
    """A U open upwards, cut by the chip edge y = 512 into its two arms above and its base below."""
    return Polygon([(600, 400), (630, 400), (630, 560), (690, 560), (690, 400), (720, 400), (720, 600),
                    (600, 600), (600, 400)])


# name -> (pixel geometry (x = column, y = row), class index, status, source, score, model_key).
# Created in this order, so detection ids ascend in this order.
DETECTIONS: dict[str, tuple[Polygon, int, str, str, float | None, str]] = {
    "box": (box(40, 40, 120, 100), 0, "accepted", "yolo", 0.9, ""),
    "rotated": (affinity.rotate(box(330, 110, 430, 150), 30, origin=(380, 130)), 1, "accepted", "search", 0.8,
                "dinov2-test"),
    "cut": (box(220, 300, 300, 360), 0, "accepted", "manual", None, ""),
    "u_shape": (_u_shape(), 2, "accepted", "refine", 0.7, ""),
    "hole": (Polygon(box(820, 600, 940, 720).exterior.coords, [box(860, 640, 900, 680).exterior.coords]), 2,
             "accepted", "search", 0.6, "dinov2-test"),
    "rejected": (box(100, 600, 150, 650), 0, "rejected", "search", 0.5, "dinov2-test"),
    "proposed": (box(450, 650, 500, 700), 1, "proposed", "search", 0.4, "dinov2-test"),
}
ACCEPTED = [name for name, spec in DETECTIONS.items() if spec[2] == "accepted"]
# One example polygon (an Annotation), exported only with include_examples.
EXAMPLE: tuple[Polygon, int] = (box(860, 60, 940, 140), 1)


def golden_pixels() -> np.ndarray:
    """The scene's 3-band uint8 pixels: a gradient with every shape painted bright (so a detector can learn it)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    bands = np.stack([(rows // 4 + cols // 8) % 64 + 40, (cols // 4) % 64 + 40, (rows // 4) % 64 + 40])
    shapes = [geom for geom, *_ in DETECTIONS.values()] + [EXAMPLE[0]]
    mask = rasterize([(g, 1) for g in shapes], out_shape=(HEIGHT, WIDTH), dtype="uint8").astype(bool)
    bands[:, mask] = np.array([230, 200, 60])[:, None]
    return bands.astype("uint8")


def to_lonlat(frame: SceneFrame, geom_px: Polygon) -> GEOSGeometry:
    """A pixel polygon as an EPSG:4326 GEOS polygon of the scene (holes kept)."""
    rings = [list(geom_px.exterior.coords)] + [list(r.coords) for r in geom_px.interiors]
    shell, *holes = frame.rings_to_lonlat(rings)
    from django.contrib.gis.geos import LinearRing
    from django.contrib.gis.geos import Polygon as GeosPolygon

    polygon = GeosPolygon(LinearRing(shell), *[LinearRing(h) for h in holes], srid=4326)
    return polygon


def golden_scene(project, user) -> Scene:
    """Ingest the golden GeoTIFF into `project` as a ready scene with its detections and example (by `user`)."""
    source_dir = Path(settings.DATA_DIR) / "golden-source"
    source_dir.mkdir(parents=True, exist_ok=True)
    path = write_tif(source_dir / f"{GOLDEN_NAME}.tif", golden_pixels(), crs=UTM43,
                     transform=from_origin(*ORIGIN, PIXEL_M, PIXEL_M))
    scene = scene_ingest(scene=scene_create_from_path(project=project, user=user, source=path, name=GOLDEN_NAME))
    assert scene.status == "ready", scene.error
    frame = SceneFrame.of(scene)
    classes = {c.index: c for c in project.classes.all()}
    for geom_px, index, status, source, score, model_key in DETECTIONS.values():
        geometry = to_lonlat(frame, geom_px)
        reviewed = status != "proposed"
        Detection.objects.create(
            scene=scene, object_class=classes[index], geometry=geometry, bbox=GEOSGeometry(geometry.envelope.wkt,
                                                                                           srid=4326),
            score=score, source=source, status=status, model_key=model_key,
            reviewer=user if reviewed else None, reviewed_at=REVIEWED_AT if reviewed else None,
        )
    example_px, example_index = EXAMPLE
    Annotation.objects.create(scene=scene, object_class=classes[example_index], geometry=to_lonlat(frame, example_px),
                              author=user)
    return scene


def golden_detections(scene) -> dict[str, Detection]:
    """The golden scene's detections by name (DETECTIONS' keys)."""
    rows = list(Detection.objects.filter(scene=scene).order_by("id"))
    return dict(zip(DETECTIONS, rows, strict=True))


def rotation_deg() -> float:
    """The rotated rectangle's angle (for OBB checks)."""
    return 30.0 if math.isfinite(30.0) else 0.0
