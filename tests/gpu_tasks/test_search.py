"""Visual search end to end on the real PostGIS: a synthetic scene with planted objects and a deterministic embedder."""

import numpy as np
import pytest

from annotate.models import Annotation, Detection, DetectionSource, DetectionStatus
from gpu_tasks import runtime
from gpu_tasks.models import JobStatus, PatchGrid
from gpu_tasks.object_index import polygon_px
from gpu_tasks.services import embed_job_run, embed_job_submit, job_cancel, search_job_run, search_job_submit
from tests.conftest import client_for
from tests.gpu_tasks.support import PLANTED, ColourEmbedder, planted_scene, polygon_centre_px, px_box_to_polygon

BY_NAME = {p.name: p for p in PLANTED}


@pytest.fixture
def embedder():
    """The deterministic colour embedder behind gpu_tasks.runtime.embedder()."""
    emb = ColourEmbedder()
    with runtime.use_embedder(emb):
        yield emb


@pytest.fixture
def scene(tmp_path, ingested):
    scene = ingested(planted_scene(tmp_path / "planted.tif"))
    # Shown (and embedded) as is: the grass-dominated synthetic scene would otherwise get a narrow-range stretch
    # that saturates the colours this test's similarities are computed from.
    scene.stretch = [[0.0, 255.0]] * len(scene.stretch)
    scene.save(update_fields=["stretch"])
    return scene


def cls(project, name):
    return project.classes.get(name=name)


def draw_example(scene, manager, class_name, planted_name, inset=8):
    """An example polygon drawn a little inside a planted object, as a person would."""
    return Annotation.objects.create(
        scene=scene,
        object_class=cls(scene.project, class_name),
        author=manager,
        geometry=px_box_to_polygon(scene, BY_NAME[planted_name].box_px, inset=inset),
    )


def run_search(scene, manager, **params):
    job = search_job_submit(scene=scene, user=manager, role="manager", params=params, enqueue=False).job
    job = search_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def found_centres(scene, class_name):
    dets = scene.detections.filter(object_class__name=class_name, status=DetectionStatus.PROPOSED)
    return [polygon_centre_px(scene, d.geometry) for d in dets]


def nearest(centres, target, tol_px=20.0):
    """How many of the centres lie within tol_px of the target (pixel distance)."""
    return sum(1 for c in centres if np.hypot(c[0] - target[0], c[1] - target[1]) <= tol_px)


def test_search_finds_planted_objects_at_their_map_coordinates(scene, manager, embedder):
    draw_example(scene, manager, "Brick Kiln", "red_a")
    draw_example(scene, manager, "Pond-1", "blue_a")
    job = run_search(scene, manager, classes=[cls(scene.project, "Brick Kiln").pk, cls(scene.project, "Pond-1").pk])

    kilns = found_centres(scene, "Brick Kiln")
    ponds = found_centres(scene, "Pond-1")
    # The other red objects, including the one across the tile seam, are found once each (no duplicates
    # from overlapping tiles, NMS within the class); the examples themselves are not proposed again.
    assert nearest(kilns, BY_NAME["red_b"].centre_px) == 1
    assert nearest(kilns, BY_NAME["red_seam"].centre_px) == 1
    assert nearest(kilns, BY_NAME["red_a"].centre_px) == 0
    assert nearest(ponds, BY_NAME["blue_b"].centre_px) == 1
    assert nearest(ponds, BY_NAME["blue_a"].centre_px) == 0
    # Nothing is proposed on the grass, and blue is never called a kiln.
    assert nearest(kilns, BY_NAME["blue_b"].centre_px) == 0
    dets = list(scene.detections.all())
    assert all(d.source == DetectionSource.SEARCH and d.job_id == job.pk and d.model_key for d in dets)
    assert all(0.5 <= d.score <= 1.0 and d.geometry.valid for d in dets)
    # The seam object's box covers its whole extent (both tiles' halves stitched into one component).
    seam = min(
        dets, key=lambda d: np.hypot(*np.subtract(polygon_centre_px(scene, d.geometry), BY_NAME["red_seam"].centre_px))
    )
    assert seam.geometry.area >= px_box_to_polygon(scene, BY_NAME["red_seam"].box_px).area * 0.9
    assert set(job.result["timings"]) >= {"read", "forward", "similarity", "components", "total"}


def test_a_rejected_lookalike_becomes_a_negative(scene, manager, embedder):
    draw_example(scene, manager, "Brick Kiln", "red_a")
    run_search(scene, manager)
    lookalike = BY_NAME["lookalike"].centre_px
    assert nearest(found_centres(scene, "Brick Kiln"), lookalike) == 1, "the look-alike is proposed at first"

    det = next(d for d in scene.detections.all() if nearest([polygon_centre_px(scene, d.geometry)], lookalike))
    Detection.objects.filter(pk=det.pk).update(status=DetectionStatus.REJECTED, reviewer=manager)
    job = run_search(scene, manager)

    kilns = found_centres(scene, "Brick Kiln")
    assert nearest(kilns, lookalike) == 0  # the rejected one is not proposed again, nor anything like it
    assert nearest(kilns, BY_NAME["red_b"].centre_px) == 1  # the true kilns survive the penalty
    assert job.result["examples"]["Brick Kiln"] == {"positives": 1, "negatives": 1}
    det.refresh_from_db()
    assert det.status == DetectionStatus.REJECTED and det.version == 1  # a reviewed detection is never touched


def test_requery_uses_the_cached_grid_and_replaces_only_unreviewed_proposals(scene, manager, embedder):
    draw_example(scene, manager, "Brick Kiln", "red_a")
    first = run_search(scene, manager)
    tiles_after_first = embedder.tiles_seen
    assert tiles_after_first == 9  # 74 patches: tiles of 37 with 4-patch margins advance 29 -> 3 x 3 tiles
    accepted = scene.detections.order_by("-score").first()
    Detection.objects.filter(pk=accepted.pk).update(status=DetectionStatus.ACCEPTED)

    second = run_search(scene, manager, default_threshold=0.55)
    assert embedder.tiles_seen == tiles_after_first  # no forward pass on the second query
    assert PatchGrid.objects.filter(scene=scene).count() == 1
    assert not scene.detections.filter(job=first, status=DetectionStatus.PROPOSED).exists()
    assert scene.detections.filter(pk=accepted.pk, status=DetectionStatus.ACCEPTED).exists()
    # The accepted one is not proposed a second time on top of itself.
    centre = polygon_centre_px(scene, accepted.geometry)
    assert nearest([polygon_centre_px(scene, d.geometry) for d in scene.detections.filter(job=second)], centre) == 0


def test_embed_job_twice_runs_the_backbone_once(scene, manager, embedder):
    for _ in range(2):
        job = embed_job_submit(scene=scene, user=manager, role="manager", enqueue=False).job
        job = embed_job_run(job_id=job.pk)
        assert job.status == JobStatus.SUCCEEDED, job.error
    assert embedder.tiles_seen == 9
    assert job.result["grid"]["shape"] == [74, 74, 4]


def test_search_needs_an_example_and_says_so(scene, manager, embedder):
    job = search_job_submit(scene=scene, user=manager, role="manager", params={}, enqueue=False).job
    job = search_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert "draw at least one example polygon" in job.error


def test_examples_embedded_by_another_model_are_refused_not_mixed(scene, manager, ingested, tmp_path):
    draw_example(scene, manager, "Brick Kiln", "red_a")
    with runtime.use_embedder(ColourEmbedder(model_id="test/model-a")):
        run_search(scene, manager)
    other_scene = ingested(planted_scene(tmp_path / "second.tif"))
    # The second scene has no example of its own; the kiln example exists only in model A's vector space.
    with runtime.use_embedder(ColourEmbedder(model_id="test/model-b")):
        job = search_job_submit(scene=other_scene, user=manager, role="manager", params={}, enqueue=False).job
        job = search_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert "another model" in job.error and "test/model-a" in job.error
    assert not other_scene.detections.exists()
    # With the same model the example from the first scene serves the second.
    with runtime.use_embedder(ColourEmbedder(model_id="test/model-a")):
        run_search(other_scene, manager)
    assert nearest(found_centres(other_scene, "Brick Kiln"), BY_NAME["red_a"].centre_px) == 1


def test_cancel_stops_a_running_search_at_the_next_batch(scene, manager, monkeypatch):
    monkeypatch.setattr("gpu_tasks.services.CANCEL_POLL_S", 0.0)
    draw_example(scene, manager, "Brick Kiln", "red_a")
    job = search_job_submit(scene=scene, user=manager, role="manager", params={}, enqueue=False).job

    class CancellingEmbedder(ColourEmbedder):
        def embed_tiles(self, tiles_rgb):
            job_cancel(job=job, role="manager")
            return super().embed_tiles(tiles_rgb)

    with runtime.use_embedder(CancellingEmbedder(batch_size=1)):
        job = search_job_run(job_id=job.pk)
    assert job.status == JobStatus.CANCELLED
    assert "Cancelled at" in job.message
    assert not scene.detections.exists()
    assert not PatchGrid.objects.filter(scene=scene).exists()


def test_missing_model_fails_the_job_at_once_naming_the_fix(scene, manager, settings, tmp_path):
    settings.DINO_MODEL = "facebook/dinov2-not-fetched"
    settings.MODEL_DIR = tmp_path / "models"
    runtime.unload()
    draw_example(scene, manager, "Brick Kiln", "red_a")
    job = search_job_submit(scene=scene, user=manager, role="manager", params={}, enqueue=False).job
    job = search_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert "facebook/dinov2-not-fetched" in job.error and "fetch_models" in job.error
    assert job.result["timings"]["total"] < 5


def test_search_api_queues_a_job_and_scopes_by_project(
    scene, manager, outsider, embedder, django_capture_on_commit_callbacks
):
    draw_example(scene, manager, "Brick Kiln", "red_a")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(manager).post(
            f"/api/scenes/{scene.pk}/search/", {"default_threshold": 0.6}, format="json"
        )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    body = client_for(manager).get(f"/api/jobs/{job_id}/").json()
    assert body["status"] == "succeeded" and body["kind"] == "search" and body["progress"] == 1.0
    assert body["result"]["detections"] >= 2
    assert client_for(outsider).post(f"/api/scenes/{scene.pk}/search/", {}, format="json").status_code == 404
    assert client_for(outsider).get(f"/api/jobs/{job_id}/").status_code == 404
    bad = client_for(manager).post(f"/api/scenes/{scene.pk}/search/", {"scale": 0}, format="json")
    assert bad.status_code == 400 and "scale" in bad.json()["error"]["message"]


def test_similar_objects_ranks_the_same_kind_first(scene, manager, outsider, embedder):
    example = draw_example(scene, manager, "Brick Kiln", "red_a")
    run_search(scene, manager, classes=[cls(scene.project, "Brick Kiln").pk])
    url = f"/api/projects/{scene.project_id}/similar/?annotation={example.pk}&k=3"
    found = client_for(manager).get(url).json()
    assert len(found) >= 2
    assert all(f["similarity"] > 0.8 for f in found[:2])
    assert [f["similarity"] for f in found] == sorted((f["similarity"] for f in found), reverse=True)
    # A bbox far from every object finds nothing; another project's member gets 404.
    far = client_for(manager).get(url + "&bbox=10,10,10.001,10.001").json()
    assert far == []
    assert client_for(outsider).get(url).status_code == 404


def test_typical_object_size_comes_from_the_examples_in_this_scenes_cells(scene, manager):
    from gpu_tasks.visual_search import _object_sizes_cells

    kiln, pond = cls(scene.project, "Brick Kiln"), cls(scene.project, "Pond-1")
    draw_example(scene, manager, "Brick Kiln", "red_a", inset=8)
    draw_example(scene, manager, "Brick Kiln", "red_b", inset=4)
    draw_example(scene, manager, "Brick Kiln", "red_seam", inset=8)
    areas = []
    for name, inset in (("red_a", 8), ("red_b", 4), ("red_seam", 8)):
        x0, y0, x1, y1 = BY_NAME[name].box_px
        areas.append((x1 - x0 - 2 * inset) * (y1 - y0 - 2 * inset))
    sizes, largest = _object_sizes_cells(scene, [kiln, pond], cell_px=14.0)
    assert set(sizes) == set(largest) == {kiln.pk}  # a class with neither examples nor accepted detections has none
    assert sizes[kiln.pk] == pytest.approx(float(np.median(areas)) / 14.0**2, rel=0.02)
    # The largest example (red_b drawn 48 px = 3.4 cells wide) can touch 5 x 5 cells.
    assert largest[kiln.pk] == 25.0
    # Accepted detections count too.
    drawn = px_box_to_polygon(scene, BY_NAME["blue_b"].box_px)
    Detection.objects.create(
        scene=scene, object_class=pond, geometry=drawn, bbox=drawn.envelope, status=DetectionStatus.ACCEPTED
    )
    x0, y0, x1, y1 = BY_NAME["blue_b"].box_px
    sizes, largest = _object_sizes_cells(scene, [kiln, pond], cell_px=14.0)
    assert sizes[pond.pk] == pytest.approx((x1 - x0) * (y1 - y0) / 14.0**2, rel=0.02)
    assert largest[pond.pk] == 25.0  # exactly 4 cells wide: 5 cells it can touch


def test_a_whole_scene_look_alike_is_not_proposed_as_one_object(scene, manager, embedder):
    """Examples of a small object on a scene whose background looks like them: no scene-sized proposal."""
    grass = cls(scene.project, "Brick Kiln")
    # Two small examples on the grass: the grass everywhere becomes one component the size of the scene.
    for box in ((300, 300, 340, 340), (560, 760, 610, 800)):
        Annotation.objects.create(
            scene=scene, object_class=grass, author=manager, geometry=px_box_to_polygon(scene, box)
        )
    job = run_search(scene, manager, classes=[grass.pk])
    assert job.result["dropped_oversize"] >= 1
    # Whatever is proposed stays within the limit: 8 x the largest example's box (50 x 40 px: 5 x 4 cells touched).
    for det in scene.detections.filter(object_class=grass):
        w_px, h_px = np.ptp(np.asarray(polygon_px(scene, det.geometry)[0]), axis=0)
        assert (w_px / 14) * (h_px / 14) <= 8 * 5 * 4, (w_px, h_px)
