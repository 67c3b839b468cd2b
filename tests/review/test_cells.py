"""Work cells: splitting in metres (projected and geographic scenes, drawn areas), assignment, progress, done and
reopen permissions, decisions refused in done cells for every writer, and the queue's tiers."""

import re

import pytest
from django.contrib.gis.geos import Polygon
from django.core.cache import cache
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from annotate.geo import footprint_ring_lonlat, haversine_m, transform_from_gdal
from annotate.models import Detection, DetectionSource, DetectionStatus, Role, Scene, SceneStatus
from annotate.services import membership_set
from review.cells import MAX_CELLS, cells_split, row_label
from review.models import ReviewEvent, WorkCell
from tests.conftest import client_for, make_user
from tests.review.conftest import box, geojson_box

pytestmark = pytest.mark.django_db

DONE_MESSAGE = re.compile(r"^Cell [A-Z]+\d+ was marked done by rita at \d\d:\d\d; ask a manager to reopen it\.$")


@pytest.fixture
def api(manager):
    return client_for(manager)


@pytest.fixture
def bob(project):
    user = make_user("bob")
    membership_set(project=project, user=user, role=Role.REVIEWER)
    return user


def utm_scene(project) -> Scene:
    """A 1000 m x 500 m scene in UTM 17N (0.5 m pixels)."""
    gt = [400000.0, 0.5, 0.0, 3300000.0, 0.0, -0.5]
    crs = CRS.from_epsg(32617)
    ring = footprint_ring_lonlat(crs, transform_from_gdal(gt), 2000, 1000)
    return Scene.objects.create(
        project=project, name="utm", status=SceneStatus.READY, crs="EPSG:32617", geotransform=gt, width=2000,
        height=1000, footprint=Polygon(ring, srid=4326),
    )


def split(api, scene, size_m, **extra):
    return api.post(f"/api/scenes/{scene.pk}/cells/split/", {"size_m": size_m, **extra}, format="json")


def cells_of(scene) -> dict[str, WorkCell]:
    return {c.label: c for c in WorkCell.objects.filter(scene=scene)}


def detection_in(cell: WorkCell, cls, score=0.5, status=DetectionStatus.PROPOSED, dx=0.0) -> Detection:
    """A small detection whose centroid lies inside `cell` (shifted by dx of the cell's width)."""
    c = cell.geometry.centroid
    x0, y0, x1, y1 = cell.geometry.extent
    cx = c.x + dx * (x1 - x0)
    g = box(cx - 0.0002, c.y - 0.0002, cx + 0.0002, c.y + 0.0002)
    return Detection.objects.create(
        scene=cell.scene, object_class=cls, geometry=g, bbox=g, score=score, source=DetectionSource.SEARCH,
        status=status,
    )


def test_row_labels():
    assert [row_label(i) for i in (0, 2, 25, 26, 27)] == ["A", "C", "Z", "AA", "AB"]


def test_split_a_utm_scene_into_squares_of_the_size_in_metres(api, project):
    scene = utm_scene(project)
    r = split(api, scene, 250)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["type"] == "FeatureCollection"
    labels = [f["properties"]["label"] for f in body["features"]]
    assert labels == ["A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4"]
    for cell in WorkCell.objects.filter(scene=scene):
        lons, lats = zip(*cell.geometry.exterior_ring.coords, strict=True)
        xs, ys = warp_transform(CRS.from_epsg(4326), CRS.from_epsg(32617), list(lons), list(lats))
        assert max(xs) - min(xs) == pytest.approx(250, abs=1e-3)
        assert max(ys) - min(ys) == pytest.approx(250, abs=1e-3)
        # Cell A1 is the top-left: its west edge at the scene's west edge, its north edge at the top.
        assert min(xs) == pytest.approx(400000 + 250 * cell.col, abs=1e-3)
        assert max(ys) == pytest.approx(3300000 - 250 * cell.row, abs=1e-3)


def test_split_a_geographic_scene_in_metres_covering_the_footprint(api, scene):
    r = split(api, scene, 2000)
    assert r.status_code == 200, r.json()
    cells = list(WorkCell.objects.filter(scene=scene))
    # 0.1 degrees at 50N: about 7.2 km by 11.1 km, so 4 columns by 6 rows, all touching the footprint.
    assert len(cells) == 24
    assert max(c.col for c in cells) == 3 and max(c.row for c in cells) == 5
    for cell in cells:
        (x0, y0), (x1, _), _, (_, y3) = cell.geometry.exterior_ring.coords[:4]
        assert haversine_m(x0, y0, x1, y0) == pytest.approx(2000, rel=0.01)
        assert haversine_m(x0, y0, x0, y3) == pytest.approx(2000, rel=0.01)
        assert cell.geometry.intersects(scene.footprint)
    union = cells[0].geometry
    for cell in cells[1:]:
        union = union.union(cell.geometry)
    # Cell edges are straight between their corners in lon/lat, not along the metric grid's lines: at the outer
    # edge that leaves slivers a few centimetres wide (their objects are in no cell: free for anyone).
    assert scene.footprint.difference(union).area < scene.footprint.area * 1e-6


def test_split_a_drawn_area_makes_only_the_cells_touching_it(api, scene):
    area = geojson_box(10.02, 50.02, 10.035, 50.03)  # about 1.07 km x 1.11 km
    r = split(api, scene, 500, area=area)
    assert r.status_code == 200, r.json()
    cells = list(WorkCell.objects.filter(scene=scene))
    assert 9 <= len(cells) <= 12
    drawn = box(10.02, 50.02, 10.035, 50.03)
    assert all(c.geometry.intersects(drawn) for c in cells)
    assert not any(c.geometry.intersects(box(10.05, 50.05, 10.06, 50.06)) for c in cells)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"size_m": 0}, "positive number of metres"),
        ({"size_m": -5}, "positive number of metres"),
        ({"size_m": "many"}, "valid number"),
        ({"size_m": 10}, f"over the limit of {MAX_CELLS}; choose 188 m or more"),
        ({"size_m": 100, "area": geojson_box(11.0, 51.0, 11.01, 51.01)}, "outside the scene"),
        ({"size_m": 100, "area": {"type": "Polygon", "coordinates": [[[10.01, 50.01], [10.02, 50.02],
                                                                       [10.02, 50.01], [10.01, 50.02],
                                                                       [10.01, 50.01]]]}}, "not a valid polygon"),
        ({"size_m": 100, "area": {"type": "Point", "coordinates": [10.01, 50.01]}}, "must be a GeoJSON Polygon"),
        ({"size_m": 100, "area": {"type": "Polygon"}}, "GeoJSON Polygon"),
    ],
)
def test_split_refuses_bad_input_clearly(api, scene, body, fragment):
    r = api.post(f"/api/scenes/{scene.pk}/cells/split/", body, format="json")
    assert r.status_code == 400, r.json()
    assert fragment in str(r.json())
    assert not WorkCell.objects.filter(scene=scene).exists()


def test_the_size_offered_for_a_too_fine_grid_fits(api, scene):
    message = split(api, scene, 10).json()["error"]["message"]
    size = int(re.search(r"choose (\d+) m or more", message).group(1))
    assert split(api, scene, size).status_code == 200
    assert 0 < WorkCell.objects.filter(scene=scene).count() <= MAX_CELLS
    assert split(api, scene, size * 0.9).status_code == 400


def test_only_managers_split_and_assign(rapi, reviewer, scene):
    assert split(rapi, scene, 2000).status_code == 403
    cells_split(scene=scene, actor=scene.project.created_by, size_m=4000)
    cell = WorkCell.objects.filter(scene=scene).first()
    r = rapi.post(f"/api/cells/{cell.pk}/assign/", {"user": reviewer.pk}, format="json")
    assert r.status_code == 403
    r = rapi.post(f"/api/scenes/{scene.pk}/cells/assign-round-robin/", {"users": [reviewer.pk]}, format="json")
    assert r.status_code == 403


def test_assign_by_hand_and_round_robin(api, scene, reviewer, bob, viewer):
    assert split(api, scene, 4000).status_code == 200
    cells = cells_of(scene)
    assert sorted(cells) == ["A1", "A2", "B1", "B2", "C1", "C2"]
    r = api.post(f"/api/cells/{cells['B2'].pk}/assign/", {"user": bob.pk}, format="json")
    assert r.status_code == 200, r.json()
    b2 = next(f for f in r.json()["features"] if f["properties"]["label"] == "B2")
    assert (b2["properties"]["assignee"], b2["properties"]["assignee_name"]) == (bob.pk, "bob")
    # A viewer cannot be given cells; the message says what to do.
    r = api.post(f"/api/cells/{cells['A1'].pk}/assign/", {"user": viewer.pk}, format="json")
    assert r.status_code == 400 and "add them as reviewers" in r.json()["error"]["message"]
    r = api.post(f"/api/scenes/{scene.pk}/cells/assign-round-robin/", {"users": [reviewer.pk, bob.pk]}, format="json")
    assert r.status_code == 200, r.json()
    owners = {label: c.assignee.username for label, c in cells_of(scene).items()}
    # B2 stays bob's; the other five are dealt in reading order.
    assert owners == {"A1": "rita", "A2": "bob", "B1": "rita", "B2": "bob", "C1": "bob", "C2": "rita"}
    r = api.post(f"/api/cells/{cells['A1'].pk}/assign/", {"user": None}, format="json")
    assert r.status_code == 200 and cells_of(scene)["A1"].assignee_id is None
    r = api.post(f"/api/scenes/{scene.pk}/cells/assign-round-robin/", {"users": []}, format="json")
    assert r.status_code == 400


def test_resplit_is_refused_while_cells_are_assigned(api, scene, reviewer):
    split(api, scene, 4000)
    cell = cells_of(scene)["A1"]
    api.post(f"/api/cells/{cell.pk}/assign/", {"user": reviewer.pk}, format="json")
    r = split(api, scene, 2000)
    assert r.status_code == 409 and "A1" in r.json()["error"]["message"]
    assert len(cells_of(scene)) == 6
    api.post(f"/api/cells/{cell.pk}/assign/", {"user": None}, format="json")
    assert split(api, scene, 2000).status_code == 200
    assert len(cells_of(scene)) == 24


def test_progress_counts_per_cell_and_in_progress_after_the_first_decision(api, rapi, scene, classes):
    split(api, scene, 4000)
    cells = cells_of(scene)
    dets = [detection_in(cells["A1"], classes[0], dx=dx) for dx in (-0.2, 0.0, 0.2)]
    detection_in(cells["A1"], classes[0], status=DetectionStatus.REJECTED, dx=0.3)
    detection_in(cells["C2"], classes[0])
    cache.clear()  # the split's answer counted an empty scene, shared for 2 s (PROGRESS_CACHE_S)
    r = api.get(f"/api/scenes/{scene.pk}/cells/")
    props = {f["properties"]["label"]: f["properties"] for f in r.json()["features"]}
    assert props["A1"]["counts"] == {"proposed": 3, "accepted": 0, "rejected": 1}
    assert (props["A1"]["total"], props["A1"]["decided"]) == (4, 1)
    assert props["C2"]["total"] == 1 and props["B1"]["total"] == 0
    assert props["A1"]["status"] == "open"
    revision = r.json()["revision"]
    r = rapi.post(
        f"/api/detections/{dets[0].pk}/review/",
        {"verdict": "accepted", "expected_version": 1, "client_id": "p1"}, format="json",
    )
    assert r.status_code == 200, r.json()
    r = api.get(f"/api/scenes/{scene.pk}/cells/")
    props = {f["properties"]["label"]: f["properties"] for f in r.json()["features"]}
    assert props["A1"]["status"] == "in_progress" and props["A1"]["counts"]["accepted"] == 1
    assert props["C2"]["status"] == "open"
    assert r.json()["revision"] != revision


def test_done_and_reopen_permissions(api, scene, reviewer, bob):
    split(api, scene, 4000)
    cell = cells_of(scene)["A1"]
    api.post(f"/api/cells/{cell.pk}/assign/", {"user": reviewer.pk}, format="json")
    assert client_for(bob).post(f"/api/cells/{cell.pk}/done/").status_code == 403  # not bob's cell
    rapi = client_for(reviewer)
    r = rapi.post(f"/api/cells/{cell.pk}/done/")
    assert r.status_code == 200, r.json()
    cell.refresh_from_db()
    assert (cell.status, cell.done_by_id) == ("done", reviewer.pk)
    assert rapi.post(f"/api/cells/{cell.pk}/reopen/").status_code == 403  # REOPEN_CELLS: managers only
    assert api.post(f"/api/cells/{cell.pk}/reopen/").status_code == 200
    cell.refresh_from_db()
    assert (cell.status, cell.done_by_id) == ("in_progress", None)
    assert api.post(f"/api/cells/{cell.pk}/reopen/").status_code == 409  # not done: nothing to reopen
    other = cells_of(scene)["B1"]  # unassigned: a manager may finish it
    assert api.post(f"/api/cells/{other.pk}/done/").status_code == 200
    assert client_for(make_user("stranger")).post(f"/api/cells/{other.pk}/done/").status_code == 404


def _refused(r, before: int):
    assert r.status_code == 409, r.json()
    assert r.json()["error"]["code"] == "cell_done"
    assert DONE_MESSAGE.match(r.json()["error"]["message"]), r.json()
    assert ReviewEvent.objects.count() == before


@pytest.fixture(params=["few", "many"])
def guard_path(request, monkeypatch):
    """Both ways the done-cell guard finds cells: from the detections (few) and from the cells (a bulk action)."""
    if request.param == "many":
        monkeypatch.setattr("review.cells.MANY_IDS", 0)
    return request.param


def test_every_decision_in_a_done_cell_is_refused(api, rapi, reviewer, scene, classes, guard_path):
    split(api, scene, 4000)
    cells = cells_of(scene)
    done, open_cell = cells["A1"], cells["C2"]
    det = detection_in(done, classes[0])
    accepted = detection_in(done, classes[0], dx=0.2)
    # Decisions made before the cell was done: the undo and the manual delete must be refused later.
    r = rapi.post(f"/api/detections/{accepted.pk}/review/",
                  {"verdict": "accepted", "expected_version": 1, "client_id": "u0"}, format="json")
    assert r.status_code == 200
    r = rapi.post(f"/api/scenes/{scene.pk}/detections/manual/",
                  {"class": classes[0].pk, "geometry": geojson_box(*_inside(done, 0.1)), "client_id": "m0"},
                  format="json")
    assert r.status_code == 201, r.json()
    manual_id = r.json()["detection"]["id"]
    api.post(f"/api/cells/{done.pk}/assign/", {"user": reviewer.pk}, format="json")
    assert rapi.post(f"/api/cells/{done.pk}/done/").status_code == 200
    before = ReviewEvent.objects.count()

    _refused(rapi.post(f"/api/detections/{det.pk}/review/",
                       {"verdict": "rejected", "expected_version": 1, "client_id": "x1"}, format="json"), before)
    _refused(rapi.post(f"/api/detections/{det.pk}/relabel/",
                       {"class": classes[1].pk, "expected_version": 1, "client_id": "x2"}, format="json"), before)
    _refused(rapi.post(f"/api/detections/{det.pk}/reshape/",
                       {"geometry": geojson_box(*_inside(done, -0.1)), "expected_version": 1, "client_id": "x3"},
                       format="json"), before)
    # Reshaping an object of an open cell into the done one is refused too (its new centroid lies there).
    outside = detection_in(open_cell, classes[0])
    _refused(rapi.post(f"/api/detections/{outside.pk}/reshape/",
                       {"geometry": geojson_box(*_inside(done, -0.2)), "expected_version": 1, "client_id": "x4"},
                       format="json"), before)
    _refused(rapi.post(f"/api/scenes/{scene.pk}/detections/manual/",
                       {"class": classes[0].pk, "geometry": geojson_box(*_inside(done, 0.25)), "client_id": "x5"},
                       format="json"), before)
    _refused(rapi.delete(f"/api/detections/{manual_id}/manual/?expected_version=1&client_id=x6"), before)
    _refused(api.post(f"/api/scenes/{scene.pk}/detections/bulk-review/",
                      {"verdict": "accepted", "ids": [det.pk, outside.pk], "client_id": "x7"}, format="json"), before)
    _refused(rapi.post("/api/review/undo/", {"scene": scene.pk, "client_id": "x8"}, format="json"), before)
    det.refresh_from_db()
    assert (det.status, det.version, det.object_class_id) == ("proposed", 1, classes[0].pk)
    assert Detection.objects.filter(pk=manual_id).exists()
    assert Detection.objects.get(pk=accepted.pk).status == "accepted"

    # Once reopened, the same decisions go through.
    assert api.post(f"/api/cells/{done.pk}/reopen/").status_code == 200
    r = rapi.post(f"/api/detections/{det.pk}/review/",
                  {"verdict": "rejected", "expected_version": 1, "client_id": "y1"}, format="json")
    assert r.status_code == 200, r.json()
    assert rapi.post("/api/review/undo/", {"scene": scene.pk, "client_id": "y2"}, format="json").status_code == 200


def _inside(cell: WorkCell, dx: float) -> tuple[float, float, float, float]:
    """A small box inside a cell, shifted by dx of its width from the centre."""
    c = cell.geometry.centroid
    x0, _, x1, _ = cell.geometry.extent
    cx = c.x + dx * (x1 - x0)
    return (cx - 0.0003, c.y - 0.0003, cx + 0.0003, c.y + 0.0003)


def queue_ids(client, scene, limit=20, **params):
    r = client.get(f"/api/scenes/{scene.pk}/review-queue/", {"limit": limit, **params})
    assert r.status_code == 200, r.json()
    return [f["id"] for f in r.json()["detections"]["features"]]


@pytest.mark.parametrize("order", ["score", "uncertainty", "spatial"])
def test_queue_serves_own_cells_first_then_unassigned_never_others(api, scene, reviewer, bob, classes, order):
    split(api, scene, 4000)
    cells = cells_of(scene)
    for label, user in (("A1", reviewer), ("B2", reviewer), ("A2", bob), ("C1", bob)):
        api.post(f"/api/cells/{cells[label].pk}/assign/", {"user": user.pk}, format="json")
    made = {label: [detection_in(cells[label], classes[0], score=s, dx=d)
                    for s, d in ((0.3, -0.2), (0.9, 0.0), (0.6, 0.2))] for label in cells}
    api.post(f"/api/cells/{cells['B1'].pk}/done/")  # unassigned but done: nobody's queue
    own = {d.pk for label in ("A1", "B2") for d in made[label]}
    free = {d.pk for d in made["C2"]}

    served = queue_ids(client_for(reviewer), scene, order=order)
    assert set(served[:6]) == own and set(served[6:]) == free, served
    # Within a tier, the chosen order holds.
    scores = [Detection.objects.get(pk=i).score for i in served[:6]]
    if order == "score":
        assert scores == sorted(scores, reverse=True)
    if order == "uncertainty":
        assert [abs(s - 0.5) for s in scores] == sorted(abs(s - 0.5) for s in scores)
    # Bob gets his cells, then the free ones rita was not served (she holds leases on those she was).
    served_bob = queue_ids(client_for(bob), scene, order=order)
    assert set(served_bob) == {d.pk for label in ("A2", "C1") for d in made[label]}
    # Paging after the last of rita's own goes on into the free tier; her leased items come back to her.
    assert queue_ids(client_for(reviewer), scene, order=order, after=served[5]) == served[6:]
    assert queue_ids(client_for(reviewer), scene, order=order, limit=3, after=served[6], direction="previous") == (
        served[5::-1][:3] if len(served) > 6 else []
    )


def test_queue_serves_objects_in_no_cell_after_own_cells(api, scene, reviewer, bob, classes):
    split(api, scene, 500, area=geojson_box(10.02, 50.02, 10.03, 50.03))
    api.post(f"/api/scenes/{scene.pk}/cells/assign-round-robin/", {"users": [reviewer.pk, bob.pk]}, format="json")
    mine = [c for c in WorkCell.objects.filter(scene=scene, assignee=reviewer)]
    bobs = [c for c in WorkCell.objects.filter(scene=scene, assignee=bob)]
    own = detection_in(mine[0], classes[0], score=0.1)
    detection_in(bobs[0], classes[0], score=0.95)
    g = box(10.07, 50.07, 10.0705, 50.0705)  # far from the split area: in no cell
    nowhere = Detection.objects.create(scene=scene, object_class=classes[0], geometry=g, bbox=g, score=0.99,
                                       source=DetectionSource.SEARCH)
    assert queue_ids(client_for(reviewer), scene) == [own.pk, nowhere.pk]


def test_queue_without_cells_serves_everything_in_order(rapi, scene, classes):
    dets = [
        Detection.objects.create(scene=scene, object_class=classes[0], geometry=box(10.01 + i * 0.001, 50.01,
                                 10.0105 + i * 0.001, 50.0105), bbox=box(10.01 + i * 0.001, 50.01, 10.0105 + i * 0.001,
                                 50.0105), score=s, source=DetectionSource.SEARCH)
        for i, s in enumerate((0.2, 0.8, 0.5))
    ]
    assert queue_ids(rapi, scene) == [dets[1].pk, dets[2].pk, dets[0].pk]
