"""REST API: scoping by membership (cross-project 404), roles, GeoJSON lists and filters, errors, auth."""

import io

import pytest
from django.contrib.gis.geos import Polygon
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import Detection, DetectionSource, DetectionStatus, Role, Scene, SceneStatus
from annotate.services import membership_set
from gpu_tasks.models import Job, JobStatus
from tests.conftest import NAIP, NEON, client_for, make_user

pytestmark = pytest.mark.django_db


def square(lon, lat, size=1e-5):
    return Polygon.from_bbox((lon, lat, lon + size, lat + size))


def add_detection(scene, cls, lon, lat, score, status=DetectionStatus.PROPOSED, source=DetectionSource.SEARCH):
    poly = square(lon, lat)
    return Detection.objects.create(
        scene=scene, object_class=cls, geometry=poly, bbox=poly.envelope, score=score, status=status, source=source
    )


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_new_project_has_the_eight_default_classes_and_creator_as_manager(api):
    response = api.post("/api/projects/", {"name": "Solar"}, format="json")
    assert response.status_code == 201
    project = response.json()
    assert project["my_role"] == "manager"
    classes = api.get(f"/api/projects/{project['id']}/classes/").json()
    assert [c["name"] for c in classes] == [
        "Brick Kiln",
        "STP",
        "Solar Panel",
        "Sheds",
        "Metro Shed",
        "Play Ground",
        "Pond-1",
        "Pond-2",
    ]
    assert [c["index"] for c in classes] == list(range(8))


def test_duplicate_project_name_is_refused_with_the_field_named(api, project):
    err = assert_error(api.post("/api/projects/", {"name": project.name}, format="json"), 400, "invalid")
    assert "already exists" in err["detail"]["name"][0]


def test_class_indexes_are_stable_and_only_managers_edit_classes(api, project, viewer):
    created = api.post(f"/api/projects/{project.pk}/classes/", {"name": "Shed roof", "color": "#123456"}, format="json")
    assert created.status_code == 201 and created.json()["index"] == 8
    renamed = api.patch(f"/api/classes/{created.json()['id']}/", {"name": "Roof", "index": 0}, format="json")
    assert renamed.json()["name"] == "Roof" and renamed.json()["index"] == 8
    err = assert_error(
        client_for(viewer).post(f"/api/projects/{project.pk}/classes/", {"name": "X"}, format="json"), 403, "forbidden"
    )
    assert "viewer" in err["message"]
    assert_error(
        api.post(f"/api/projects/{project.pk}/classes/", {"name": "Bad", "color": "red"}, format="json"), 400, "invalid"
    )


def test_everything_of_another_project_answers_404(ingested, other_project, outsider, api, project):
    theirs = ingested(NEON, target_project=other_project)
    cls = other_project.classes.first()
    det = add_detection(theirs, cls, -81.99, 29.68, 0.9)
    job = Job.objects.create(project=other_project, scene=theirs, kind="ingest")
    for url in (
        f"/api/projects/{other_project.pk}/",
        f"/api/projects/{other_project.pk}/classes/",
        f"/api/projects/{other_project.pk}/scenes/upload/",
        f"/api/classes/{cls.pk}/",
        f"/api/scenes/{theirs.pk}/",
        f"/api/scenes/{theirs.pk}/thumbnail.png",
        f"/api/detections/{det.pk}/",
        f"/api/jobs/{job.pk}/",
    ):
        method = api.post if url.endswith("upload/") else api.get
        assert_error(method(url), 404, "not_found")
    # Lists simply do not contain them.
    assert api.get("/api/scenes/").json()["count"] == 0
    assert api.get("/api/detections/").json()["features"] == []
    assert api.get("/api/jobs/").json()["count"] == 0
    assert [p["name"] for p in api.get("/api/projects/").json()["results"]] == [project.name]
    # And nothing can be written into them.
    annotation = {
        "type": "Feature",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-81.99, 29.68], [-81.98, 29.68], [-81.98, 29.69], [-81.99, 29.68]]],
        },
        "properties": {"scene": theirs.pk, "object_class": cls.pk},
    }
    assert_error(api.post("/api/annotations/", annotation, format="json"), 404)
    # The outsider sees their own scene.
    assert client_for(outsider).get(f"/api/scenes/{theirs.pk}/").status_code == 200


def test_scene_detail_has_footprint_geojson_and_tile_template(ingested, api):
    scene = ingested(NEON)
    body = api.get(f"/api/scenes/{scene.pk}/").json()
    assert body["status"] == "ready" and body["footprint"]["type"] == "Polygon"
    assert body["tile_url"] == f"/api/scenes/{scene.pk}/tiles/{{z}}/{{x}}/{{y}}.png"
    lons = [c[0] for c in body["footprint"]["coordinates"][0]]
    assert -82.1 < min(lons) < max(lons) < -81.9  # NEON OSBS, Florida


def _annotation(scene, cls, ring):
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"scene": scene.pk, "object_class": cls.pk},
    }


def test_annotations_validate_geometry_and_filter_by_bbox(ingested, api, project, viewer):
    scene = ingested(NEON)
    cls = project.classes.get(name="Sheds")
    c = scene.footprint.centroid
    ring = [[c.x, c.y], [c.x + 1e-5, c.y], [c.x + 1e-5, c.y + 1e-5], [c.x, c.y + 1e-5], [c.x, c.y]]
    created = api.post("/api/annotations/", _annotation(scene, cls, ring), format="json")
    assert created.status_code == 201, created.content
    feature = created.json()
    assert feature["type"] == "Feature" and feature["properties"]["author_name"] == "manager"
    bowtie = [[c.x, c.y], [c.x + 1e-5, c.y + 1e-5], [c.x + 1e-5, c.y], [c.x, c.y + 1e-5], [c.x, c.y]]
    err = assert_error(api.post("/api/annotations/", _annotation(scene, cls, bowtie), format="json"), 400)
    assert "invalid" in err["message"] and "self-intersection" in err["message"].lower()
    far = [[10, 10], [10.001, 10], [10.001, 10.001], [10, 10]]
    assert (
        "outside"
        in assert_error(api.post("/api/annotations/", _annotation(scene, cls, far), format="json"), 400)["message"]
    )
    # A hostile "crs" member never reaches GDAL; the geometry is read as EPSG:4326.
    hostile = _annotation(scene, cls, ring)
    hostile["geometry"]["crs"] = {"type": "name", "properties": {"name": "http://127.0.0.1:9/evil"}}
    assert api.post("/api/annotations/", hostile, format="json").status_code == 201
    assert_error(client_for(viewer).post("/api/annotations/", _annotation(scene, cls, ring), format="json"), 403)
    inside = api.get(f"/api/annotations/?bbox={c.x - 1e-4},{c.y - 1e-4},{c.x + 1e-4},{c.y + 1e-4}").json()
    assert inside["type"] == "FeatureCollection" and len(inside["features"]) == 2
    assert api.get("/api/annotations/?bbox=0,0,1,1").json()["features"] == []
    assert_error(api.get("/api/annotations/?bbox=1,2,3"), 400, "invalid")


def test_detections_filter_by_class_status_source_score_and_bbox_and_paginate(ingested, api, project):
    scene = ingested(NEON)
    kiln, pond = project.classes.get(name="Brick Kiln"), project.classes.get(name="Pond-1")
    c = scene.footprint.centroid
    for i in range(30):
        add_detection(
            scene,
            kiln if i % 2 else pond,
            c.x + i * 1e-5,
            c.y,
            score=i / 30,
            status=DetectionStatus.ACCEPTED if i < 5 else DetectionStatus.PROPOSED,
            source=DetectionSource.YOLO if i >= 25 else DetectionSource.SEARCH,
        )
    base = f"/api/detections/?scene={scene.pk}"
    page = api.get(base + "&page_size=10").json()
    assert page["type"] == "FeatureCollection" and page["count"] == 30 and len(page["features"]) == 10
    scores = [f["properties"]["score"] for f in page["features"]]
    assert scores == sorted(scores, reverse=True)
    assert api.get(page["next"]).json()["features"][0]["properties"]["score"] < scores[-1]
    assert api.get(base + f"&class={kiln.pk}").json()["count"] == 15
    assert api.get(base + "&status=accepted").json()["count"] == 5
    assert api.get(base + "&source=yolo").json()["count"] == 5
    assert api.get(base + "&score_min=0.49&score_max=0.69").json()["count"] == 6  # i = 15..20
    assert api.get(base + f"&bbox={c.x - 1e-6},{c.y - 1e-6},{c.x + 4.5e-5},{c.y + 1e-4}").json()["count"] == 5
    assert_error(api.get(base + "&status=maybe"), 400, "invalid")
    assert_error(api.get(base + "&score_min=high"), 400, "invalid")


def test_token_auth_for_scripts_and_csrf_for_browser_sessions(project, manager):
    token = APIClient().post("/api/auth/token/", {"username": "manager", "password": "pw-manager"}).json()["token"]
    assert token == Token.objects.get(user=manager).key
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert script.get("/api/projects/").json()["count"] == 1
    browser = APIClient(enforce_csrf_checks=True)
    browser.login(username="manager", password="pw-manager")
    assert browser.get("/api/projects/").status_code == 200
    assert_error(browser.post("/api/projects/", {"name": "NoCsrf"}, format="json"), 403)
    assert_error(APIClient().get("/api/projects/"), 403)


def test_upload_creates_a_scene_and_an_ingest_job_with_progress(api, project, django_capture_on_commit_callbacks):
    with open(NEON, "rb") as fh, django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/api/projects/{project.pk}/scenes/upload/", {"file": fh, "name": "Trees"}, format="multipart"
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"]["id"])  # eager Celery: already ran
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0 and job.started_at and job.finished_at
    scene = Scene.objects.get(pk=response.json()["scene"]["id"])
    assert scene.status == SceneStatus.READY and scene.name == "Trees" and scene.original_name == NEON.name
    body = api.get(f"/api/jobs/{job.pk}/").json()
    assert body["status"] == "succeeded" and body["result"]["scene_id"] == scene.pk


def test_upload_of_a_bad_file_fails_the_job_with_a_message(api, project, django_capture_on_commit_callbacks):
    bad = io.BytesIO(b"GIF89a not a tiff at all")
    bad.name = "../../etc/evil.tif"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/projects/{project.pk}/scenes/upload/", {"file": bad}, format="multipart")
    assert response.status_code == 202
    job = api.get(f"/api/jobs/{response.json()['job']['id']}/").json()
    assert job["status"] == "failed" and "not a GeoTIFF" in job["error"]
    scene = api.get(f"/api/scenes/{response.json()['scene']['id']}/").json()
    assert scene["status"] == "failed" and "not a GeoTIFF" in scene["error"]
    assert scene["original_name"] == "evil.tif"


def test_upload_over_the_size_limit_is_refused(api, project, settings):
    settings.UPLOAD_MAX_BYTES = 10_000
    with open(NEON, "rb") as fh:
        response = api.post(f"/api/projects/{project.pk}/scenes/upload/", {"file": fh}, format="multipart")
    assert "UPLOAD_MAX_BYTES" in assert_error(response, 413, "upload_too_large")["message"]
    assert not Scene.objects.exists()


def test_viewers_cannot_upload(project, viewer):
    with open(NEON, "rb") as fh:
        response = client_for(viewer).post(
            f"/api/projects/{project.pk}/scenes/upload/", {"file": fh}, format="multipart"
        )
    assert_error(response, 403, "forbidden")


def test_reingest_with_other_bands(api, ingested, project, django_capture_on_commit_callbacks):
    scene = ingested(NAIP)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/scenes/{scene.pk}/ingest/", {"bands": [4, 3, 2]}, format="json")
    assert response.status_code == 202
    scene.refresh_from_db()
    assert scene.rgb_bands == [4, 3, 2]
    assert_error(api.post(f"/api/scenes/{scene.pk}/ingest/", {"bands": "4,3"}, format="json"), 400)


def test_scene_delete_is_for_managers_and_removes_files(api, ingested, project, django_capture_on_commit_callbacks):
    from annotate import storage

    annotator = make_user("annotator")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    scene = ingested(NEON)
    assert_error(client_for(annotator).delete(f"/api/scenes/{scene.pk}/"), 403)
    folder = storage.absolute(scene.upload_path).parent
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/scenes/{scene.pk}/").status_code == 204
    assert not folder.exists()


def test_openapi_schema_and_docs(api):
    schema = api.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/scenes/{scene_id}/ingest/" in paths and "/api/detections/" in paths
    assert api.get("/api/docs/").status_code == 200


def test_unknown_api_path_uses_the_error_shape(api):
    assert_error(api.get("/api/nothing-here/"), 404, "not_found")
