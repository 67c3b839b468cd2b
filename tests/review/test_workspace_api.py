"""Review workspace back end: spatial queue, score histogram, editable examples, the remembered class."""

import math
import random

import pytest
from django.test import Client
from django.test.signals import template_rendered

from annotate.models import (
    Annotation,
    Detection,
    DetectionSource,
    DetectionStatus,
    Membership,
    Role,
)
from annotate.services import membership_set
from review import selectors
from tests.conftest import client_for, make_user
from tests.review.conftest import box, geojson_box


def detection_at(scene, cls, lon, lat, score=0.5, status=DetectionStatus.PROPOSED) -> Detection:
    g = box(lon, lat, lon + 0.0004, lat + 0.0004)
    return Detection.objects.create(
        scene=scene, object_class=cls, geometry=g, bbox=g, score=score, status=status, source=DetectionSource.SEARCH
    )


def queue_ids(client, scene, **query) -> list[int]:
    r = client.get(f"/api/scenes/{scene.pk}/review-queue/", query)
    assert r.status_code == 200, r.content
    assert r.json()["order"] == query.get("order", "score")
    return [f["id"] for f in r.json()["detections"]["features"]]


def centre(det: Detection) -> tuple[float, float]:
    c = det.geometry.centroid
    return c.x, c.y


def path_length(dets: list[Detection]) -> float:
    """Degrees travelled from each detection to the next."""
    points = [centre(d) for d in dets]
    return sum(math.dist(a, b) for a, b in zip(points, points[1:], strict=False))


# ---- spatial queue ----


def test_spatial_queue_next_and_previous_are_consistent_and_moves_short(rapi, scene, classes):
    rng = random.Random(7)
    grid = [
        detection_at(scene, classes[0], 10.005 + 0.009 * i, 50.005 + 0.009 * j, score=rng.random())
        for i in range(10) for j in range(10)
    ]
    by_id = {d.pk: d for d in grid}
    whole = queue_ids(rapi, scene, order="spatial", limit=100)
    assert sorted(whole) == sorted(by_id)  # every proposed detection once
    # Next, one at a time from the head, walks the same order; previous walks it back.
    walked = [queue_ids(rapi, scene, order="spatial")[0]]
    while nxt := queue_ids(rapi, scene, order="spatial", after=walked[-1]):
        walked.append(nxt[0])
    assert walked == whole
    for before, here in zip(whole, whole[1:], strict=False):
        assert queue_ids(rapi, scene, order="spatial", after=here, direction="previous") == [before]
    assert queue_ids(rapi, scene, order="spatial", after=whole[0], direction="previous") == []
    # The point of the order: map moves are short (a Z-order walk vs the score order over the same objects).
    spatial = path_length([by_id[i] for i in whole])
    by_score = path_length([by_id[i] for i in queue_ids(rapi, scene, order="score", limit=100)])
    assert spatial < by_score / 3, (spatial, by_score)
    steps = [math.dist(centre(by_id[a]), centre(by_id[b])) for a, b in zip(whole, whole[1:], strict=False)]
    assert sorted(steps)[len(steps) // 2] == pytest.approx(0.009, rel=0.01)  # the median step is one grid cell


def test_spatial_queue_goes_on_after_the_detection_just_decided(rapi, scene, classes):
    dets = [detection_at(scene, classes[0], 10.01 + 0.01 * i, 50.05) for i in range(5)]
    order = queue_ids(rapi, scene, order="spatial", limit=10)
    current = order[1]
    det = Detection.objects.get(pk=current)
    r = rapi.post(f"/api/detections/{current}/review/",
                  {"verdict": "accepted", "expected_version": det.version, "client_id": "sp1"}, format="json")
    assert r.status_code == 200
    assert queue_ids(rapi, scene, order="spatial", after=current) == [order[2]]
    assert queue_ids(rapi, scene, order="spatial", after=current, direction="previous") == [order[0]]
    assert current not in queue_ids(rapi, scene, order="spatial", limit=10)
    # A reshape moves the object, and the key with it (the database computes it).
    moved = Detection.objects.get(pk=order[0])
    Detection.objects.filter(pk=moved.pk).update(geometry=box(10.095, 50.095, 10.0955, 50.0955))
    assert queue_ids(rapi, scene, order="spatial", limit=10)[-1] == moved.pk
    assert len(dets) == 5


def test_score_queue_keyset_matches_the_full_order(rapi, scene, classes):
    scores = [0.9, 0.5, 0.5, 0.5, None, 0.0, 0.75, 1.0]
    dets = [detection_at(scene, classes[0], 10.01 + 0.005 * i, 50.02, score=s) for i, s in enumerate(scores)]
    expected = [d.pk for d in sorted(dets, key=lambda d: (-(d.score or 0.0), d.pk))]
    assert queue_ids(rapi, scene, limit=20) == expected
    walked = [queue_ids(rapi, scene)[0]]
    while nxt := queue_ids(rapi, scene, after=walked[-1]):
        walked.append(nxt[0])
    assert walked == expected
    assert queue_ids(rapi, scene, after=expected[-1], direction="previous", limit=20) == expected[-2::-1]
    assert selectors.review_queue(scene=scene, order="score", limit=3) == [Detection.objects.get(pk=i)
                                                                         for i in expected[:3]]


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.0, 1.0])
def test_uncertainty_queue_matches_the_exact_order(scene, classes, threshold):
    rng = random.Random(3)
    # Clustered, tied and missing scores, and gaps wider than the first search window.
    scores = [round(rng.random(), 2) for _ in range(40)] + [0.5] * 5 + [None] * 3 + [0.0, 1.0, 0.95, 0.05]
    dets = [detection_at(scene, classes[0], 10.01 + 0.001 * i, 50.02, score=s) for i, s in enumerate(scores)]
    expected = [d.pk for d in sorted(dets, key=lambda d: (abs((d.score or 0.0) - threshold), d.pk))]

    def queue(**kw):
        return [d.pk for d in selectors.review_queue(scene=scene, order="uncertainty", threshold=threshold, **kw)]

    assert queue(limit=100) == expected
    walked = [queue()[0]]
    while nxt := queue(after=Detection.objects.get(pk=walked[-1])):
        walked.append(nxt[0])
    assert walked == expected
    for i in (1, 7, 20, len(expected) - 1):
        after = Detection.objects.get(pk=expected[i])
        assert queue(after=after, backwards=True, limit=100) == expected[:i][::-1]
        assert queue(after=after, limit=5) == expected[i + 1:i + 6]


# ---- score histogram ----


def test_score_histogram_counts_and_matches_bulk_review(rapi, api, scene, classes, project):
    a, b = classes
    for score in (0.0, 0.01, 0.05, 0.149, 0.15, 0.5, 0.99, 1.0, None):
        detection_at(scene, a, 10.01, 50.01, score=score)
    detection_at(scene, a, 10.01, 50.01, score=0.7, status=DetectionStatus.ACCEPTED)
    detection_at(scene, b, 10.01, 50.01, score=0.2, status=DetectionStatus.REJECTED)
    detection_at(scene, b, 10.01, 50.01, score=0.2, status=DetectionStatus.REJECTED)
    detection_at(scene, b, 10.01, 50.01, score=0.35)
    r = rapi.get(f"/api/scenes/{scene.pk}/score-histogram/")
    assert r.status_code == 200
    body = r.json()
    assert body["bins"] == 20
    assert [c["object_class"] for c in body["classes"]] == list(project.classes.order_by("index").values_list(
        "id", flat=True))  # every class, zero or not
    got = {c["object_class"]: c for c in body["classes"]}
    expect_a = [0] * 20
    for bin_ in (0, 0, 1, 2, 3, 10, 19, 19, 0):  # None counts as 0; 1.0 joins the last bin
        expect_a[bin_] += 1
    assert got[a.pk]["proposed"] == expect_a
    assert (got[a.pk]["accepted"], got[a.pk]["rejected"], got[a.pk]["class_name"]) == (1, 0, a.name)
    assert got[b.pk]["proposed"][7] == 1 and sum(got[b.pk]["proposed"]) == 1
    assert (got[b.pk]["accepted"], got[b.pk]["rejected"]) == (0, 2)
    # "N shown above this score" from the bins equals what bulk accept by that score takes.
    edge = 3
    shown = sum(got[a.pk]["proposed"][edge:])
    r = api.post(f"/api/scenes/{scene.pk}/detections/bulk-review/",  # bulk decisions are a manager's
                 {"verdict": "accepted", "client_id": "h1", "class": a.pk, "score_min": 0.15}, format="json")
    assert r.status_code == 200 and r.json()["count"] == shown == 4
    after = {c["object_class"]: c for c in rapi.get(f"/api/scenes/{scene.pk}/score-histogram/").json()["classes"]}
    assert sum(after[a.pk]["proposed"][edge:]) == 0 and after[a.pk]["accepted"] == 5
    # "Reject all shown below": the bins under the edge, a missing score counted as 0 on both sides.
    below = sum(after[a.pk]["proposed"][:2])
    r = api.post(f"/api/scenes/{scene.pk}/detections/bulk-review/",
                 {"verdict": "rejected", "client_id": "h2", "class": a.pk, "score_max": 0.1}, format="json")
    assert r.status_code == 200 and r.json()["count"] == below == 4
    last = {c["object_class"]: c for c in rapi.get(f"/api/scenes/{scene.pk}/score-histogram/").json()["classes"]}
    assert last[a.pk]["proposed"] == [0, 0, 1] + [0] * 17 and last[a.pk]["rejected"] == 4


def test_score_histogram_is_404_for_another_project(scene, outsider, other_project):
    r = client_for(outsider).get(f"/api/scenes/{scene.pk}/score-histogram/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# ---- editable examples ----


@pytest.fixture
def example(scene, classes, manager):
    return Annotation.objects.create(
        scene=scene, object_class=classes[0], geometry=box(10.02, 50.02, 10.03, 50.03), author=manager
    )


def test_patch_example_class_and_geometry(api, example, classes):
    url = f"/api/annotations/{example.pk}/"
    r = api.patch(url, {"object_class": classes[1].pk}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["properties"]["object_class"] == classes[1].pk
    shape = geojson_box(10.04, 50.04, 10.05, 50.06)
    r = api.patch(url, {"geometry": shape}, format="json")
    assert r.status_code == 200
    example.refresh_from_db()
    assert example.object_class_id == classes[1].pk
    assert example.geometry.extent == pytest.approx((10.04, 50.04, 10.05, 50.06))
    # A Feature, as the map sends it, works too.
    feature = {"type": "Feature", "geometry": geojson_box(10.01, 50.01, 10.02, 50.02),
               "properties": {"object_class": classes[0].pk}}
    assert api.patch(url, feature, format="json").status_code == 200
    example.refresh_from_db()
    assert example.object_class_id == classes[0].pk and example.geometry.extent[0] == pytest.approx(10.01)


def test_patch_example_refuses_bad_input(api, example, other_project):
    url = f"/api/annotations/{example.pk}/"
    bowtie = {"type": "Polygon", "coordinates": [[[10.02, 50.02], [10.03, 50.03], [10.03, 50.02], [10.02, 50.03],
                                                  [10.02, 50.02]]]}
    foreign_class = other_project.classes.first()
    for body in (
        {"geometry": bowtie},
        {"geometry": geojson_box(20.0, 10.0, 20.1, 10.1)},  # off the scene
        {"geometry": {"type": "Point", "coordinates": [10.02, 50.02]}},
        {"geometry": {"type": "Polygon", "coordinates": [[[10.02, 50.02, 5], [10.03, 50.02, 5], [10.03, 50.03, 5],
                                                          [10.02, 50.02, 5]]]}},
        {"object_class": foreign_class.pk},
        {"object_class": "kiln"},
        {},
    ):
        r = api.patch(url, body, format="json")
        assert r.status_code == 400, (body, r.content)
        assert r.json()["error"]["code"] == "invalid"
    example.refresh_from_db()
    assert example.geometry.extent == pytest.approx((10.02, 50.02, 10.03, 50.03))
    # No oracle: another project's class and a missing one answer alike.
    foreign = api.patch(url, {"object_class": foreign_class.pk}, format="json").json()["error"]["message"]
    missing = api.patch(url, {"object_class": 987_654_321}, format="json").json()["error"]["message"]
    assert foreign == missing


def test_patch_example_needs_the_annotate_role(example, classes, viewer, project, outsider, other_project):
    url = f"/api/annotations/{example.pk}/"
    r = client_for(viewer).patch(url, {"object_class": classes[1].pk}, format="json")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    annotator = make_user("anna")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    # Someone else's example: like delete, only its author or a manager.
    assert client_for(annotator).patch(url, {"object_class": classes[1].pk}, format="json").status_code == 403
    own = Annotation.objects.create(scene=example.scene, object_class=classes[0], author=annotator,
                                    geometry=box(10.06, 50.06, 10.07, 50.07))
    r = client_for(annotator).patch(f"/api/annotations/{own.pk}/", {"object_class": classes[1].pk}, format="json")
    assert r.status_code == 200
    assert client_for(outsider).patch(url, {"object_class": classes[1].pk}, format="json").status_code == 404
    example.refresh_from_db()
    assert example.object_class_id == classes[0].pk


def test_an_edited_examples_old_vector_is_not_used(api, example, scene, project, classes):
    """The object index keys vectors by owner and geometry digest: an edited outline's old vector is left out."""
    from gpu_tasks.models import ObjectEmbedding
    from gpu_tasks.object_index import class_prototypes, geometry_digest

    other = Annotation.objects.create(scene=scene, object_class=classes[0], geometry=box(10.06, 50.06, 10.07, 50.07))
    for i, ann in enumerate(Annotation.objects.filter(pk__in=[example.pk, other.pk]).only("id", "geometry")):
        ObjectEmbedding.objects.create(project=project, scene=scene, annotation=ann, space_key="k", dim=4,
                                       vector=[1.0, float(i), 0.0, 0.0], geometry_digest=geometry_digest(ann.geometry))

    def positives():
        _, counts = class_prototypes(project=project, space_key="k", dim=4, classes=classes)
        return [counts[c.pk]["positives"] for c in classes]

    assert positives() == [2, 0]
    # A class change needs no new vector (the class is read through the example).
    url = f"/api/annotations/{example.pk}/"
    assert api.patch(url, {"object_class": classes[1].pk}, format="json").status_code == 200
    assert positives() == [1, 1]
    assert api.patch(url, {"geometry": geojson_box(10.04, 50.04, 10.05, 50.05)}, format="json").status_code == 200
    assert positives() == [1, 0]


# ---- the remembered class ----


def test_me_endpoint_remembers_the_class_per_user_and_project(viewer, manager, project, classes, other_project):
    me = f"/api/projects/{project.pk}/me/"
    client = client_for(viewer)
    assert client.get(me).json() == {"role": "viewer", "last_class": None}
    r = client.patch(me, {"last_class": classes[1].pk}, format="json")
    assert r.status_code == 200 and r.json() == {"role": "viewer", "last_class": classes[1].pk}
    assert client.get(me).json()["last_class"] == classes[1].pk
    assert client_for(manager).get(me).json() == {"role": "manager", "last_class": None}  # per user
    r = client.patch(me, {"last_class": other_project.classes.first().pk}, format="json")
    assert r.status_code == 400 and "No such class" in r.json()["error"]["message"]
    assert r.json() == client.patch(me, {"last_class": 987_654_321}, format="json").json()
    assert client.patch(me, {"last_class": "x"}, format="json").status_code == 400
    assert client.patch(me, {"role": "manager"}, format="json").status_code == 400  # last_class is required
    assert client.patch(me, {"last_class": None}, format="json").json()["last_class"] is None
    assert Membership.objects.get(user=viewer, project=project).role == Role.VIEWER
    # Not a member: 404, as the project itself is.
    assert client.get(f"/api/projects/{other_project.pk}/me/").status_code == 404
    assert client.get(f"/api/projects/{10**30}/me/").status_code == 404
    assert client.patch(f"/api/projects/{project.pk}/me/", {"last_class": 10**30}, format="json").status_code == 400


def test_remembered_class_forgotten_when_the_class_goes(viewer, project):
    cls = project.classes.create(name="Temporary", index=99)
    client_for(viewer).patch(f"/api/projects/{project.pk}/me/", {"last_class": cls.pk}, format="json")
    cls.delete()
    assert Membership.objects.get(user=viewer, project=project).last_class_id is None


def test_scene_page_gets_the_remembered_class(viewer, project, scene, classes):
    client_for(viewer).patch(f"/api/projects/{project.pk}/me/", {"last_class": classes[1].pk}, format="json")
    contexts = []

    def grab(sender, context, **kwargs):
        contexts.append(context)

    page = Client(raise_request_exception=False)
    page.force_login(viewer)
    template_rendered.connect(grab)
    try:
        # The page renders whether or not the front end is built here; the context is what this test checks.
        page.get(f"/scenes/{scene.pk}/")
    finally:
        template_rendered.disconnect(grab)
    scene_contexts = [c for c in contexts if "last_class_id" in c]
    assert scene_contexts and scene_contexts[0]["last_class_id"] == classes[1].pk
