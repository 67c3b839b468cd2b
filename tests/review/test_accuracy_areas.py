"""Accuracy areas (issue 12, section 1): a manager marks reviewed ground as exhaustively labelled; a proposer's
per-class precision, recall, F1 and AP there equal hand-computed values; what lies outside every area, or is of a
class the area is not complete for, does not count."""

import pytest
from django.contrib.gis.geos import Polygon

from annotate.models import Detection, ObjectClass, Role
from annotate.services import membership_set
from review import cells as cell_services
from review.accuracy_models import AccuracyArea
from tests.api.support import assert_error, ready_scene
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db

LON, LAT, S = 77.2, 28.6, 0.0002  # a 0.02-degree scene; objects of about 20 m


def box(x, y, dx=0.0):
    """An object's box at (x, y) in object widths from the scene's corner, shifted by dx widths."""
    lon, lat = LON + 0.001 + x * 2 * S + dx * S, LAT + 0.001 + y * 2 * S
    polygon = Polygon.from_bbox((lon, lat, lon + S, lat + S))
    polygon.srid = 4326
    return polygon


def detection(scene, cls, geometry, source, status, score=None):
    return Detection.objects.create(scene=scene, object_class=cls, geometry=geometry, bbox=geometry.envelope,
                                    source=source, status=status, score=score)


@pytest.fixture
def story(project, manager):
    scene = ready_scene(project)
    a, b = ObjectClass.objects.filter(project=project).order_by("index")[:2]
    # The drawn area: the scene's west half, complete for class A only.
    west = Polygon.from_bbox((LON, LAT, LON + 0.01, LAT + 0.02))
    # Class A inside: an accepted proposal (T1 and P1), a rejected proposal on nothing (P2, a false positive),
    # a proposal (P3) beside a drawn object (T2) at IoU 0.9 / 1.1, and a drawn object nothing proposed (T3).
    detection(scene, a, box(0, 0), "search", "accepted", 0.9)
    detection(scene, a, box(0, 3), "search", "rejected", 0.8)
    detection(scene, a, box(3, 0, dx=0.1), "search", "proposed", 0.7)
    detection(scene, a, box(3, 0), "manual", "accepted")
    detection(scene, a, box(6, 6), "manual", "accepted")
    # Outside every area (the east half): neither proposals nor objects count.
    detection(scene, a, box(30, 0), "search", "proposed", 0.95)
    detection(scene, a, box(30, 5), "manual", "accepted")
    # Class B inside the area, which is not complete for B: not counted.
    detection(scene, b, box(8, 8), "search", "proposed", 0.99)
    return scene, a, b, west


def test_drawn_area_metrics_equal_hand_computed_values(api, project, story):
    scene, a, b, west = story
    made = api.post(f"/api/scenes/{scene.pk}/accuracy-areas/",
                    {"area": {"type": "Polygon", "coordinates": [list(west.exterior_ring.coords)]},
                     "class_ids": [a.pk]}, format="json")
    assert made.status_code == 201, made.content[:300]
    assert made.json()[0]["class_ids"] == [a.pk]
    report = api.get(f"/api/projects/{project.pk}/accuracy/?source=search").json()
    assert report["areas"] == 1 and report["scenes"] == [scene.pk]
    rows = {r["class_name"]: r for r in report["classes"]}
    assert set(rows) == {a.name}
    got = rows[a.name]
    assert (got["truths"], got["proposals"], got["true_positives"]) == (3, 3, 2)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    # Ranked TP (0.9), FP (0.8), TP (0.7): precision 1 up to recall 1/3, 2/3 up to recall 2/3.
    assert got["ap50"] == pytest.approx((34 + 33 * 2 / 3) / 101)
    # The drawn objects as a proposer: both of them are reviewed objects, so they find 2 of 3.
    manual = {r["class_name"]: r for r in api.get(f"/api/projects/{project.pk}/accuracy/?source=manual").json()[
        "classes"]}
    assert manual[a.name]["true_positives"] == 2 and manual[a.name]["precision"] == 1.0


def test_an_area_for_every_class_counts_class_b_too(api, project, story):
    scene, a, b, west = story
    api.post(f"/api/scenes/{scene.pk}/accuracy-areas/",
             {"area": {"type": "Polygon", "coordinates": [list(west.exterior_ring.coords)]}}, format="json")
    rows = {r["class_name"]: r for r in api.get(f"/api/projects/{project.pk}/accuracy/?source=search").json()[
        "classes"]}
    assert rows[b.name]["proposals"] == 1 and rows[b.name]["truths"] == 0
    assert rows[b.name]["precision"] == 0.0 and rows[b.name]["ap50"] is None


def test_cells_as_areas_roles_and_refusals(api, project, manager, story):
    scene, a, _b, _west = story
    cells = cell_services.cells_split(scene=scene, actor=manager, size_m=2500)  # one cell: the whole scene
    reviewer = make_user("rev")
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    refused = client_for(reviewer).post(f"/api/scenes/{scene.pk}/accuracy-areas/", {"cell_ids": [cells[0].pk]},
                                        format="json")
    assert_error(refused, 403, "forbidden")
    assert not AccuracyArea.objects.exists()
    assert_error(api.post(f"/api/scenes/{scene.pk}/accuracy-areas/", {}, format="json"), 400)
    assert_error(api.post(f"/api/scenes/{scene.pk}/accuracy-areas/", {"cell_ids": [999999]}, format="json"), 400)
    assert_error(api.post(f"/api/scenes/{scene.pk}/accuracy-areas/", {"cell_ids": [cells[0].pk],
                                                                      "class_ids": [999999]}, format="json"), 400)
    made = api.post(f"/api/scenes/{scene.pk}/accuracy-areas/", {"cell_ids": [cells[0].pk]}, format="json")
    assert made.status_code == 201 and made.json()[0]["cell"] == cells[0].pk
    listed = client_for(reviewer).get(f"/api/scenes/{scene.pk}/accuracy-areas/").json()
    assert [x["id"] for x in listed] == [made.json()[0]["id"]]
    # The cell holds every object of the story, the east ones too (the unmatched 0.95 proposal and the drawn one).
    rows = {r["class_name"]: r for r in api.get(f"/api/projects/{project.pk}/accuracy/?source=search").json()[
        "classes"]}
    assert (rows[a.name]["truths"], rows[a.name]["proposals"], rows[a.name]["true_positives"]) == (4, 4, 2)
    area_id = made.json()[0]["id"]
    assert_error(client_for(reviewer).delete(f"/api/accuracy-areas/{area_id}/"), 403, "forbidden")
    assert api.delete(f"/api/accuracy-areas/{area_id}/").status_code == 204
    empty = api.get(f"/api/projects/{project.pk}/accuracy/?source=search").json()
    assert empty["areas"] == 0 and empty["classes"] == []
    assert_error(api.get(f"/api/projects/{project.pk}/accuracy/?source=nonsense"), 400)
