"""Review tests' shared scene, classes, reviewer and geometry helpers (review never reads pixels: no raster)."""

import pytest
from django.contrib.gis.geos import Polygon

from annotate.models import Role, Scene, SceneStatus
from annotate.services import membership_set
from tests.conftest import client_for, make_user

FOOTPRINT = (10.0, 50.0, 10.1, 50.1)


def box(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    """An EPSG:4326 box."""
    p = Polygon.from_bbox((x0, y0, x1, y1))
    p.srid = 4326
    return p


def geojson_box(x0, y0, x1, y1) -> dict:
    """A GeoJSON polygon box."""
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def make_scene(project) -> Scene:
    """A ready scene with a footprint."""
    return Scene.objects.create(project=project, name="s", status=SceneStatus.READY, footprint=box(*FOOTPRINT))


@pytest.fixture
def scene(project):
    return make_scene(project)


@pytest.fixture
def classes(project):
    return list(project.classes.order_by("index")[:2])


@pytest.fixture
def reviewer(project):
    user = make_user("rita")
    membership_set(project=project, user=user, role=Role.REVIEWER)
    return user


@pytest.fixture
def rapi(reviewer):
    return client_for(reviewer)
