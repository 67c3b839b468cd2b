"""Live poll: cursor semantics, no history without a cursor, presence (cells, TTL), scoping, roles, query count."""

import time

import pytest

from annotate.models import Detection, Role
from annotate.services import membership_set
from review import live
from review.cells_models import WorkCell
from review.models import ReviewEvent
from tests.conftest import client_for, make_user
from tests.review.conftest import box, geojson_box

CENTRE = (10.012, 50.012)


def make_detection(scene, cls, i=0) -> Detection:
    g = box(10.01 + i * 0.001, 50.01, 10.0105 + i * 0.001, 50.0105)
    return Detection.objects.create(scene=scene, object_class=cls, geometry=g, bbox=g, score=0.8)


def accept(client, det, version, cid):
    r = client.post(
        f"/api/detections/{det.pk}/review/",
        {"verdict": "accepted", "expected_version": version, "client_id": cid}, format="json",
    )
    assert r.status_code == 200, r.json()
    return r.json()


def poll(client, scene, **params):
    r = client.get(f"/api/scenes/{scene.pk}/live/", params)
    assert r.status_code == 200, r.content
    return r.json()


@pytest.fixture
def bob(project):
    user = make_user("bob")
    membership_set(project=project, user=user, role=Role.REVIEWER)
    return user


@pytest.fixture
def bapi(bob):
    return client_for(bob)


def test_no_history_without_since_then_only_new_events(rapi, bapi, bob, reviewer, scene, classes):
    dets = [make_detection(scene, classes[0], i) for i in range(3)]
    for i, d in enumerate(dets[:2]):
        accept(rapi, d, 1, f"old{i}")
    first = poll(bapi, scene)
    assert first["events"] == [] and first["more"] is False
    assert first["cursor"] == ReviewEvent.objects.filter(scene=scene).latest("id").pk
    assert first["you"] == bob.pk
    assert poll(bapi, scene, since=first["cursor"])["events"] == []  # nothing new: same cursor back
    assert poll(bapi, scene, since=first["cursor"])["cursor"] == first["cursor"]

    accept(rapi, dets[2], 1, "new")
    shape = geojson_box(10.02, 50.02, 10.03, 50.03)
    r = rapi.post(f"/api/detections/{dets[2].pk}/reshape/",
                  {"geometry": shape, "expected_version": 2, "client_id": "shape"}, format="json")
    assert r.status_code == 200
    page = poll(bapi, scene, since=first["cursor"])
    assert [(e["detection"], e["verb"], e["status_after"], e["version_after"], e["geometry_changed"])
            for e in page["events"]] == [(dets[2].pk, "accept", "accepted", 2, False),
                                         (dets[2].pk, "reshape", "accepted", 3, True)]
    assert {e["actor_name"] for e in page["events"]} == {"rita"}
    assert {e["actor"] for e in page["events"]} == {reviewer.pk}
    assert page["events"][0]["class_after"] == classes[0].pk
    assert page["cursor"] == page["events"][-1]["id"]
    # since=0 is a real cursor: the whole trail, in order.
    assert [e["version_after"] for e in poll(bapi, scene, since=0)["events"]] == [2, 2, 2, 3]


def test_own_events_come_with_actor_so_the_page_can_skip_them(rapi, reviewer, scene, classes):
    det = make_detection(scene, classes[0])
    start = poll(rapi, scene)["cursor"]
    accept(rapi, det, 1, "mine")
    page = poll(rapi, scene, since=start)
    assert [(e["actor"], e["detection"]) for e in page["events"]] == [(reviewer.pk, det.pk)]
    assert page["you"] == reviewer.pk


def test_manual_create_and_delete_are_shape_changes(rapi, bapi, scene, classes):
    start = poll(bapi, scene)["cursor"]
    r = rapi.post(f"/api/scenes/{scene.pk}/detections/manual/",
                  {"object_class": classes[0].pk, "geometry": geojson_box(10.05, 50.05, 10.051, 50.051),
                   "client_id": "draw"}, format="json")
    assert r.status_code == 201, r.json()
    pk = r.json()["detection"]["id"]
    r = rapi.delete(f"/api/detections/{pk}/manual/?expected_version=1&client_id=del")
    assert r.status_code == 200, r.json()
    page = poll(bapi, scene, since=start)
    assert [(e["verb"], e["status_after"], e["geometry_changed"]) for e in page["events"]] == [
        ("create_manual", "accepted", True), ("delete_manual", "", True)]


def test_a_full_page_says_more_and_the_next_poll_continues(scene, classes, rapi):
    dets = [make_detection(scene, classes[0], i) for i in range(5)]
    for i, d in enumerate(dets):
        accept(rapi, d, 1, f"c{i}")
    events, cursor, more = live.events_after(scene=scene, since=0, limit=3)
    assert (len(events), more) == (3, True)
    rest, cursor2, more2 = live.events_after(scene=scene, since=cursor, limit=3)
    assert (len(rest), more2) == (2, False)
    assert [e["detection"] for e in events + rest] == [d.pk for d in dets]
    assert cursor2 == rest[-1]["id"]


def test_presence_lists_the_others_with_their_cell(rapi, bapi, reviewer, bob, scene, project):
    WorkCell.objects.create(project=project, scene=scene, geometry=box(10.0, 50.0, 10.05, 50.05), label="A1",
                            row=0, col=0, size_m=100)
    assert poll(rapi, scene, x=CENTRE[0], y=CENTRE[1], detection=7)["presence"] == []  # alone
    seen_by_bob = poll(bapi, scene, x=10.07, y=50.07)["presence"]
    assert [(p["user"], p["name"], p["cell"], p["x"], p["y"], p["detection"]) for p in seen_by_bob] == [
        (reviewer.pk, "rita", "A1", CENTRE[0], CENTRE[1], 7)]
    seen_by_rita = poll(rapi, scene, x=CENTRE[0], y=CENTRE[1])["presence"]
    assert [(p["name"], p["cell"]) for p in seen_by_rita] == [("bob", None)]  # outside every cell
    # A cell named by the page wins over the map's centre.
    cell = WorkCell.objects.create(project=project, scene=scene, geometry=box(10.05, 50.05, 10.1, 50.1), label="B2",
                                   row=1, col=1, size_m=100)
    poll(bapi, scene, x=10.07, y=50.07, cell=cell.pk)
    assert [p["cell"] for p in poll(rapi, scene)["presence"]] == ["B2"]


def test_presence_moves_with_the_reviewer_and_the_cells(rapi, bapi, scene, project):
    poll(rapi, scene, x=CENTRE[0], y=CENTRE[1])
    assert [p["cell"] for p in poll(bapi, scene)["presence"]] == [None]
    # Cells split after rita last moved: her next poll (same place) finds her cell, as the revision changed.
    WorkCell.objects.create(project=project, scene=scene, geometry=box(10.0, 50.0, 10.05, 50.05), label="A1",
                            row=0, col=0, size_m=100)
    poll(rapi, scene, x=CENTRE[0], y=CENTRE[1])
    assert [p["cell"] for p in poll(bapi, scene)["presence"]] == ["A1"]
    poll(rapi, scene, x=10.09, y=50.09)
    assert [p["cell"] for p in poll(bapi, scene)["presence"]] == [None]


def test_presence_fades_after_ten_seconds_and_is_pruned(rapi, bapi, scene, monkeypatch):
    poll(rapi, scene, x=CENTRE[0], y=CENTRE[1])
    now = time.time()
    monkeypatch.setattr(live.time, "time", lambda: now + live.PRESENCE_SHOWN_S - 1)
    assert [p["name"] for p in poll(bapi, scene)["presence"]] == ["rita"]
    monkeypatch.setattr(live.time, "time", lambda: now + live.PRESENCE_SHOWN_S + 1)
    assert poll(bapi, scene)["presence"] == []
    monkeypatch.setattr(live.time, "time", lambda: now + live.PRESENCE_TTL_S + 1)
    poll(bapi, scene)
    fields = live._redis().hkeys(live._presence_key(scene.pk))
    assert [int(f) for f in fields] == [poll(bapi, scene)["you"]]  # rita's stale field is gone
    assert 0 < live._redis().ttl(live._presence_key(scene.pk)) <= live.PRESENCE_TTL_S


def test_presence_is_per_scene(rapi, bapi, scene, project):
    from tests.review.conftest import make_scene

    other = make_scene(project)
    poll(rapi, scene, x=CENTRE[0], y=CENTRE[1])
    assert poll(bapi, other)["presence"] == []
    assert [p["name"] for p in poll(bapi, scene)["presence"]] == ["rita"]


def test_cells_revision_changes_with_the_cells(rapi, scene, project):
    before = poll(rapi, scene)["cells_revision"]
    cell = WorkCell.objects.create(project=project, scene=scene, geometry=box(10.0, 50.0, 10.05, 50.05), label="A1",
                                   row=0, col=0, size_m=100)
    split = poll(rapi, scene)["cells_revision"]
    assert split != before
    cell.status = "done"
    cell.save()
    assert poll(rapi, scene)["cells_revision"] not in (before, split)


def test_viewer_may_poll_and_is_seen(viewer, rapi, scene):
    vapi = client_for(viewer)
    assert poll(vapi, scene)["events"] == []
    assert [p["name"] for p in poll(rapi, scene)["presence"]] == ["viewer"]


def test_another_projects_scene_is_404(scene, outsider, other_project):
    r = client_for(outsider).get(f"/api/scenes/{scene.pk}/live/")
    assert r.status_code == 404
    assert r.json()["error"]["code"]
    r = client_for(outsider).get("/api/scenes/999999999/live/")
    assert r.status_code == 404


@pytest.mark.parametrize("params, field", [
    ({"since": "-1"}, "since"), ({"since": "abc"}, "since"), ({"x": "10.0"}, "x"), ({"x": "200", "y": "50"}, "x"),
    ({"x": "nan", "y": "50"}, "x"), ({"cell": "0"}, "cell"),
])
def test_bad_parameters_say_what_to_fix(rapi, scene, params, field):
    r = rapi.get(f"/api/scenes/{scene.pk}/live/", params)
    assert r.status_code == 400, r.content
    body = r.json()["error"]
    assert field in str(body["detail"]), body


def test_a_poll_is_a_handful_of_queries(rapi, bapi, scene, classes, project, django_assert_max_num_queries):
    WorkCell.objects.create(project=project, scene=scene, geometry=box(10.0, 50.0, 10.05, 50.05), label="A1",
                            row=0, col=0, size_m=100)
    start = poll(bapi, scene)["cursor"]
    for i in range(20):
        accept(rapi, make_detection(scene, classes[0], i), 1, f"q{i}")
    poll(bapi, scene, since=start, x=CENTRE[0], y=CENTRE[1])  # the cell lookup happens once per move
    # user, scene (membership), events, cells' revision: whatever the number of events.
    with django_assert_max_num_queries(4):
        r = bapi.get(f"/api/scenes/{scene.pk}/live/", {"since": start, "x": CENTRE[0], "y": CENTRE[1]})
    assert len(r.json()["events"]) == 20
    assert r["Server-Timing"].startswith("live;dur=")
