"""Review API: every transition, conflict-safe saves, client-id retries, undo, events, scoping and roles."""

import pytest

from annotate.models import Detection, DetectionSource, DetectionStatus, Role
from annotate.services import membership_set
from review.models import AppendOnlyError, ReviewEvent, ReviewVerb
from tests.conftest import client_for, make_user
from tests.review.conftest import box, geojson_box, make_scene


def make_detection(scene, cls, score=0.8, i=0, source=DetectionSource.SEARCH) -> Detection:
    """A proposed detection near the scene's corner."""
    g = box(10.01 + i * 0.001, 50.01, 10.0105 + i * 0.001, 50.0105)
    return Detection.objects.create(scene=scene, object_class=cls, geometry=g, bbox=g, score=score, source=source)


def review(client, det, version, cid, **extra):
    """POST a review decision."""
    body = {"verdict": "accepted", "expected_version": version, "client_id": cid, **extra}
    return client.post(f"/api/detections/{det.pk}/review/", body, format="json")


def test_accept_reject_and_fix_and_accept(rapi, reviewer, scene, classes):
    det = make_detection(scene, classes[0])
    r = review(rapi, det, 1, "c1")
    assert r.status_code == 200, r.json()
    det.refresh_from_db()
    assert (det.status, det.version, det.reviewer_id) == ("accepted", 2, reviewer.pk)
    assert det.reviewed_at is not None
    r = review(rapi, det, 2, "c2", verdict="rejected", comment="a shadow")
    assert r.status_code == 200
    ev = ReviewEvent.objects.get(client_id="c2")
    assert (ev.verb, ev.status_before, ev.status_after, ev.comment, ev.version_after) == (
        "reject", "accepted", "rejected", "a shadow", 3,
    )
    # Fix and accept: class and shape in one decision, one event.
    shape = geojson_box(10.02, 50.02, 10.03, 50.03)
    r = review(rapi, det, 3, "c3", **{"class": classes[1].pk, "geometry": shape})
    assert r.status_code == 200, r.json()
    det.refresh_from_db()
    assert (det.status, det.object_class_id, det.version) == ("accepted", classes[1].pk, 4)
    assert det.bbox.extent == pytest.approx((10.02, 50.02, 10.03, 50.03))
    ev = ReviewEvent.objects.get(client_id="c3")
    assert (ev.class_before, ev.class_after) == (classes[0].pk, classes[1].pk)
    assert ev.geometry_before.extent != ev.geometry_after.extent


def test_relabel_and_reshape(rapi, scene, classes):
    det = make_detection(scene, classes[0])
    r = rapi.post(
        f"/api/detections/{det.pk}/relabel/",
        {"class": classes[1].pk, "expected_version": 1, "client_id": "r1"}, format="json",
    )
    assert r.status_code == 200, r.json()
    assert r.json()["detection"]["properties"]["object_class"] == classes[1].pk
    r = rapi.post(
        f"/api/detections/{det.pk}/reshape/",
        {"geometry": geojson_box(10.04, 50.04, 10.05, 50.05), "expected_version": 2, "client_id": "r2"},
        format="json",
    )
    assert r.status_code == 200, r.json()
    det.refresh_from_db()
    assert (det.version, det.status) == (3, "proposed")
    assert [e.verb for e in ReviewEvent.objects.filter(detection_id=det.pk)] == ["relabel", "reshape"]


@pytest.mark.parametrize(
    "geometry, fragment",
    [
        (geojson_box(20.0, 20.0, 20.1, 20.1), "outside the scene"),
        ({"type": "Polygon", "coordinates": [[[10.01, 50.01], [10.02, 50.02], [10.02, 50.01], [10.01, 50.02],
                                              [10.01, 50.01]]]}, "invalid"),
        ({"type": "Point", "coordinates": [10.01, 50.01]}, "Polygon"),
        ({"type": "Polygon", "coordinates": [[[10.01, 50.01, 3], [10.02, 50.01, 3], [10.02, 50.02, 3],
                                              [10.01, 50.01, 3]]]}, "2D"),
    ],
)
def test_reshape_refuses_bad_geometry(rapi, scene, classes, geometry, fragment):
    det = make_detection(scene, classes[0])
    r = rapi.post(
        f"/api/detections/{det.pk}/reshape/",
        {"geometry": geometry, "expected_version": 1, "client_id": "g"}, format="json",
    )
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]
    assert not ReviewEvent.objects.exists()


def test_stale_version_is_409_with_who_changed_it(api, rapi, reviewer, scene, classes):
    det = make_detection(scene, classes[0])
    assert review(rapi, det, 1, "first").status_code == 200
    r = review(api, det, 1, "second", verdict="rejected")
    assert r.status_code == 409
    body = r.json()["error"]
    assert body["code"] == "stale_version"
    assert "rita" in body["message"]
    current = body["detail"]["current"]
    assert (current["version"], current["status"], current["reviewer"], current["reviewer_name"]) == (
        2, "accepted", reviewer.pk, "rita",
    )
    assert current["reviewed_at"]
    det.refresh_from_db()
    assert (det.status, det.version) == ("accepted", 2)
    assert ReviewEvent.objects.count() == 1


def test_retry_with_same_client_id_creates_nothing(rapi, scene, classes):
    det = make_detection(scene, classes[0])
    first = review(rapi, det, 1, "same")
    again = review(rapi, det, 1, "same")  # the retry of a request whose answer was lost
    assert again.status_code == 200
    assert again.json()["events"][0]["id"] == first.json()["events"][0]["id"]
    assert ReviewEvent.objects.count() == 1
    det.refresh_from_db()
    assert det.version == 2


def test_other_project_is_404_like_missing(rapi, outsider, other_project, scene, classes):
    foreign_scene = make_scene(other_project)
    foreign = make_detection(foreign_scene, other_project.classes.first())
    missing = review(rapi, Detection(pk=10**9), 1, "x")
    r = review(rapi, foreign, 1, "x")
    assert r.status_code == missing.status_code == 404
    assert r.json() == missing.json()
    for url in (
        f"/api/scenes/{foreign_scene.pk}/review-queue/", f"/api/scenes/{foreign_scene.pk}/events/",
        f"/api/scenes/{foreign_scene.pk}/review-progress/", f"/api/detections/{foreign.pk}/events/",
    ):
        assert rapi.get(url).status_code == 404, url
    # A class of another project is refused as unknown.
    det = make_detection(scene, classes[0])
    r = review(rapi, det, 1, "y", **{"class": other_project.classes.first().pk})
    assert r.status_code == 400 and "No such class" in r.json()["error"]["message"]


def test_viewer_may_not_decide(viewer, scene, classes):
    det = make_detection(scene, classes[0])
    client = client_for(viewer)
    r = review(client, det, 1, "v")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    r = client.post(
        f"/api/scenes/{scene.pk}/detections/bulk-review/", {"verdict": "accepted", "client_id": "b", "ids": [det.pk]},
        format="json",
    )
    assert r.status_code == 403
    assert client.get(f"/api/scenes/{scene.pk}/review-queue/").status_code == 200  # viewers may look
    det.refresh_from_db()
    assert det.version == 1 and not ReviewEvent.objects.exists()


def test_manual_create_delete_and_undo_delete(rapi, reviewer, scene, classes):
    r = rapi.post(
        f"/api/scenes/{scene.pk}/detections/manual/",
        {"class": classes[0].pk, "geometry": geojson_box(10.05, 50.05, 10.06, 50.06), "client_id": "m1"},
        format="json",
    )
    assert r.status_code == 201, r.json()
    det = Detection.objects.get(pk=r.json()["detection"]["id"])
    assert (det.status, det.source, det.score, det.reviewer_id) == ("accepted", "manual", None, reviewer.pk)
    # Retry: nothing new.
    rapi.post(
        f"/api/scenes/{scene.pk}/detections/manual/",
        {"class": classes[0].pk, "geometry": geojson_box(10.05, 50.05, 10.06, 50.06), "client_id": "m1"},
        format="json",
    )
    assert Detection.objects.filter(source="manual").count() == 1
    proposal = make_detection(scene, classes[0])
    r = rapi.delete(f"/api/detections/{proposal.pk}/manual/?expected_version=1&client_id=d0")
    assert r.status_code == 409 and "reject" in r.json()["error"]["message"]
    r = rapi.delete(f"/api/detections/{det.pk}/manual/?expected_version=1&client_id=d1")
    assert r.status_code == 200, r.json()
    assert not Detection.objects.filter(pk=det.pk).exists()
    # The history outlives the object.
    r = rapi.get(f"/api/detections/{det.pk}/events/")
    assert [e["verb"] for e in r.json()["events"]] == ["create_manual", "delete_manual"]
    r = rapi.post("/api/review/undo/", {"client_id": "u1"}, format="json")
    assert r.status_code == 200, r.json()
    restored = Detection.objects.get(pk=det.pk)
    assert (restored.status, restored.source, restored.object_class_id) == ("accepted", "manual", classes[0].pk)


def test_undo_last_decision_then_refuses_when_changed(api, rapi, scene, classes):
    det = make_detection(scene, classes[0])
    review(rapi, det, 1, "a", **{"class": classes[1].pk})
    r = rapi.post("/api/review/undo/", {"client_id": "u", "scene": scene.pk}, format="json")
    assert r.status_code == 200, r.json()
    det.refresh_from_db()
    assert (det.status, det.object_class_id, det.version) == ("proposed", classes[0].pk, 3)
    undo = ReviewEvent.objects.get(client_id="u")
    assert undo.verb == ReviewVerb.UNDO and undo.undoes.client_id == "a"
    assert ReviewEvent.objects.count() == 2  # undo is a new event, nothing deleted
    # Same client id again: the same undo, nothing new.
    assert rapi.post("/api/review/undo/", {"client_id": "u"}, format="json").json()["events"][0]["id"] == undo.pk
    # Nothing left to undo.
    r = rapi.post("/api/review/undo/", {"client_id": "u2"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "cannot_undo"
    # A decision someone else changed since cannot be undone.
    review(rapi, det, 3, "b", verdict="rejected")
    review(api, det, 4, "c")
    r = rapi.post("/api/review/undo/", {"client_id": "u3"}, format="json")
    assert r.status_code == 409
    assert r.json()["error"]["detail"]["current"]["version"] == 5
    det.refresh_from_db()
    assert det.status == "accepted"


def test_bulk_review_by_filter_and_ids_and_group_undo(api, rapi, scene, classes):
    dets = [make_detection(scene, classes[0], score=s, i=i) for i, s in enumerate((0.9, 0.8, 0.3, 0.2))]
    other_class = make_detection(scene, classes[1], score=0.95, i=9)
    url = f"/api/scenes/{scene.pk}/detections/bulk-review/"
    # Bulk decisions are a manager's (issue 10): a reviewer decides one at a time.
    refused = rapi.post(url, {"verdict": "accepted", "client_id": "b0", "class": classes[0].pk}, format="json")
    assert refused.status_code == 403 and "only managers may" in refused.json()["error"]["message"]
    assert not ReviewEvent.objects.exists()
    r = api.post(
        url, {"verdict": "accepted", "client_id": "b1", "class": classes[0].pk, "score_min": 0.5}, format="json"
    )
    assert r.status_code == 200, r.json()
    assert r.json()["count"] == 2 and sorted(r.json()["detections"]) == sorted([dets[0].pk, dets[1].pk])
    batch = r.json()["batch_id"]
    assert ReviewEvent.objects.filter(batch_id=batch).count() == 2
    # Retry: no second batch.
    assert api.post(
        url, {"verdict": "accepted", "client_id": "b1", "class": classes[0].pk, "score_min": 0.5}, format="json"
    ).json()["batch_id"] == batch
    assert ReviewEvent.objects.count() == 2
    r = api.post(url, {"verdict": "rejected", "client_id": "b2", "ids": [dets[2].pk, dets[0].pk]}, format="json")
    assert r.json()["count"] == 1  # already-reviewed ones are skipped
    # Undo the first batch as a group (named by one of its events).
    first = ReviewEvent.objects.filter(batch_id=batch).first()
    r = api.post("/api/review/undo/", {"client_id": "ub", "event": first.pk}, format="json")
    assert r.status_code == 200 and len(r.json()["events"]) == 2
    assert set(Detection.objects.filter(pk__in=[dets[0].pk, dets[1].pk]).values_list("status", flat=True)) == {
        "proposed"
    }
    other_class.refresh_from_db()
    assert other_class.status == "proposed"
    # Bad input: neither ids nor a filter, too many ids, NaN.
    assert api.post(url, {"verdict": "accepted", "client_id": "x"}, format="json").status_code == 400
    r = api.post(url, {"verdict": "accepted", "client_id": "x", "ids": list(range(1, 6002))}, format="json")
    assert r.status_code == 400 and "At most" in r.json()["error"]["message"]
    r = api.post(url, '{"verdict": "accepted", "client_id": "x", "score_min": NaN}', content_type="application/json")
    assert r.status_code == 400


def test_queue_by_score_and_uncertainty(rapi, scene, classes):
    a, b, c = (make_detection(scene, classes[0], score=s, i=i) for i, s in enumerate((0.9, 0.55, 0.2)))
    url = f"/api/scenes/{scene.pk}/review-queue/"
    assert [d["id"] for d in rapi.get(url, {"limit": 5}).json()["detections"]["features"]] == [a.pk, b.pk, c.pk]
    assert rapi.get(url, {"after": a.pk}).json()["detections"]["features"][0]["id"] == b.pk
    assert rapi.get(url, {"after": b.pk, "direction": "previous"}).json()["detections"]["features"][0]["id"] == a.pk
    r = rapi.get(url, {"order": "uncertainty", "threshold": 0.5, "limit": 3})
    assert [d["id"] for d in r.json()["detections"]["features"]] == [b.pk, c.pk, a.pk]
    review(rapi, b, 1, "q")
    assert rapi.get(url).json()["detections"]["features"][0]["id"] == a.pk
    assert rapi.get(url, {"order": "sideways"}).status_code == 400


def test_events_since_cursor_per_user_and_progress(api, manager, rapi, reviewer, scene, classes):
    d1, d2 = make_detection(scene, classes[0], i=0), make_detection(scene, classes[1], i=1)
    review(rapi, d1, 1, "e1")
    review(api, d2, 1, "e2", verdict="rejected")
    url = f"/api/scenes/{scene.pk}/events/"
    page = rapi.get(url).json()
    assert [e["client_id"] for e in page["events"]] == ["e1", "e2"]
    first_id = page["events"][0]["id"]
    assert [e["client_id"] for e in rapi.get(url, {"since": first_id}).json()["events"]] == ["e2"]
    assert [e["actor_name"] for e in rapi.get(url, {"user": manager.pk}).json()["events"]] == ["manager"]
    assert rapi.get(url, {"since": "soon"}).status_code == 400
    # One user's work across the caller's projects.
    mine = rapi.get("/api/review/events/", {"user": manager.pk}).json()["events"]
    assert [(e["client_id"], e["scene"]) for e in mine] == [("e2", scene.pk)]
    assert [e["client_id"] for e in rapi.get("/api/review/events/").json()["events"]] == ["e1", "e2"]
    progress = rapi.get(f"/api/scenes/{scene.pk}/review-progress/").json()
    assert progress["by_status"] == {"proposed": 0, "accepted": 1, "rejected": 1}
    assert progress["mine"] == {"accept": 1}
    assert {c["object_class"]: c["accepted"] for c in progress["by_class"]} == {classes[0].pk: 1, classes[1].pk: 0}


def test_events_are_append_only(rapi, scene, classes):
    det = make_detection(scene, classes[0])
    review(rapi, det, 1, "only")
    event = ReviewEvent.objects.get()
    event.comment = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        ReviewEvent.objects.filter(pk=event.pk).update(comment="x")
    with pytest.raises(AppendOnlyError):
        ReviewEvent.objects.all().delete()
    assert ReviewEvent.objects.get().comment == ""
    # Deleting the scene still removes its trail with it (cascade below the queryset).
    scene.delete()
    assert not ReviewEvent.objects.exists()


def test_stale_status_values(rapi, scene, classes):
    det = make_detection(scene, classes[0])
    assert review(rapi, det, 1, "v", verdict="proposed").status_code == 400
    assert review(rapi, det, 0, "v").status_code == 400
    assert Detection.objects.get(pk=det.pk).status == DetectionStatus.PROPOSED


def test_review_endpoints_are_in_the_openapi_schema(rapi):
    paths = rapi.get("/api/schema/?format=json").json()["paths"]
    review_body = paths["/api/detections/{id}/review/"]["post"]
    assert "requestBody" in review_body and "200" in review_body["responses"]
    for path in (
        "/api/detections/{id}/relabel/", "/api/detections/{id}/reshape/", "/api/detections/{id}/manual/",
        "/api/detections/{id}/events/", "/api/scenes/{scene_id}/detections/manual/",
        "/api/scenes/{scene_id}/detections/bulk-review/", "/api/scenes/{scene_id}/review-queue/",
        "/api/scenes/{scene_id}/events/", "/api/scenes/{scene_id}/review-progress/", "/api/review/undo/",
    ):
        assert path in paths, path


def test_group_undo_refused_whole_when_one_changed_since(api, rapi, scene, classes):
    dets = [make_detection(scene, classes[0], score=0.9, i=i) for i in range(3)]
    r = api.post(
        f"/api/scenes/{scene.pk}/detections/bulk-review/",
        {"verdict": "rejected", "client_id": "g1", "ids": [d.pk for d in dets]}, format="json",
    )
    assert r.json()["count"] == 3
    review(rapi, dets[1], 2, "later")  # a reviewer accepts one of them afterwards
    r = api.post("/api/review/undo/", {"client_id": "gu"}, format="json")
    assert r.status_code == 409
    # Nothing half-undone: the other two stay rejected, no undo event was kept.
    assert sorted(Detection.objects.filter(pk__in=[d.pk for d in dets]).values_list("status", flat=True)) == [
        "accepted", "rejected", "rejected",
    ]
    assert not ReviewEvent.objects.filter(verb=ReviewVerb.UNDO).exists()


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_decisions_one_wins(project, manager, classes):
    """Two reviewers post on the same version at the same moment: one 200, one 409 naming the winner."""
    import threading

    from django.db import connection

    scene = make_scene(project)
    det = make_detection(scene, classes[0])
    users = [manager, make_user("rita")]
    membership_set(project=project, user=users[1], role=Role.REVIEWER)
    barrier, results = threading.Barrier(2), {}

    def decide(user, verdict):
        try:
            client = client_for(user)
            barrier.wait()
            results[user.username] = review(client, det, 1, f"race-{user.username}", verdict=verdict)
        finally:
            connection.close()

    verdicts = ("accepted", "rejected")
    threads = [threading.Thread(target=decide, args=pair) for pair in zip(users, verdicts, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409]
    winner = next(name for name, r in results.items() if r.status_code == 200)
    loser = next(r for r in results.values() if r.status_code == 409)
    assert loser.json()["error"]["detail"]["current"]["reviewer_name"] == winner
    det.refresh_from_db()
    assert det.version == 2 and ReviewEvent.objects.count() == 1


def test_service_refuses_an_unknown_verdict(reviewer, manager, scene, classes):
    """The service checks the verdict itself: a caller other than the API cannot write a made-up status."""
    from annotate.errors import DomainError
    from review import services

    d = make_detection(scene, classes[0], i=0)
    with pytest.raises(DomainError, match="Unknown verdict"):
        services.detection_review(detection=d, actor=reviewer, verdict="maybe", expected_version=1)
    with pytest.raises(DomainError, match="Unknown verdict"):
        services.detections_bulk_review(scene=scene, actor=manager, verdict="maybe", detections=[d])
    d.refresh_from_db()
    assert (d.status, d.version) == (DetectionStatus.PROPOSED, 1)
    assert not ReviewEvent.objects.filter(detection_id=d.pk).exists()
