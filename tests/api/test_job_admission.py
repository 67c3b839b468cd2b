"""Cost limits: estimate before queueing, a per-user cap, identical requests share one job (issue 7, section 5)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Detection, Role
from annotate.services import membership_set
from gpu_tasks.inference.tiling import plan_tiles
from gpu_tasks.job_admission import embed_tile_count
from gpu_tasks.models import Job, JobKind, JobStatus
from tests.api.support import assert_error, ready_scene
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def annotator(project):
    user = make_user("annotator")
    membership_set(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.mark.parametrize("w, h", [(400, 400), (518, 518), (1000, 300), (8000, 8000), (12345, 777)])
@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5, 2.0, 4.0])
def test_the_tile_estimate_is_the_tiling_modules_count(w, h, scale, settings):
    expected = len(plan_tiles(w, h, 14, scale, tile_px=settings.EMBED_TILE_PX,
                              margin_patches=settings.EMBED_MARGIN_PATCHES))
    assert embed_tile_count(width_px=w, height_px=h, scale=scale) == expected


def test_an_embed_over_the_tile_limit_is_refused_with_estimate_and_limit(project, annotator, settings):
    settings.JOB_MAX_TILES = 10_000
    settings.JOB_MAX_SCALE = 8  # the scale bound alone would refuse it; this checks the cost bound
    scene = ready_scene(project, width=8000, height=8000)
    estimate = embed_tile_count(width_px=8000, height_px=8000, scale=8)
    api = client_for(annotator)
    for _ in range(20):
        err = assert_error(api.post(f"/api/scenes/{scene.pk}/embed/", {"scale": 8}, format="json"), 400,
                           "job_too_large")
        assert f"{estimate:,}" in err["message"] and "10,000" in err["message"] and "JOB_MAX_TILES" in err["message"]
        assert err["detail"] == {"estimate_tiles": estimate, "limit_tiles": 10_000}
    assert not Job.objects.exists()
    # The same search at scale 1 is 2.1% of it and goes through.
    assert api.post(f"/api/scenes/{scene.pk}/search/", {"scale": 1}, format="json").status_code == 202


def test_refining_more_boxes_than_the_limit_is_refused(api, project, settings):
    settings.JOB_MAX_REFINE_BOXES = 5
    scene = ready_scene(project, width=400, height=400)
    cls = project.classes.first()
    for _ in range(6):
        Detection.objects.create(
            scene=scene, object_class=cls, geometry=scene.footprint, bbox=scene.footprint.envelope, score=0.5
        )
    err = assert_error(api.post(f"/api/scenes/{scene.pk}/refine/", {}, format="json"), 400, "job_too_large")
    assert "6 boxes" in err["message"] and "JOB_MAX_REFINE_BOXES" in err["message"]
    some = list(scene.detections.values_list("pk", flat=True)[:3])
    assert api.post(f"/api/scenes/{scene.pk}/refine/", {"detections": some}, format="json").status_code == 202


def test_a_user_may_have_only_so_many_gpu_jobs_pending(project, annotator, manager, settings):
    settings.JOB_MAX_PENDING_PER_USER = 3
    scene = ready_scene(project, width=400, height=400)
    api = client_for(annotator)
    for threshold in (0.5, 0.6, 0.7):
        body = {"default_threshold": threshold}
        assert api.post(f"/api/scenes/{scene.pk}/search/", body, format="json").status_code == 202
    err = assert_error(api.post(f"/api/scenes/{scene.pk}/search/", {"default_threshold": 0.8}, format="json"), 429)
    assert "3 GPU jobs queued or running" in err["message"] and err["detail"] == {"pending": 3, "limit": 3}
    assert_error(api.post(f"/api/scenes/{scene.pk}/embed/", {"scale": 2}, format="json"), 429)
    # Another user is not held up by it.
    assert client_for(manager).post(f"/api/scenes/{scene.pk}/embed/", {}, format="json").status_code == 202
    # Once one finishes, the next is accepted; a stalled one holds no worker and does not count.
    first = Job.objects.filter(created_by=annotator).order_by("pk").first()
    Job.objects.filter(pk=first.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    assert api.post(f"/api/scenes/{scene.pk}/search/", {"default_threshold": 0.8}, format="json").status_code == 202
    stale = timezone.now() - timedelta(seconds=settings.JOB_DEAD_AFTER_S + 60)
    queued = Job.objects.filter(created_by=annotator, status=JobStatus.QUEUED)
    queued.update(status=JobStatus.RUNNING, heartbeat_at=stale)
    assert api.post(f"/api/scenes/{scene.pk}/search/", {"default_threshold": 0.9}, format="json").status_code == 202


def test_retrying_counts_against_the_cap(project, annotator, settings):
    settings.JOB_MAX_PENDING_PER_USER = 1
    scene = ready_scene(project, width=400, height=400)
    api = client_for(annotator)
    failed = Job.objects.create(project=project, scene=scene, kind=JobKind.SEARCH, status=JobStatus.FAILED,
                                created_by=annotator, params={"default_threshold": 0.1})
    assert api.post(f"/api/scenes/{scene.pk}/search/", {}, format="json").status_code == 202
    assert_error(api.post(f"/api/jobs/{failed.pk}/retry/"), 429)


def test_an_identical_request_returns_the_pending_job(project, annotator, manager):
    scene = ready_scene(project, width=400, height=400)
    kiln, pond = project.classes.get(name="Brick Kiln"), project.classes.get(name="Pond-1")
    first = client_for(annotator).post(
        f"/api/scenes/{scene.pk}/search/", {"classes": [kiln.pk, pond.pk], "scale": 1}, format="json"
    )
    assert first.status_code == 202
    # Same kind, scene and normalised parameters (order, defaults, number types), another user: the same job.
    again = client_for(manager).post(
        f"/api/scenes/{scene.pk}/search/", {"classes": [pond.pk, kiln.pk], "scale": 1.0, "margin": 0.02},
        format="json",
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # Other parameters: a new job.
    other = client_for(annotator).post(f"/api/scenes/{scene.pk}/search/", {"classes": [kiln.pk]}, format="json")
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    # Running counts too; finished or cancel-requested ones do not.
    Job.objects.filter(pk=first.json()["id"]).update(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    body = {"classes": [kiln.pk, pond.pk]}
    assert client_for(manager).post(f"/api/scenes/{scene.pk}/search/", body, format="json").json()["id"] == (
        first.json()["id"]
    )
    Job.objects.filter(pk=first.json()["id"]).update(status=JobStatus.SUCCEEDED)
    fresh = client_for(manager).post(f"/api/scenes/{scene.pk}/search/", body, format="json")
    assert fresh.status_code == 202 and fresh.json()["id"] != first.json()["id"]
    assert Job.objects.filter(kind=JobKind.SEARCH).count() == 3


def test_refine_this_twice_is_one_job(api, project):
    scene = ready_scene(project, width=400, height=400)
    det = Detection.objects.create(
        scene=scene, object_class=project.classes.first(), geometry=scene.footprint,
        bbox=scene.footprint.envelope, score=0.5,
    )
    first = api.post(f"/api/detections/{det.pk}/refine/")
    second = api.post(f"/api/detections/{det.pk}/refine/")
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
