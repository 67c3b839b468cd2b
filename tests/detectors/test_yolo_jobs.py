"""YOLO training and proposals through their jobs (issue 12, sections 2, 3 and 5), offline on the CPU.

Training: a tiny real ultralytics run on a saved YOLO export of accepted kilns becomes model version v1 with its
dataset, parameters, per-epoch history and metrics; a cancel mid-training keeps the best weights as a version.
Proposals: the tiles are read at the model's ground resolution and the boxes land at the planted objects' map
coordinates; a box of the wrong class is relabelled by the cached grid's prototypes; a re-run replaces only that
model's unreviewed proposals. For the coordinates the network is replaced by a colour detector working on the very
tiles the job reads (a random network finds nothing to place); the real network runs in the training test.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
from django.conf import settings

from annotate.models import DetectionStatus, Proposer
from datasets.export_options import export_params
from datasets.export_services import definition_save
from detectors import training, yolo_proposals
from detectors.models import ModelVersion
from gpu_tasks import services as job_services
from gpu_tasks.inference import tiled_detection
from gpu_tasks.models import Job, JobStatus
from review.services import detection_review
from tests.detectors.conftest import accepted, found_names, near
from tests.gpu_tasks.test_update_proposals import LOOKALIKES

pytestmark = pytest.mark.django_db


def colour_predictor(model, *, imgsz, conf=0.25, device=None, half=False):
    """A stand-in for the network: red and blue squares as boxes in tile pixels, every one called class 0 (kiln),
    so that a blue pond arrives with the wrong class for verification to fix."""

    def predict(tiles):
        out = []
        for tile in tiles:
            r, g, b = (tile[..., i].astype(int) for i in range(3))
            mask = (((r > 180) & (g < 80)) | ((b > 150) & (r < 80))).astype(np.uint8)
            n, _labels, stats, _ = cv2.connectedComponentsWithStats(mask)
            boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:n] if area >= 16]
            out.append((np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.full(len(boxes), 0.9),
                        np.zeros(len(boxes), dtype=np.int64)))
        return out

    return predict


@pytest.fixture
def version(embedded, project, manager, tmp_path):
    """A model version trained at 2 m (the scene is 1 m) on classes Brick Kiln (index 0) and Pond-1."""
    from ultralytics import YOLO

    weights = Path(settings.DATA_DIR) / "detectors" / str(project.pk) / "v1.pt"
    weights.parent.mkdir(parents=True)
    YOLO("yolov8n.yaml").save(weights)
    classes = [{"index": c.index, "class_id": c.pk, "name": c.name} for c in project.classes.order_by("index")]
    return ModelVersion.objects.create(project=project, number=1, gsd_m=2.0, imgsz=256, classes=classes,
                                       weights=str(weights.relative_to(settings.DATA_DIR)), created_by=manager,
                                       is_current=True)


def predict(scene, manager, **data):
    job = yolo_proposals.predict_submit(scene=scene, user=manager, role="manager", data=data, enqueue=False).job
    job = yolo_proposals.predict_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def test_boxes_land_on_the_objects_and_a_wrong_class_is_relabelled(embedded, version, manager, monkeypatch):
    monkeypatch.setattr(tiled_detection, "ultralytics_predictor", colour_predictor)
    scene = embedded
    job = predict(scene, manager)
    assert job.result["scale"] == pytest.approx(scene.gsd_m / 2.0)  # 256 px tiles read from ~512 px of the scene
    yolo = list(scene.detections.filter(proposer=Proposer.YOLO))
    # red_a and blue_a are examples (known objects): not proposed again; no look-alike is red or blue enough.
    assert found_names(scene, yolo) == {"red_b", "red_c", "blue_b"}
    assert not set(LOOKALIKES) & found_names(scene, yolo)
    for det in yolo:  # one box per object, its centre within a few metres of the planted one
        assert sum(near(scene, det, n, tol_px=6) for n in ("red_b", "red_c", "blue_b")) == 1
        assert det.source == "yolo" and det.model_version_id == version.pk and det.job_id == job.pk
        assert det.proposer_scores["yolo_score"] == 0.9 and det.score == pytest.approx(0.9)
    pond = next(d for d in yolo if "blue_b" in found_names(scene, [d]))
    kiln_id = scene.project.classes.get(name="Brick Kiln").pk
    assert pond.object_class.name == "Pond-1", "the blue box the detector called a kiln is relabelled"
    assert pond.proposer_scores["yolo_class_id"] == kiln_id and pond.proposer_scores["relabelled"] is True
    assert pond.proposer_scores["verify_score"] > pond.proposer_scores["verify_score_yolo_class"]
    kilns = [d for d in yolo if d is not pond]
    assert all(d.object_class_id == kiln_id and not d.proposer_scores["relabelled"] for d in kilns)
    assert job.result["relabelled"] == 1 and job.result["verified"] is True


def test_a_rerun_replaces_only_that_models_unreviewed_proposals(embedded, version, manager, project, monkeypatch):
    monkeypatch.setattr(tiled_detection, "ultralytics_predictor", colour_predictor)
    scene = embedded
    search = set(scene.detections.filter(proposer=Proposer.SEARCH).values_list("pk", flat=True))
    other = ModelVersion.objects.create(project=project, number=2, gsd_m=1.0, imgsz=256, classes=version.classes,
                                        weights=version.weights)
    predict(scene, manager, model_version=other.pk)
    theirs = set(other.detections.values_list("pk", flat=True))
    first = predict(scene, manager)
    mine = list(version.detections.all())
    keep = next(d for d in mine if "red_b" in found_names(scene, [d]))
    detection_review(detection=keep, actor=manager, verdict=DetectionStatus.ACCEPTED, expected_version=keep.version)
    second = predict(scene, manager)
    assert second.result["replaced"] == len(mine) - 1
    keep.refresh_from_db()
    assert keep.status == DetectionStatus.ACCEPTED
    assert found_names(scene, version.detections.filter(status="proposed")) == {"red_c", "blue_b"}
    assert set(other.detections.values_list("pk", flat=True)) == theirs, "another version's proposals stay"
    assert search <= set(scene.detections.values_list("pk", flat=True)), "the search's proposals stay"
    assert first.pk != second.pk


def yolo_definition(project, manager):
    params = export_params({"format": "yolo_detect", "name": "kilns", "chip_size": 256, "overlap": 0.0,
                            "block_chips": 1, "val_fraction": 0.3, "negatives": 0.5, "save": True})
    return definition_save(project=project, user=manager, params=params)


@pytest.mark.slow
def test_training_through_the_job_records_a_version_that_proposes(scene, manager, project, colour):
    for name in ("red_a", "red_b", "red_c"):
        accepted(scene, "Brick Kiln", name, manager)
    definition = yolo_definition(project, manager)
    job = training.train_submit(project=project, user=manager, role="manager", enqueue=False,
                                data={"definition_id": definition.pk, "epochs": 2, "imgsz": 64, "batch": 4,
                                      "name": "first"})
    job = training.train_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    v1 = ModelVersion.objects.get(project=project)
    assert (v1.number, v1.name, v1.export_definition_id, v1.job_id) == (1, "first", definition.pk, job.pk)
    assert [h["epoch"] for h in v1.history] == [1, 2] and job.result["history"] == v1.history
    assert {"map50", "map50_95", "precision", "recall"} <= set(v1.metrics)
    assert v1.params == {"base_model": "yolov8n.yaml", "epochs": 2, "imgsz": 64, "batch": 4, "patience": 20}
    assert v1.gsd_m == pytest.approx(scene.gsd_m) and v1.dataset["counts"]["objects_written"] == 3
    assert v1.classes[0] == {"index": 0, "class_id": project.classes.get(index=0).pk, "name": "Brick Kiln"}
    assert (Path(settings.DATA_DIR) / v1.weights).is_file()
    assert not (Path(settings.DATA_DIR) / "detectors" / "work" / f"job{job.pk}").exists(), "chips cleaned up"
    # The trained network itself proposes through the tiled job (a barely trained one: whatever it finds).
    v1.is_current = True
    v1.save()
    run = yolo_proposals.predict_submit(scene=scene, user=manager, role="manager", data={"conf": 0.001},
                                        enqueue=False).job
    run = yolo_proposals.predict_job_run(job_id=run.pk)
    assert run.status == JobStatus.SUCCEEDED, run.error
    assert run.result["tiles"] > 1 and run.result["model_version"] == v1.pk
    assert run.result["detections"] == v1.detections.count()
    assert all(d.source == "yolo" and "yolo_score" in d.proposer_scores for d in v1.detections.all())


@pytest.mark.slow
def test_cancel_mid_training_keeps_the_best_weights(scene, manager, project, monkeypatch):
    for name in ("red_a", "red_b", "red_c"):
        accepted(scene, "Brick Kiln", name, manager)
    monkeypatch.setattr(job_services, "CANCEL_POLL_S", 0.0)
    definition = yolo_definition(project, manager)
    job = training.train_submit(project=project, user=manager, role="manager", enqueue=False,
                                data={"definition_id": definition.pk, "epochs": 6, "imgsz": 64, "batch": 4})

    def cancel_after_first_epoch(fraction, message):
        if message.startswith("Epoch 1 "):
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)

    job = training.train_job_run(job_id=job.pk, progress_extra=cancel_after_first_epoch)
    assert job.status == JobStatus.CANCELLED
    assert "keeps the best weights" in job.message
    version = ModelVersion.objects.get(pk=job.result["model_version"])
    assert version.stopped_early and len(version.history) == 1
    assert (Path(settings.DATA_DIR) / version.weights).is_file()


def test_training_requests_are_checked(scene, manager, project, api):
    from tests.api.support import assert_error

    url = f"/api/projects/{project.pk}/models/"
    # Nothing accepted yet: nothing to train on, said before a job exists.
    assert_error(api.post(url, {}, format="json"), 400)
    accepted(scene, "Brick Kiln", "red_a", manager)
    assert_error(api.post(url, {"base_model": "yolov99.pt"}, format="json"), 400)
    assert_error(api.post(url, {"epochs": 0}, format="json"), 400)
    assert_error(api.post(url, {"definition_id": 999999}, format="json"), 400)
    listing = api.get(url).json()
    assert "yolov8n.yaml" in listing["base_models"] and listing["versions"] == []
    assert not Job.objects.filter(kind="train").exists()
    # No current model: a YOLO run on the scene says what to do.
    assert_error(api.post(f"/api/scenes/{scene.pk}/yolo-proposals/", {}, format="json"), 400)


def test_one_current_version_and_who_may_change_it(embedded, version, manager, project):
    from annotate.models import Role
    from annotate.services import membership_set
    from tests.api.support import assert_error
    from tests.conftest import client_for, make_user

    v2 = ModelVersion.objects.create(project=project, number=2, gsd_m=1.0, imgsz=256, classes=version.classes,
                                     weights=version.weights)
    annotator = make_user("ann")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    assert_error(client_for(annotator).patch(f"/api/model-versions/{v2.pk}/", {"is_current": True}, format="json"),
                 403)
    api = client_for(manager)
    body = api.patch(f"/api/model-versions/{v2.pk}/", {"is_current": True, "name": "better"}, format="json").json()
    assert body["is_current"] and body["label"] == "v2 better"
    assert list(ModelVersion.objects.filter(project=project, is_current=True)) == [v2]
    listing = api.get(f"/api/projects/{project.pk}/models/").json()
    assert [v["number"] for v in listing["versions"]] == [2, 1]
    assert api.delete(f"/api/model-versions/{version.pk}/").status_code == 204
    assert not (Path(settings.DATA_DIR) / version.weights).exists() or version.weights == v2.weights


def test_a_corrupt_or_missing_weights_file_fails_the_job_in_words(embedded, version, manager):
    path = Path(settings.DATA_DIR) / version.weights
    path.write_bytes(b"not a checkpoint")
    job = yolo_proposals.predict_submit(scene=embedded, user=manager, role="manager", data={}, enqueue=False).job
    job = yolo_proposals.predict_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED and "not a YOLO checkpoint" in job.error and "Unexpected" not in job.error
    path.unlink()
    job = yolo_proposals.predict_submit(scene=embedded, user=manager, role="manager", data={}, enqueue=False).job
    job = yolo_proposals.predict_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED and "weights of v1 are missing" in job.error


def test_without_verification_no_backbone_is_needed(scene, project, manager, monkeypatch):
    """A scene never embedded on a server without DINOv2 weights: YOLO proposes unverified; asking to verify says
    which model is missing and how to install it."""
    from ultralytics import YOLO

    monkeypatch.setattr(tiled_detection, "ultralytics_predictor", colour_predictor)
    weights = Path(settings.DATA_DIR) / "detectors" / "v1.pt"
    weights.parent.mkdir(parents=True)
    YOLO("yolov8n.yaml").save(weights)
    classes = [{"index": c.index, "class_id": c.pk, "name": c.name} for c in project.classes.order_by("index")]
    ModelVersion.objects.create(project=project, number=1, gsd_m=scene.gsd_m, imgsz=256, classes=classes,
                                weights=str(weights.relative_to(settings.DATA_DIR)), is_current=True)
    job = predict(scene, manager, verify=False)
    assert job.result["verified"] is False and job.result["grid"] is None
    found = list(scene.detections.filter(proposer=Proposer.YOLO))
    assert found_names(scene, found) == {"red_a", "red_b", "red_c", "blue_a", "blue_b"}
    assert all(d.model_key == "" and "verify_score" not in d.proposer_scores for d in found)
    job = yolo_proposals.predict_submit(scene=scene, user=manager, role="manager", data={}, enqueue=False).job
    job = yolo_proposals.predict_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED and "fetch_models" in job.error
