"""SAM2 refinement jobs: valid polygons in EPSG:4326, versions bumped, stale edits respected."""

import pytest

from annotate.models import Annotation, Detection, DetectionSource, DetectionStatus
from gpu_tasks import runtime
from gpu_tasks.models import JobStatus
from gpu_tasks.services import refine_job_run, refine_job_submit, search_job_run, search_job_submit
from tests.conftest import client_for
from tests.gpu_tasks.support import PLANTED, ColourEmbedder, planted_scene, px_box_to_polygon


@pytest.fixture
def searched_scene(tmp_path, ingested, manager, settings, random_sam2_checkpoint):
    """The planted scene after a search (deterministic embedder), with SAM2 set to random tiny weights."""
    settings.SAM2_MODEL = random_sam2_checkpoint
    runtime.unload()
    scene = ingested(planted_scene(tmp_path / "planted.tif"))
    Annotation.objects.create(
        scene=scene,
        object_class=scene.project.classes.get(name="Brick Kiln"),
        author=manager,
        geometry=px_box_to_polygon(scene, PLANTED[0].box_px, inset=8),
    )
    with runtime.use_embedder(ColourEmbedder()):
        job = search_job_submit(scene=scene, user=manager, role="manager", params={}, enqueue=False).job
        job = search_job_run(job_id=job.pk)
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert scene.detections.count() >= 2
        yield scene
    runtime.unload()


def test_refine_turns_every_proposed_box_into_a_valid_polygon_or_keeps_it(searched_scene, manager):
    scene = searched_scene
    before = {d.pk: d for d in scene.detections.all()}
    with runtime.use_embedder(ColourEmbedder()):
        job = refine_job_submit(scene=scene, user=manager, role="manager", enqueue=False).job
        job = refine_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    result = job.result
    assert result["refined"] + result["kept_box"] == len(before)
    # The seeded random SAM2 gives non-empty masks here, so the polygon path is exercised (an empty
    # mask keeping its box is covered in tests/inference).
    assert result["refined"] >= 1 and result["reverified"]
    assert "sam2" in result["timings"] and "read" in result["timings"]
    for det in scene.detections.all():
        assert det.geometry.valid and det.geometry.srid == 4326 and not det.geometry.empty
        if det.source == DetectionSource.REFINE:
            assert det.version == before[det.pk].version + 1 and det.job_id == job.pk
            # The box is the polygon's envelope, and the polygon stays near the original box.
            assert det.bbox.equals_exact(det.geometry.envelope, tolerance=1e-9)
            assert det.geometry.intersects(before[det.pk].geometry.buffer(0.001))
        else:
            assert det.geometry.equals(before[det.pk].geometry) and det.version == before[det.pk].version


def refine(scene, manager, ids=None):
    job = refine_job_submit(scene=scene, user=manager, role="manager", detection_ids=ids, enqueue=False).job
    job = refine_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def test_the_top_detection_is_really_refined(searched_scene, manager):
    """The control for the stale-edit test below: without a concurrent edit this detection gets SAM2's polygon."""
    target = searched_scene.detections.order_by("-score").first()
    job = refine(searched_scene, manager, [target.pk])
    assert (job.result["refined"], job.result["kept_box"], job.result["skipped_stale"]) == (1, 0, 0)
    target.refresh_from_db()
    assert target.source == DetectionSource.REFINE and target.version == 2


def test_an_edit_made_while_refining_wins(searched_scene, manager, monkeypatch):
    scene = searched_scene
    target = scene.detections.order_by("-score").first()
    reviewer_geometry = target.geometry.buffer(-1e-6)
    from gpu_tasks.inference import refiner as refiner_module

    real = refiner_module.refine_boxes

    def refine_then_reviewer_edits(**kwargs):
        out = real(**kwargs)
        # The compare-and-swap must be what keeps the edit: SAM2 did produce an outline to write.
        assert out[0] is not None and out[0].polygons_px, "SAM2 gave no outline: the stale path would not run"
        # A reviewer reshapes and accepts the detection while SAM2 was busy: their version wins.
        Detection.objects.filter(pk=target.pk).update(
            status=DetectionStatus.ACCEPTED, geometry=reviewer_geometry, version=target.version + 1
        )
        return out

    # The service imports refine_boxes from the module at call time, so it gets the wrapper.
    monkeypatch.setattr(refiner_module, "refine_boxes", refine_then_reviewer_edits)
    job = refine(scene, manager, [target.pk])
    target.refresh_from_db()
    assert (job.result["refined"], job.result["kept_box"], job.result["skipped_stale"]) == (0, 0, 1)
    assert target.status == DetectionStatus.ACCEPTED and target.version == 2
    assert target.source == DetectionSource.SEARCH and target.geometry.equals_exact(reviewer_geometry, 1e-12)


def test_refining_twice_prompts_with_the_original_box_and_gives_the_same_outline(searched_scene, manager):
    target = searched_scene.detections.order_by("-score").first()
    box = target.prompt_box
    assert box is not None and box.equals_exact(target.geometry, 1e-12)  # the search's own box
    refine(searched_scene, manager, [target.pk])
    target.refresh_from_db()
    first_geometry, first_bbox = target.geometry, target.bbox
    assert target.source == DetectionSource.REFINE
    refine(searched_scene, manager, [target.pk])
    target.refresh_from_db()
    # Before, the second prompt was the first outline plus a margin: the outline grew with every refinement.
    assert target.version == 3 and target.prompt_box.equals_exact(box, 1e-12)
    assert target.geometry.equals_exact(first_geometry, 1e-9) and target.bbox.equals_exact(first_bbox, 1e-9)


def test_an_older_detection_without_a_prompt_box_keeps_the_box_it_was_first_refined_from(searched_scene, manager):
    target = searched_scene.detections.order_by("-score").first()
    Detection.objects.filter(pk=target.pk).update(prompt_box=None)
    box = target.bbox
    refine(searched_scene, manager, [target.pk])
    target.refresh_from_db()
    first_geometry = target.geometry
    assert target.prompt_box.equals_exact(box, 1e-12)
    refine(searched_scene, manager, [target.pk])
    target.refresh_from_db()
    assert target.prompt_box.equals_exact(box, 1e-12) and target.geometry.equals_exact(first_geometry, 1e-9)


def test_search_after_refine_replaces_the_refined_proposals(searched_scene, manager):
    scene = searched_scene
    proposed = scene.detections.filter(status=DetectionStatus.PROPOSED)
    accepted = proposed.order_by("score").first()
    Detection.objects.filter(pk=accepted.pk).update(status=DetectionStatus.ACCEPTED)
    before = proposed.count()
    refined = refine(scene, manager)
    assert refined.result["refined"] >= 1
    with runtime.use_embedder(ColourEmbedder()):
        job = search_job_submit(scene=scene, user=manager, role="manager", params={}, enqueue=False).job
        job = search_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    # Every unreviewed proposal went, refined or not (before: replaced 0, refined outlines kept beside new boxes).
    assert job.result["replaced"] == before
    left = scene.detections.filter(status=DetectionStatus.PROPOSED)
    assert set(left.values_list("job_id", flat=True)) == {job.pk}
    assert left.count() == job.result["detections"]
    # The reviewed one stays as it was and is not proposed again.
    assert scene.detections.filter(pk=accepted.pk, status=DetectionStatus.ACCEPTED).exists()


def test_refine_one_detection_through_the_api(searched_scene, manager, outsider, django_capture_on_commit_callbacks):
    scene = searched_scene
    det = scene.detections.first()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(manager).post(f"/api/detections/{det.pk}/refine/")
    assert response.status_code == 202, response.content
    job = client_for(manager).get(f"/api/jobs/{response.json()['id']}/").json()
    assert job["kind"] == "refine" and job["status"] == "succeeded", job
    assert job["params"]["detection_ids"] == [det.pk]
    assert client_for(outsider).post(f"/api/detections/{det.pk}/refine/").status_code == 404


def test_missing_sam2_checkpoint_fails_fast_with_the_fix(searched_scene, manager, settings, tmp_path):
    settings.SAM2_MODEL = "facebook/sam2.1-hiera-tiny"
    settings.MODEL_DIR = tmp_path / "no-models"
    runtime.unload()
    job = refine_job_submit(scene=searched_scene, user=manager, role="manager", enqueue=False).job
    job = refine_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert "facebook/sam2.1-hiera-tiny" in job.error and "fetch_models" in job.error
