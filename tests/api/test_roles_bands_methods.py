"""Retry needs the job kind's permission; impossible bands are refused before the 202; tiles answer JSON 405."""

import pytest
from rest_framework.test import APIClient

from annotate.models import Role, Scene, SceneStatus
from annotate.services import membership_set
from gpu_tasks.models import Job, JobKind, JobStatus
from tests.api.support import assert_error, ready_scene
from tests.conftest import NAIP, NEON, client_for, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(project):
    user = make_user("reviewer")
    membership_set(project=project, user=user, role=Role.REVIEWER)
    return user


def test_a_reviewer_may_retry_a_refine_of_one_detection_but_no_ingest_or_search(project, reviewer, manager):
    scene = ready_scene(project, width=400, height=400)
    ingest = Job.objects.create(project=project, scene=scene, kind=JobKind.INGEST, status=JobStatus.FAILED)
    err = assert_error(client_for(reviewer).post(f"/api/jobs/{ingest.pk}/retry/"), 403, "forbidden")
    assert "upload scenes" in err["message"]
    ingest.refresh_from_db()
    assert ingest.status == JobStatus.FAILED
    queued_ingest = Job.objects.create(project=project, scene=scene, kind=JobKind.INGEST)
    assert_error(client_for(reviewer).post(f"/api/jobs/{queued_ingest.pk}/cancel/"), 403, "forbidden")
    # Searches are an annotator's or a manager's job (issue 10's roles); "refine this" on one detection is a reviewer's.
    search = Job.objects.create(project=project, scene=scene, kind=JobKind.SEARCH, status=JobStatus.FAILED)
    err = assert_error(client_for(reviewer).post(f"/api/jobs/{search.pk}/retry/"), 403, "forbidden")
    assert "only managers and annotators may" in err["message"]
    one = Job.objects.create(project=project, scene=scene, kind=JobKind.REFINE, status=JobStatus.FAILED,
                             params={"detection_ids": [1], "reverify": True, "interactive": True})
    assert client_for(reviewer).post(f"/api/jobs/{one.pk}/retry/").status_code == 202
    many = Job.objects.create(project=project, scene=scene, kind=JobKind.REFINE, status=JobStatus.FAILED,
                              params={"detection_ids": [], "reverify": True, "interactive": False})
    assert_error(client_for(reviewer).post(f"/api/jobs/{many.pk}/retry/"), 403, "forbidden")
    assert client_for(manager).post(f"/api/jobs/{search.pk}/retry/").status_code == 202


@pytest.mark.parametrize(
    "bands, says", [([5, 5, 5], "1 to 3"), ([0, 1, 2], "greater than or equal to 1"), ([1, 2], "exactly three"),
                    ([4, 3, 2], "1 to 3"), ("4,3", "list")]
)
def test_reingest_with_impossible_bands_is_refused_before_the_202(
    api, ingested, bands, says, django_capture_on_commit_callbacks
):
    scene = ingested(NEON)
    before = (scene.cog_path, scene.rgb_bands, scene.updated_at)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/scenes/{scene.pk}/ingest/", {"bands": bands}, format="json")
    err = assert_error(response, 400, "invalid")
    assert says in err["message"]
    scene.refresh_from_db()
    assert scene.status == SceneStatus.READY and (scene.cog_path, scene.rgb_bands, scene.updated_at) == before
    assert not Job.objects.filter(kind=JobKind.INGEST).exists()


def test_reingest_with_bands_of_a_four_band_scene_is_accepted(api, ingested, django_capture_on_commit_callbacks):
    scene = ingested(NAIP)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/scenes/{scene.pk}/ingest/", {"bands": [4, 3, 2]}, format="json")
    assert response.status_code == 202, response.content
    assert_error(api.post(f"/api/scenes/{scene.pk}/ingest/", {"bands": [5, 3, 2]}, format="json"), 400)


def test_upload_with_impossible_bands_is_refused_from_the_header(api, project):
    for bands, says in (("5,5,5", "1 to 3"), ("0,1,2", "count from 1")):
        with open(NEON, "rb") as fh:
            response = api.post(
                f"/api/projects/{project.pk}/scenes/upload/", {"file": fh, "bands": bands}, format="multipart"
            )
        err = assert_error(response, 400, "invalid")
        assert says in err["message"] and "bands" in err["detail"]
    assert not Scene.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize("path", ["tiles/14/0/0.png", "thumbnail.png"])
@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_non_get_on_tile_urls_is_a_json_405(project, manager, path, method):
    scene = ready_scene(project, width=400, height=400)
    browser = APIClient(enforce_csrf_checks=True)  # as a browser: a CSRF failure would have answered HTML 403
    browser.force_login(manager)
    response = getattr(browser, method)(f"/api/scenes/{scene.pk}/{path}")
    err = assert_error(response, 405, "method_not_allowed")
    assert "GET" in err["message"] and response["Allow"] == "GET, HEAD"
    anonymous = getattr(APIClient(enforce_csrf_checks=True), method)(f"/api/scenes/{scene.pk}/{path}")
    assert_error(anonymous, 405)
