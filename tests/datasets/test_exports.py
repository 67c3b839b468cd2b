"""Exports (issue 11, part A): the API, saved definitions, the manifest, the vector formats read by OGR (GeoJSON
checked against RFC 7946, GeoPackage in the scene's CRS), the command, roles and every refusal."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from django.conf import settings
from django.contrib.gis.geos import GEOSGeometry
from django.core.management import call_command
from pyproj import Transformer

from annotate.models import Detection, ObjectClass, Role
from annotate.services import membership_set
from datasets.models import ExportDefinition
from gpu_tasks.models import Job, JobKind, JobStatus
from tests.api.support import assert_error
from tests.conftest import client_for, make_user
from tests.datasets import golden_scene as golden

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(project, manager):
    return golden.golden_scene(project, manager)


def start(api, project, captured, **body):
    """POST an export; the eager worker runs its job when the request's transaction commits."""
    with captured(execute=True):
        response = api.post(f"/api/projects/{project.pk}/exports/", {"save": False, **body}, format="json")
    return response


def finished(response) -> Job:
    assert response.status_code == 202, response.content[:500]
    return Job.objects.get(pk=response.json()["job"]["id"])


def download(api, job: Job) -> zipfile.ZipFile:
    response = api.get(f"/api/exports/{job.pk}/download/")
    assert response.status_code == 200, response.content[:300] if not response.streaming else response.status_code
    assert response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"] and ".zip" in response["Content-Disposition"]
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def signed_area(ring) -> float:
    """Shoelace area: positive for a counter-clockwise ring."""
    xy = np.asarray(ring)
    return 0.5 * float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


def test_geojson_export_is_rfc7946_and_read_by_ogr(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="geojson"))
    assert job.status == JobStatus.SUCCEEDED, job.error
    archive = download(api, job)
    assert sorted(archive.namelist()) == ["manifest.json", "objects.geojson"]
    doc = json.loads(archive.read("objects.geojson"))
    # RFC 7946: no crs member (EPSG:4326 is implied), no foreign top-level members that change the meaning.
    assert set(doc) == {"type", "features"} and doc["type"] == "FeatureCollection"
    features = doc["features"]
    assert len(features) == len(golden.ACCEPTED) == 5
    west, south, east, north = GEOSGeometry(scene.footprint).extent
    for feature in features:
        assert set(feature) == {"type", "id", "bbox", "geometry", "properties"}
        rings = feature["geometry"]["coordinates"]
        assert signed_area(rings[0]) > 0, "exterior rings are counter-clockwise (right-hand rule)"
        assert all(signed_area(hole) < 0 for hole in rings[1:]), "holes are clockwise"
        for lon, lat in rings[0]:  # longitude first: the scene is at about 75 E, 28 N
            assert west - 1e-6 <= lon <= east + 1e-6 and south - 1e-6 <= lat <= north + 1e-6
            assert round(lon, 7) == lon and round(lat, 7) == lat
        props = feature["properties"]
        assert props["status"] == "accepted" and props["reviewer"] == "manager"
        assert props["reviewed_at"].startswith("2026-01-02T03:04:05")
    by_object = {f["properties"]["object"]: f for f in features}
    rows = golden.golden_detections(scene)
    hole = by_object[f"detection:{rows['hole'].pk}"]
    assert len(hole["geometry"]["coordinates"]) == 2
    rotated = by_object[f"detection:{rows['rotated'].pk}"]["properties"]
    assert rotated["source"] == "search" and rotated["score"] == 0.8 and rotated["model_key"] == "dinov2-test"
    assert rotated["class_index"] == 1 and rotated["class"] == ObjectClass.objects.get(project=project, index=1).name
    # OGR reads it, and shapely finds every polygon valid and where the database has it (within 1e-7 degrees).
    path = tmp_path / "objects.geojson"
    path.write_bytes(archive.read("objects.geojson"))
    meta, _fids, geoms, fields = pyogrio.raw.read(path)
    assert len(geoms) == 5 and meta["crs"] == "EPSG:4326"
    for wkb, key in zip(geoms, fields[list(meta["fields"]).index("object")], strict=True):
        shape = shapely.from_wkb(wkb)
        assert shape.is_valid
        source = Detection.objects.get(pk=int(key.split(":")[1]))
        assert shapely.hausdorff_distance(shape, shapely.from_wkb(bytes(source.geometry.wkb))) <= 1e-7
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["counts"]["objects_selected"] == manifest["counts"]["objects_written"] == 5
    assert manifest["project"] == {"id": project.pk, "name": project.name}
    assert manifest["provenance"] == {"model_keys": ["dinov2-test"], "reviewers": ["manager"]}
    assert manifest["application_version"] and manifest["exported_by"] == "manager"
    assert manifest["selection"]["statuses"] == ["accepted"]
    assert {c["index"]: c["coco_category_id"] for c in manifest["classes"]}[0] == 1


def test_gpkg_per_scene_in_the_scene_crs(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="gpkg",
                         statuses=["accepted", "rejected", "proposed"]))
    assert job.status == JobStatus.SUCCEEDED, job.error
    path = tmp_path / "objects.gpkg"
    path.write_bytes(download(api, job).read("objects.gpkg"))
    layers = [row[0] for row in pyogrio.list_layers(path)]
    assert layers == [f"golden_{scene.pk}"]
    meta, _fids, geoms, fields = pyogrio.raw.read(path, layer=layers[0])
    assert meta["crs"] == "EPSG:32643" and len(geoms) == len(golden.DETECTIONS)
    names = list(meta["fields"])
    assert {"class", "score", "status", "source", "reviewer", "reviewed_at", "scene"} <= set(names)
    assert sorted(fields[names.index("status")]) == sorted(spec[2] for spec in golden.DETECTIONS.values())
    # The box object's corners in UTM metres: ORIGIN + pixel * 0.5 m.
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32643", always_xy=True)
    for wkb, key in zip(geoms, fields[names.index("object")], strict=True):
        shape = shapely.from_wkb(wkb)
        assert shape.is_valid
        source = shapely.from_wkb(bytes(Detection.objects.get(pk=int(key.split(":")[1])).geometry.wkb))
        expected = shapely.transform(source, lambda xy: np.column_stack(to_utm.transform(*xy.T)))
        assert shapely.hausdorff_distance(shape, expected) < 1e-3  # a millimetre
    x0, y0 = golden.ORIGIN
    box_row = golden.golden_detections(scene)["box"]
    box_shape = shapely.from_wkb(geoms[list(fields[names.index("object")]).index(f"detection:{box_row.pk}")])
    assert np.allclose(box_shape.bounds, (x0 + 40 * 0.5, y0 - 100 * 0.5, x0 + 120 * 0.5, y0 - 40 * 0.5), atol=1e-3)
    # A null score stays null (the drawn object has none).
    scores = fields[names.index("score")]
    assert np.isnan(scores).sum() == 1


def test_gpkg_single_layer_with_a_scene_column(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="gpkg", gpkg_layout="single",
                         include_examples=True))
    assert job.status == JobStatus.SUCCEEDED, job.error
    path = tmp_path / "objects.gpkg"
    path.write_bytes(download(api, job).read("objects.gpkg"))
    assert [row[0] for row in pyogrio.list_layers(path)] == ["objects"]
    meta, _fids, geoms, fields = pyogrio.raw.read(path, layer="objects")
    names = list(meta["fields"])
    assert len(geoms) == len(golden.ACCEPTED) + 1  # and the example
    assert set(fields[names.index("scene")]) == {"golden"}
    assert "example" in set(fields[names.index("source")])


def test_filters_by_class_source_and_status(api, project, scene, django_capture_on_commit_callbacks):
    cls2 = ObjectClass.objects.get(project=project, index=2)
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="geojson", class_ids=[cls2.pk]))
    features = json.loads(download(api, job).read("objects.geojson"))["features"]
    assert sorted(f["properties"]["source"] for f in features) == ["refine", "search"]
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="geojson", sources=["yolo"],
                         statuses=["accepted", "rejected"]))
    features = json.loads(download(api, job).read("objects.geojson"))["features"]
    assert [f["properties"]["object"] for f in features] == [f"detection:{golden.golden_detections(scene)['box'].pk}"]


def test_saved_definition_listed_run_again_and_deleted(api, project, scene, django_capture_on_commit_callbacks):
    response = start(api, project, django_capture_on_commit_callbacks, format="geojson", name="Kilns accepted",
                     save=True)
    first = finished(response)
    definition = ExportDefinition.objects.get(pk=response.json()["definition"]["id"])
    assert definition.name == "Kilns accepted" and definition.params["statuses"] == ["accepted"]
    listing = api.get(f"/api/projects/{project.pk}/exports/").json()
    assert [d["name"] for d in listing["definitions"]] == ["Kilns accepted"]
    assert listing["definitions"][0]["last_job"]["id"] == first.pk
    assert {f["key"] for f in listing["formats"]} >= {"yolo_detect", "yolo_segment", "yolo_obb", "coco", "geojson",
                                                      "gpkg"}
    assert listing["exports"][0]["id"] == first.pk
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(f"/api/export-definitions/{definition.pk}/run/")
    second = finished(again)
    assert second.status == JobStatus.SUCCEEDED and second.params["definition_id"] == definition.pk
    assert again.json()["definition"]["last_job"]["id"] == second.pk
    assert api.delete(f"/api/export-definitions/{definition.pk}/").status_code == 204
    assert not ExportDefinition.objects.exists()
    # Its past export stays downloadable.
    assert download(api, second).namelist()


def test_refusals_say_what_to_do(api, project, other_project, scene, django_capture_on_commit_callbacks):
    def refused(status, **body):
        return assert_error(start(api, project, django_capture_on_commit_callbacks, **body), status)

    assert "format" in str(refused(400, format="shapefile-ish"))
    assert "val_fraction" in str(refused(400, format="yolo_detect", val_fraction=0.6, test_fraction=0.5))
    assert "name" in str(refused(400, format="geojson", save=True))
    other_scene_id = other_project.scenes.create(name="x").pk
    body = refused(400, format="geojson", scene_ids=[other_scene_id])
    assert "not scenes of this project" in body["message"]
    body = refused(400, format="geojson", statuses=["proposed"], sources=["manual"])
    assert "No object matches" in body["message"]
    assert refused(400, format="geojson", chip_size=-1)
    assert not Job.objects.filter(kind=JobKind.EXPORT).exists()
    # Download: a job still queued (conflict), a job of another kind (refused), a missing job (404).
    queued = Job.objects.create(project=project, kind=JobKind.EXPORT, params={"format": "geojson"})
    assert_error(api.get(f"/api/exports/{queued.pk}/download/"), 409, "conflict")
    ingest = Job.objects.create(project=project, kind=JobKind.INGEST)
    assert api.get(f"/api/exports/{ingest.pk}/download/").status_code == 400
    assert api.get("/api/exports/999999/download/").status_code == 404


def test_roles(api, project, scene, viewer, outsider, django_capture_on_commit_callbacks):
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="geojson"))
    annotator, reviewer = make_user("ann"), make_user("rev")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    for user, allowed in ((annotator, True), (reviewer, False), (viewer, False)):
        client = client_for(user)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(f"/api/projects/{project.pk}/exports/", {"format": "geojson", "save": False},
                                   format="json")
        assert response.status_code == (202 if allowed else 403), (user.username, response.content[:200])
        assert client.get(f"/api/exports/{job.pk}/download/").status_code == 200  # any member may download
    outsider_client = client_for(outsider)
    assert outsider_client.get(f"/api/exports/{job.pk}/download/").status_code == 404
    assert outsider_client.post(f"/api/projects/{project.pk}/exports/", {"format": "geojson"},
                                format="json").status_code == 404


def test_an_invalid_polygon_fails_the_export_naming_the_object(api, project, scene,
                                                              django_capture_on_commit_callbacks):
    bow_tie = GEOSGeometry("POLYGON((75.0 28.0, 75.001 28.001, 75.001 28.0, 75.0 28.001, 75.0 28.0))", srid=4326)
    bad = Detection.objects.create(scene=scene, object_class=ObjectClass.objects.get(project=project, index=0),
                                   geometry=bow_tie, bbox=GEOSGeometry(bow_tie.envelope.wkt, srid=4326),
                                   source="manual", status="accepted")
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="geojson"))
    assert job.status == JobStatus.FAILED
    assert f"detection:{bad.pk}" in job.error and "invalid" in job.error and "reshape" in job.error
    assert not (Path(settings.DATA_DIR) / "exports" / str(job.pk)).exists()


def test_cancel_leaves_no_file(api, project, scene, django_capture_on_commit_callbacks):
    from datasets import export_services

    response = api.post(f"/api/projects/{project.pk}/exports/", {"format": "geojson", "save": False}, format="json")
    job = Job.objects.get(pk=response.json()["job"]["id"])
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    ended = export_services.export_job_run(job_id=job.pk)
    assert ended.status == JobStatus.CANCELLED
    assert api.get(f"/api/exports/{job.pk}/download/").status_code == 409


def test_command_exports_with_a_progress_bar(project, manager, scene, tmp_path, capsys):
    call_command("export_dataset", "--project", project.name, "--user", "manager", "--format", "geojson",
                 "--out", str(tmp_path))
    out = capsys.readouterr()
    zips = list(tmp_path.glob("*.zip"))
    assert len(zips) == 1 and "objects_written" in out.out and "%" in out.err
    with zipfile.ZipFile(zips[0]) as archive:
        assert len(json.loads(archive.read("objects.geojson"))["features"]) == 5


def test_older_exports_beyond_the_kept_number_are_deleted(api, project, scene, settings,
                                                          django_capture_on_commit_callbacks):
    settings.EXPORTS_KEPT_PER_PROJECT = 2
    jobs = [finished(start(api, project, django_capture_on_commit_callbacks, format="geojson")) for _ in range(3)]
    assert [job.status for job in jobs] == [JobStatus.SUCCEEDED] * 3
    response = api.get(f"/api/exports/{jobs[0].pk}/download/")
    assert response.status_code == 409 and "run the export again" in response.json()["error"]["message"]
    assert download(api, jobs[1]).namelist() and download(api, jobs[2]).namelist()


def test_a_chip_export_without_validation_chips_says_so(api, project, scene, django_capture_on_commit_callbacks):
    # 256 px chips in blocks of 8 x 8: the whole golden scene is one block, so nothing can be held out.
    job = finished(start(api, project, django_capture_on_commit_callbacks, format="yolo_detect", chip_size=256,
                         overlap=0.0, block_chips=8))
    assert job.status == JobStatus.SUCCEEDED, job.error
    manifest = json.loads(download(api, job).read("manifest.json"))
    assert manifest["counts"]["chips"].get("val", 0) == 0
    assert "no validation chips" in manifest["warnings"][0] and "block_chips" in manifest["warnings"][0]
    assert "no validation chips" in job.message
    assert manifest["counts"]["objects_selected"] == manifest["counts"]["objects_written"] == 5
