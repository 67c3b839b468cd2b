"""SAM2 refinement jobs: valid polygons in EPSG:4326, versions bumped, stale edits respected."""

import pytest

from annotate.models import Annotation, Detection, DetectionSource, DetectionStatus
from gpu_tasks import runtime
from gpu_tasks.models import JobStatus
from gpu_tasks.services import refine_job_run, refine_job_start, search_job_run, search_job_start
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
        job = search_job_start(scene=scene, user=manager, role="manager", params={}, enqueue=False)
        job = search_job_run(job_id=job.pk)
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert scene.detections.count() >= 2
        yield scene
    runtime.unload()


def test_refine_turns_every_proposed_box_into_a_valid_polygon_or_keeps_it(searched_scene, manager):
    scene = searched_scene
    before = {d.pk: d for d in scene.detections.all()}
    with runtime.use_embedder(ColourEmbedder()):
        job = refine_job_start(scene=scene, user=manager, role="manager", enqueue=False)
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


def test_an_edit_made_while_refining_wins(searched_scene, manager, monkeypatch):
    scene = searched_scene
    target = scene.detections.order_by("-score").first()
    from gpu_tasks.inference import refiner as refiner_module

    real = refiner_module.refine_boxes

    def refine_then_reviewer_edits(**kwargs):
        out = real(**kwargs)
        # A reviewer accepts the detection while SAM2 was busy: their version wins.
        Detection.objects.filter(pk=target.pk).update(status=DetectionStatus.ACCEPTED, version=target.version + 1)
        return out

    # The service imports refine_boxes from the module at call time, so it gets the wrapper.
    monkeypatch.setattr(refiner_module, "refine_boxes", refine_then_reviewer_edits)
    job = refine_job_start(scene=scene, user=manager, role="manager", detection_ids=[target.pk], enqueue=False)
    job = refine_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    target.refresh_from_db()
    assert target.status == DetectionStatus.ACCEPTED and target.version == 2
    assert target.source == DetectionSource.SEARCH
    assert job.result["skipped_stale"] + job.result["kept_box"] == 1


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
    job = refine_job_start(scene=searched_scene, user=manager, role="manager", enqueue=False)
    job = refine_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert "facebook/sam2.1-hiera-tiny" in job.error and "fetch_models" in job.error
