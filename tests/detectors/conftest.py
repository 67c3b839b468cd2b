"""The detector loop's synthetic scene: red kilns, dark-red look-alikes and blue ponds on grass (1 m UTM), searched
once with the deterministic colour embedder so that its grid is cached."""

import numpy as np
import pytest
from django.contrib.gis.geos import Polygon

from annotate.models import Detection, DetectionSource, DetectionStatus
from gpu_tasks import runtime
from tests.gpu_tasks import test_update_proposals
from tests.gpu_tasks.support import ColourEmbedder, polygon_centre_px, px_box_to_polygon
from tests.gpu_tasks.test_update_proposals import OBJECTS, centre, example, searched

# The Update-proposals tests' synthetic scene fixture, shared: assigned here, pytest registers it for this folder.
scene = test_update_proposals.scene


@pytest.fixture
def colour():
    """The colour embedder behind runtime.embedder() for the whole test."""
    with runtime.use_embedder(ColourEmbedder()) as embedder:
        yield embedder


@pytest.fixture
def embedded(scene, manager, colour):
    """The scene with examples of both classes, searched once (its grid cached)."""
    searched(scene, manager)
    return scene


def accepted(scene, class_name: str, name: str, user=None) -> Detection:
    """An accepted object drawn on a planted one (as a reviewer leaves it)."""
    polygon = px_box_to_polygon(scene, OBJECTS[name][1], inset=4)
    return Detection.objects.create(scene=scene, object_class=scene.project.classes.get(name=class_name),
                                    geometry=polygon, bbox=polygon.envelope, source=DetectionSource.MANUAL,
                                    status=DetectionStatus.ACCEPTED, reviewer=user)


def near(scene, det, name: str, tol_px: float = 20.0) -> bool:
    cx, cy = polygon_centre_px(scene, det.geometry)
    return bool(np.hypot(cx - centre(name)[0], cy - centre(name)[1]) <= tol_px)


def found_names(scene, dets) -> set[str]:
    return {name for name in OBJECTS if any(near(scene, d, name) for d in dets)}


def whole_scene_area(scene) -> Polygon:
    polygon = Polygon.from_bbox(scene.footprint.extent)
    polygon.srid = 4326
    return polygon


__all__ = ["OBJECTS", "accepted", "example", "found_names", "near", "whole_scene_area"]
