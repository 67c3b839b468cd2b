"""Helpers shared by the API hardening tests."""

from django.contrib.gis.geos import Polygon

from annotate.models import Scene, SceneStatus


def assert_error(response, status, code=None) -> dict:
    """The response has `status` and the API's error shape; returns the error object."""
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def ready_scene(project, *, width=8000, height=8000, name="Large scene", lon=77.2, lat=28.6, size_deg=0.02) -> Scene:
    """A ready scene row of a given pixel size (admission reads only the row: no pixels are needed)."""
    return Scene.objects.create(
        project=project,
        name=name,
        status=SceneStatus.READY,
        width=width,
        height=height,
        band_count=3,
        footprint=Polygon.from_bbox((lon, lat, lon + size_deg, lat + size_deg)),
    )


def feature(scene_id, class_id, coordinates, geometry_type="Polygon") -> dict:
    """An annotation POST body as the map sends it."""
    return {
        "type": "Feature",
        "geometry": {"type": geometry_type, "coordinates": coordinates},
        "properties": {"scene": scene_id, "object_class": class_id},
    }


def square_ring(lon, lat, size=1e-4) -> list:
    """A closed square ring."""
    return [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
