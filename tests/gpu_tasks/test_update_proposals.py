"""Update proposals (issue 9 §4): decisions re-rank the proposals from the cached grid, on the CPU queue.

A synthetic scene with planted objects and the deterministic colour embedder (tests/gpu_tasks/support.py): red
kilns, dark-red look-alikes (cosine ~0.75 to red) and blue ponds. The search runs inline; Update proposals runs
in a real Celery worker on the `default` queue that has no model at all.
"""

import numpy as np
import pytest
from django.contrib.gis.geos import Polygon

from annotate.models import Annotation, DetectionStatus, Role
from annotate.services import membership_set
from gpu_tasks import runtime
from gpu_tasks.embedding import grid_open
from gpu_tasks.inference.prototypes import prototype_from_polygon
from gpu_tasks.models import Job, JobKind, JobStatus, ObjectEmbedding, PatchGrid
from gpu_tasks.object_index import geometry_digest, object_vectors_sync, polygon_px
from gpu_tasks.services import embed_job_submit, requery_job_run, requery_job_submit, search_job_run, search_job_submit
from gpu_tasks.visual_search import _polygons_px
from review.services import detection_review
from tests.conftest import client_for, make_user
from tests.gpu_tasks.conftest import wait_for_job
from tests.gpu_tasks.support import (
    BACKGROUND,
    BLUE,
    DARK_RED,
    RED,
    ColourEmbedder,
    polygon_centre_px,
    px_box_to_polygon,
)
from tests.rasters import write_tif

SCENE_PX = 1036  # tile seams at 462 and 868 px (see support.py); every object below keeps clear of them
OBJECTS = {
    "red_a": (RED, (84, 84, 140, 140)),  # the kiln example
    "red_b": (RED, (700, 140, 756, 196)),
    "red_c": (RED, (140, 560, 196, 616)),
    "look_1": (DARK_RED, (600, 500, 656, 556)),
    "look_2": (DARK_RED, (300, 300, 356, 356)),
    "look_3": (DARK_RED, (560, 700, 616, 756)),
    "look_4": (DARK_RED, (900, 380, 956, 436)),
    "blue_a": (BLUE, (700, 900, 756, 956)),  # the pond example
    "blue_b": (BLUE, (140, 900, 196, 956)),
}
LOOKALIKES = ["look_1", "look_2", "look_3", "look_4"]
REJECTED = DetectionStatus.REJECTED


def centre(name):
    x0, y0, x1, y1 = OBJECTS[name][1]
    return (x0 + x1) / 2, (y0 + y1) / 2


def lookalike_scene(path):
    """The synthetic 1 m UTM scene with OBJECTS painted on grass (a little noise)."""
    data = np.empty((3, SCENE_PX, SCENE_PX), dtype=np.uint8)
    for band, value in enumerate(BACKGROUND):
        data[band] = value
    rng = np.random.default_rng(7)
    data = np.clip(data.astype(np.int16) + rng.integers(-6, 7, size=data.shape), 0, 255).astype(np.uint8)
    for colour, (x0, y0, x1, y1) in OBJECTS.values():
        for band, value in enumerate(colour):
            data[band, y0:y1, x0:x1] = value
    return write_tif(path, data, photometric="RGB")


@pytest.fixture
def scene(tmp_path, ingested):
    scene = ingested(lookalike_scene(tmp_path / "lookalikes.tif"))
    scene.stretch = [[0.0, 255.0]] * len(scene.stretch)  # as is: the colours are what the embedder sees
    scene.save(update_fields=["stretch"])
    return scene


@pytest.fixture
def reviewer(project):
    user = make_user("reviewer")
    membership_set(project=project, user=user, role=Role.REVIEWER)
    return user


def example(scene, user, class_name, name):
    return Annotation.objects.create(
        scene=scene,
        object_class=scene.project.classes.get(name=class_name),
        author=user,
        geometry=px_box_to_polygon(scene, OBJECTS[name][1], inset=8),
    )


def searched(scene, manager):
    """Examples of both classes and one inline search (which embeds the grid with the colour embedder)."""
    example(scene, manager, "Brick Kiln", "red_a")
    example(scene, manager, "Pond-1", "blue_a")
    with runtime.use_embedder(ColourEmbedder()):
        job = search_job_submit(scene=scene, user=manager, role="manager", params={}, enqueue=False).job
        job = search_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def proposal_at(scene, name, tol_px=20.0):
    """The proposed detection on a planted object, or None."""
    for det in scene.detections.filter(status=DetectionStatus.PROPOSED):
        cx, cy = polygon_centre_px(scene, det.geometry)
        if np.hypot(cx - centre(name)[0], cy - centre(name)[1]) <= tol_px:
            return det
    return None


def proposed_names(scene):
    return {name for name in OBJECTS if proposal_at(scene, name) is not None}


@pytest.mark.slow
@pytest.mark.worker
def test_two_rejections_then_update_removes_the_lookalikes_on_the_cpu_worker(
    start_worker, scene, manager, reviewer, tmp_path
):
    search = searched(scene, manager)
    assert proposed_names(scene) == {"red_b", "red_c", *LOOKALIKES, "blue_b"}, "the look-alikes are proposed at first"

    # Two rejections of look-alikes and one acceptance, as a reviewer makes them.
    decided = {}
    for name, verdict in (("look_1", REJECTED), ("look_2", REJECTED), ("red_b", DetectionStatus.ACCEPTED)):
        det = proposal_at(scene, name)
        detection_review(detection=det, actor=reviewer, verdict=verdict, expected_version=det.version)
        det.refresh_from_db()
        decided[name] = (det.pk, det.status, det.version, det.geometry.wkt)

    # A long job occupies the gpu queue: no gpu worker exists at all, so it never leaves the queue.
    blocker = embed_job_submit(scene=scene, user=manager, role="manager", scale=2.0).job
    api = client_for(reviewer)
    first = api.post(f"/api/scenes/{scene.pk}/update-proposals/", {}, format="json")
    assert first.status_code == 202, first.content
    body = first.json()
    assert body["kind"] == "requery" and body["status"] == "queued"
    # The last search's parameters, on the grid it used.
    grid = PatchGrid.objects.get(scene=scene)
    assert body["params"]["grid_id"] == grid.pk and body["params"]["scale"] == 1.0
    assert body["params"]["default_threshold"] == search.params["default_threshold"]
    # A second press while it is queued is the same job.
    again = api.post(f"/api/scenes/{scene.pk}/update-proposals/", format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"]

    # The CPU worker has no model on disk: loading the backbone would fail the job.
    worker = start_worker("default", DINO_MODEL="missing/no-such-model", MODEL_DIR=str(tmp_path / "no-models"))
    job = wait_for_job(body["id"], timeout_s=90)
    if job.status != JobStatus.SUCCEEDED:
        worker.terminate()
        raise AssertionError((job.error, worker.communicate(timeout=30)[0][-4000:]))
    assert Job.objects.get(pk=blocker.pk).status == JobStatus.QUEUED  # still waiting for a gpu worker
    assert job.result["requery"] is True
    assert job.result["examples"]["Brick Kiln"] == {"positives": 2, "negatives": 2}
    assert {"object_vectors", "similarity", "components", "save_detections", "total"} <= set(job.result["timings"])

    # The look-alikes of the rejected ones are gone; the true kilns and the pond stay proposed.
    assert proposed_names(scene) == {"red_c", "blue_b"}
    assert not scene.detections.filter(job=search, status=DetectionStatus.PROPOSED).exists()
    assert set(scene.detections.filter(status=DetectionStatus.PROPOSED).values_list("job_id", flat=True)) == {job.pk}
    # Reviewed detections untouched: same row, status, version and shape.
    for pk, status, version, wkt in decided.values():
        det = scene.detections.get(pk=pk)
        assert (det.status, det.version, det.geometry.wkt) == (status, version, wkt)


def test_without_a_cached_grid_the_api_answers_409_saying_what_to_do(scene, manager, reviewer, viewer):
    example(scene, manager, "Brick Kiln", "red_a")
    response = client_for(reviewer).post(f"/api/scenes/{scene.pk}/update-proposals/", {}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_cached_grid"
    assert error["message"].startswith("Run a search on this scene first")
    assert not Job.objects.filter(kind=JobKind.REQUERY).exists()
    # A viewer may not ask at all.
    assert client_for(viewer).post(f"/api/scenes/{scene.pk}/update-proposals/", {}, format="json").status_code == 403


def test_given_fields_replace_the_last_searchs_and_bad_input_is_a_clear_400(scene, manager, reviewer):
    searched(scene, manager)
    kiln = scene.project.classes.get(name="Brick Kiln")
    start = requery_job_submit(
        scene=scene, user=reviewer, role="reviewer", overrides={"classes": [kiln.pk]}, enqueue=False
    )
    params = start.job.params
    assert params["classes"] == [kiln.pk] and params["default_threshold"] == 0.5 and params["scale"] == 1.0
    pond_before = proposal_at(scene, "blue_b")
    job = requery_job_run(job_id=start.job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert list(job.result["per_class"]) == ["Brick Kiln"]
    # Only kiln proposals were replaced: the pond proposal is the very same row.
    assert proposal_at(scene, "blue_b").pk == pond_before.pk

    api = client_for(reviewer)
    for body in ({"classes": [10**9]}, {"classes": "kilns"}, {"default_threshold": 7}, {"scale": 2.0}, [1, 2]):
        response = api.post(f"/api/scenes/{scene.pk}/update-proposals/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert response.json()["error"]["message"]


def test_a_reviewer_may_cancel_and_retry_an_update(scene, manager, reviewer, django_capture_on_commit_callbacks):
    searched(scene, manager)
    job = requery_job_submit(scene=scene, user=reviewer, role="reviewer", enqueue=False).job
    api = client_for(reviewer)
    cancelled = api.post(f"/api/jobs/{job.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    with django_capture_on_commit_callbacks(execute=True):  # the eager app runs the retried job inline
        retried = api.post(f"/api/jobs/{job.pk}/retry/")
    assert retried.status_code == 202, retried.content
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.result["requery"] is True, job.error


def test_a_grid_removed_after_submission_fails_the_job_with_the_same_advice(scene, manager, reviewer):
    searched(scene, manager)
    job = requery_job_submit(scene=scene, user=reviewer, role="reviewer", enqueue=False).job
    PatchGrid.objects.filter(scene=scene).delete()  # as a re-ingest does
    job = requery_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("Run a search on this scene first")


@pytest.mark.parametrize("writer", ["search", "update"])
def test_new_proposals_are_indexed_as_the_object_index_would_pool_them(scene, manager, writer):
    searched(scene, manager)
    if writer == "update":  # indexed after the job succeeded, outside the proposals lock
        job = requery_job_submit(scene=scene, user=manager, role="manager", enqueue=False).job
        job = requery_job_run(job_id=job.pk)
        assert job.status == JobStatus.SUCCEEDED and "after_success" in job.result["timings"], job.error
    grid = PatchGrid.objects.get(scene=scene)
    meta, tokens = grid_open(grid)
    proposals = list(scene.detections.filter(status=DetectionStatus.PROPOSED))
    assert proposals
    stored = {
        e.detection_id: e for e in ObjectEmbedding.objects.filter(detection__in=proposals, space_key=grid.space_key)
    }
    assert set(stored) == {d.pk for d in proposals}
    for det in proposals:  # the same vector the polygon read back from PostGIS gives, and the same digest
        expected = prototype_from_polygon(tokens, meta, polygon_px(scene, det.geometry))
        np.testing.assert_allclose(np.asarray(stored[det.pk].vector), expected, atol=1e-6)
        assert stored[det.pk].geometry_digest == geometry_digest(det.geometry)
        assert det.bbox.equals_exact(det.geometry.envelope, 0) and det.prompt_box.equals_exact(det.geometry, 0)
    assert object_vectors_sync(scene=scene, grid=grid, meta=meta, tokens=tokens) == 0  # nothing left to pool


def test_rings_in_one_projection_call_match_one_polygon_at_a_time(scene, manager):
    outer = px_box_to_polygon(scene, (100, 100, 300, 260))
    hole = px_box_to_polygon(scene, (150, 150, 200, 200))
    polygons = [Polygon(outer[0], hole[0], srid=4326), px_box_to_polygon(scene, OBJECTS["red_b"][1])]
    for got, polygon in zip(_polygons_px(scene, polygons), polygons, strict=True):
        want = polygon_px(scene, polygon)
        assert len(got) == len(want)
        for ring_got, ring_want in zip(got, want, strict=True):
            np.testing.assert_array_equal(ring_got, np.asarray(ring_want))
