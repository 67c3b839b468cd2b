"""Probe proposals (issue 12, section 4) through the job on a synthetic scene: trained on the project's reviewed
tokens (accepted objects and examples, rejected look-alikes, the object-free ground of an accuracy area), it proposes
the remaining kilns and ponds at their map coordinates and none of the look-alikes; a new run replaces only its own
unreviewed proposals."""

import pytest

from annotate.models import DetectionStatus, Proposer
from detectors.probe_proposals import probe_job_run, probe_submit
from gpu_tasks.models import JobStatus
from review.accuracy_models import AccuracyArea
from review.services import detection_review
from tests.api.support import assert_error
from tests.conftest import client_for
from tests.detectors.conftest import accepted, found_names
from tests.gpu_tasks.support import px_box_to_polygon
from tests.gpu_tasks.test_update_proposals import LOOKALIKES, proposal_at

pytestmark = pytest.mark.django_db


def reviewed(scene, manager):
    """Two look-alikes rejected, one kiln accepted, and the top-left 400 m marked exhaustively labelled."""
    for name, verdict in (("look_1", DetectionStatus.REJECTED), ("look_2", DetectionStatus.REJECTED),
                          ("red_b", DetectionStatus.ACCEPTED)):
        det = proposal_at(scene, name)
        detection_review(detection=det, actor=manager, verdict=verdict, expected_version=det.version)
    AccuracyArea.objects.create(project=scene.project, scene=scene, geometry=px_box_to_polygon(scene, (0, 0, 400, 400)),
                                class_ids=[], created_by=manager)


def run_probe(scene, manager, **data):
    job = probe_submit(scene=scene, user=manager, role="manager", data=data, enqueue=False).job
    job = probe_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


@pytest.mark.parametrize("kind", ["logistic", "knn"])
def test_the_probe_proposes_the_objects_and_no_lookalike(embedded, manager, kind):
    scene = embedded
    reviewed(scene, manager)
    search_before = set(scene.detections.filter(proposer=Proposer.SEARCH, status="proposed").values_list("pk",
                                                                                                         flat=True))
    job = run_probe(scene, manager, kind=kind)
    probed = list(scene.detections.filter(proposer=Proposer.PROBE))
    assert found_names(scene, probed) == {"red_c", "blue_b"}, "every unreviewed object, no look-alike, nothing known"
    assert not set(LOOKALIKES) & found_names(scene, probed)
    by_name = {n: [d for d in probed if n in found_names(scene, [d])][0] for n in ("red_c", "blue_b")}
    assert by_name["red_c"].object_class.name == "Brick Kiln" and by_name["blue_b"].object_class.name == "Pond-1"
    assert all(d.source == "probe" and d.proposer_scores["probe"] == kind and d.job_id == job.pk for d in probed)
    training = job.result["training"]
    assert training["per_class"]["Brick Kiln"] > 0 and training["background"] > 0
    # The search's own proposals are not the probe's to replace.
    assert search_before == set(scene.detections.filter(proposer=Proposer.SEARCH, status="proposed")
                                .values_list("pk", flat=True))

    # A second run replaces the probe's unreviewed proposals only; one accepted meanwhile stays.
    keep = by_name["red_c"]
    detection_review(detection=keep, actor=manager, verdict=DetectionStatus.ACCEPTED, expected_version=keep.version)
    again = run_probe(scene, manager, kind=kind)
    assert again.result["replaced"] == len(probed) - 1
    keep.refresh_from_db()
    assert keep.status == DetectionStatus.ACCEPTED and keep.proposer == Proposer.PROBE
    fresh = list(scene.detections.filter(proposer=Proposer.PROBE, status="proposed"))
    assert found_names(scene, fresh) == {"blue_b"}  # red_c is reviewed now: not proposed again


def test_the_probe_needs_background_and_a_grid(scene, embedded, manager):
    # Nothing rejected and no accuracy area: no background to learn from, said in words.
    accepted(scene, "Brick Kiln", "red_b", manager)
    job = probe_submit(scene=scene, user=manager, role="manager", data={}, enqueue=False).job
    job = probe_job_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED and "background" in job.error


def test_probe_api_refuses_a_scene_without_embeddings_and_a_reviewer(scene, manager, project):
    from annotate.models import Role
    from annotate.services import membership_set
    from tests.conftest import make_user

    api = client_for(manager)
    assert_error(api.post(f"/api/scenes/{scene.pk}/probe/", {"kind": "knn"}, format="json"), 409)
    assert_error(api.post(f"/api/scenes/{scene.pk}/probe/", {"kind": "svm"}, format="json"), 400)
    reviewer = make_user("rita")
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    assert_error(client_for(reviewer).post(f"/api/scenes/{scene.pk}/probe/", {}, format="json"), 403)
