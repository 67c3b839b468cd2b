"""Detections as vector tiles cut by PostGIS: contents, filters, 204, ETag/304, scoping, bad tiles."""

import mapbox_vector_tile
import morecantile
import pytest
from django.contrib.gis.geos import Polygon
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate import tile_views, vector_tiles
from annotate.models import Detection, DetectionSource, DetectionStatus, Membership, Scene, SceneStatus
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
FOOTPRINT = (10.0, 50.0, 10.1, 50.1)
HERE = WEB_MERCATOR.tile(10.012, 50.012, 14)  # holds every detection below
ELSEWHERE = WEB_MERCATOR.tile(10.09, 50.09, 14)  # on the scene, holds none


@pytest.fixture(autouse=True)
def _no_cached_grants():
    """Each test starts without grants cached by an earlier one."""
    tile_views.clear_visible_cache()
    yield
    tile_views.clear_visible_cache()


def box(x0, y0, x1, y1) -> Polygon:
    p = Polygon.from_bbox((x0, y0, x1, y1))
    p.srid = 4326
    return p


@pytest.fixture
def scene(project):
    return Scene.objects.create(project=project, name="s", status=SceneStatus.READY, footprint=box(*FOOTPRINT))


@pytest.fixture
def detections(scene, project):
    """Five detections in one z14 tile: three statuses, two classes, a manual one, a null score."""
    classes = list(project.classes.order_by("index")[:2])
    spec = [
        (classes[0], 0.9, DetectionStatus.PROPOSED, DetectionSource.SEARCH),
        (classes[0], 0.3, DetectionStatus.PROPOSED, DetectionSource.REFINE),
        (classes[1], 0.7, DetectionStatus.ACCEPTED, DetectionSource.SEARCH),
        (classes[1], 0.6, DetectionStatus.REJECTED, DetectionSource.SEARCH),
        (classes[0], None, DetectionStatus.ACCEPTED, DetectionSource.MANUAL),
    ]
    made = []
    for i, (cls, score, status, source) in enumerate(spec):
        g = box(10.005 + i * 0.002, 50.01, 10.0065 + i * 0.002, 50.0115)
        made.append(Detection.objects.create(
            scene=scene, object_class=cls, geometry=g, bbox=g, score=score, status=status, source=source
        ))
    return made


def url(scene, tile=HERE, **query) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/api/scenes/{scene.pk}/detections/tiles/{tile.z}/{tile.x}/{tile.y}.mvt" + (f"?{q}" if q else "")


def features(response) -> dict[int, dict]:
    """The tile's detection features by id (properties plus the feature's own id)."""
    layers = mapbox_vector_tile.decode(response.content)
    assert set(layers) == {"detections"}
    assert layers["detections"]["extent"] == 4096
    return {f["id"]: f["properties"] for f in layers["detections"]["features"]}


def test_tile_holds_the_detections_with_their_properties(api, scene, detections):
    r = api.get(url(scene))
    assert r.status_code == 200
    assert r["Content-Type"] == "application/vnd.mapbox-vector-tile"
    assert "no-cache" in r["Cache-Control"]
    found = features(r)
    assert set(found) == {d.pk for d in detections}
    first, manual = detections[0], detections[4]
    assert found[first.pk] == {
        "id": first.pk, "object_class": first.object_class_id, "status": "proposed", "score": pytest.approx(0.9),
        "source": "search", "version": 1, "manual": False,
    }
    assert found[manual.pk]["manual"] is True and "score" not in found[manual.pk]  # NULL is left out
    # The polygon comes back in tile coordinates, clipped to the tile (plus its buffer).
    layer = mapbox_vector_tile.decode(r.content)["detections"]
    geometry = next(f["geometry"] for f in layer["features"] if f["id"] == first.pk)
    assert geometry["type"] == "Polygon"
    xs = [x for x, _ in geometry["coordinates"][0]]
    assert all(-64 <= x <= 4096 + 64 for x in xs)


def test_filters_by_status_class_and_score(api, scene, detections):
    assert set(features(api.get(url(scene, status="accepted,rejected")))) == {d.pk for d in detections[2:]}
    assert set(features(api.get(url(scene, status="proposed")))) == {detections[0].pk, detections[1].pk}
    cls = detections[2].object_class_id
    assert set(features(api.get(url(scene, object_class=cls)))) == {detections[2].pk, detections[3].pk}
    assert set(features(api.get(url(scene, score_min="0.65")))) == {detections[0].pk, detections[2].pk}
    both = api.get(url(scene, status="proposed", object_class=detections[0].object_class_id, score_min="0.5"))
    assert set(features(both)) == {detections[0].pk}


def test_empty_tile_is_204(api, scene, detections):
    r = api.get(url(scene, tile=ELSEWHERE))
    assert r.status_code == 204 and r.content == b""
    assert api.get(url(scene, score_min="0.99")).status_code == 204
    far = WEB_MERCATOR.tile(-70.0, -30.0, 3)
    assert api.get(url(scene, tile=far)).status_code == 204
    # A triangle whose box overlaps the tile's corner but whose shape misses it: found by the index, clipped away.
    left, bottom, _, _ = WEB_MERCATOR.bounds(ELSEWHERE)
    triangle = Polygon(((left - 0.01, bottom + 0.005), (left - 0.01, bottom - 0.01), (left + 0.005, bottom - 0.01),
                        (left - 0.01, bottom + 0.005)), srid=4326)
    Detection.objects.create(scene=scene, object_class=detections[0].object_class, geometry=triangle, bbox=triangle,
                             score=0.5, source=DetectionSource.SEARCH)
    assert api.get(url(scene, tile=ELSEWHERE)).status_code == 204
    assert api.get(url(scene, tile=WEB_MERCATOR.tile(left - 0.008, bottom - 0.008, 14))).status_code == 200


def test_etag_304_and_a_decision_changes_the_tile(api, scene, detections):
    first = api.get(url(scene))
    etag = first["ETag"]
    assert etag
    again = api.get(url(scene), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert api.get(url(scene), HTTP_IF_NONE_MATCH=f'"x", W/{etag}').status_code == 304
    # A reviewer's decision changes the tile's bytes, so the old ETag no longer matches.
    Detection.objects.filter(pk=detections[0].pk).update(status=DetectionStatus.ACCEPTED, version=2)
    changed = api.get(url(scene), HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert features(changed)[detections[0].pk]["version"] == 2


def test_other_projects_scene_missing_scene_and_anonymous_are_404(scene, detections, outsider, other_project):
    r = client_for(outsider).get(url(scene))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    missing = client_for(outsider).get(f"/api/scenes/{scene.pk + 1000}/detections/tiles/{HERE.z}/{HERE.x}/{HERE.y}.mvt")
    assert missing.status_code == 404 and missing.json() == r.json()  # no existence oracle
    assert APIClient().get(url(scene)).status_code == 404
    huge = client_for(outsider).get(f"/api/scenes/{10**30}/detections/tiles/0/0/0.mvt")
    assert huge.status_code == 404 and huge.json() == r.json()


def test_a_removed_member_loses_the_tiles_within_the_grant_bound(monkeypatch, project, scene, detections, viewer):
    now = [1000.0]
    monkeypatch.setattr(tile_views, "_clock", lambda: now[0])
    client = client_for(viewer)
    assert client.get(url(scene)).status_code == 200
    Membership.objects.filter(user=viewer, project=project).delete()
    assert client.get(url(scene)).status_code == 200  # the cached grant, at most VISIBLE_CACHE_SECONDS old
    now[0] += tile_views.VISIBLE_CACHE_SECONDS + 0.01
    assert client.get(url(scene)).status_code == 404
    now[0] += 1  # a refusal is never cached: the grant is not back
    assert client.get(url(scene)).status_code == 404


def test_token_auth(manager, scene, detections):
    token = Token.objects.create(user=manager)
    r = APIClient().get(url(scene), HTTP_AUTHORIZATION=f"Token {token.key}")
    assert r.status_code == 200 and len(features(r)) == 5


@pytest.mark.parametrize("z,x,y", [(25, 0, 0), (3, 8, 0), (3, 0, 8), (0, 1, 0)])
def test_tile_out_of_range_is_400(api, scene, z, x, y):
    r = api.get(f"/api/scenes/{scene.pk}/detections/tiles/{z}/{x}/{y}.mvt")
    assert r.status_code == 400
    assert "No such tile" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "query", [{"status": "maybe"}, {"status": "accepted,nope"}, {"object_class": "x"}, {"object_class": "0"},
              {"score_min": "high"}, {"score_min": "nan"}, {"score_min": "inf"}],
)
def test_bad_filters_are_400(api, scene, query):
    r = api.get(url(scene, **query))
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "invalid"


def test_only_get_and_head(api, scene, detections):
    assert api.head(url(scene)).status_code == 200
    r = api.post(url(scene))
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_selector_returns_the_endpoints_bytes(api, scene, detections):
    raw = vector_tiles.detection_tile(scene.pk, HERE.z, HERE.x, HERE.y, statuses=["accepted"])
    assert raw == api.get(url(scene, status="accepted")).content
    assert vector_tiles.detection_tile(scene.pk, ELSEWHERE.z, ELSEWHERE.x, ELSEWHERE.y) == b""
    with pytest.raises(ValueError):
        vector_tiles.detection_tile(scene.pk, 0, 0, 0, statuses=["maybe"])


def test_objects_too_small_for_the_tile_come_as_small_squares(api, scene, detections):
    """Zoomed far out a ~110 m object is under 2 px: it comes as a square of DOT_SIDE units (a polygon that
    collapses below one unit would vanish; a point would be drawn as a vector on every frame)."""
    far = WEB_MERCATOR.tile(10.012, 50.012, 5)
    layers = mapbox_vector_tile.decode(api.get(url(scene, far)).content)
    found = {f["id"]: f["geometry"] for f in layers["detections"]["features"]}
    assert set(found) == {d.pk for d in detections}
    for geometry in found.values():
        assert geometry["type"] == "Polygon"
        xs = [x for x, _ in geometry["coordinates"][0]]
        ys = [y for _, y in geometry["coordinates"][0]]
        assert 1 <= max(xs) - min(xs) <= vector_tiles.DOT_SIDE and 1 <= max(ys) - min(ys) <= vector_tiles.DOT_SIDE
    near = mapbox_vector_tile.decode(api.get(url(scene)).content)
    assert {f["geometry"]["type"] for f in near["detections"]["features"]} == {"Polygon"}


def test_stored_web_mercator_outline_follows_the_geometry(scene, detections):
    """geometry_3857 is the database's own reprojection, kept true through an edit."""
    d = detections[0]
    d.geometry = box(10.05, 50.05, 10.051, 50.051)
    d.save()
    d = Detection.objects.get(pk=d.pk)
    want = d.geometry.transform(3857, clone=True)
    assert d.geometry_3857.srid == 3857
    assert d.geometry_3857.equals_exact(want, tolerance=1e-3)
