"""Imports of existing labels (issue 11, part C): every format through the real readers (OGR via pyogrio, PIL,
rasterio, pycocotools), the API with its inspection, class mapping and roles, and the report of every bad input."""

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from django.contrib.gis.geos import Polygon as GEOSPolygon
from django.core.management import call_command
from PIL import Image
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, Polygon, box, mapping

from annotate.geo import SceneFrame, crs_from_text, footprint_ring_lonlat, transform_from_gdal
from annotate.models import Annotation, Detection, ObjectClass, Role, Scene, SceneStatus
from annotate.services import membership_set
from datasets import import_services
from gpu_tasks.models import Job, JobStatus
from review.models import ReviewEvent, ReviewVerb
from tests.api.support import assert_error
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db

UTM43 = "EPSG:32643"
GEOTRANSFORM = (500000.0, 0.5, 0.0, 3160000.0, 0.0, -0.5)
WIDTH, HEIGHT = 1024, 768


def scene_row(project, *, name="Site 1, part.2", crs=UTM43, geotransform=GEOTRANSFORM, width=WIDTH, height=HEIGHT,
              original_name="") -> Scene:
    """A ready scene row with real georeferencing and footprint (imports read no pixels)."""
    ring = footprint_ring_lonlat(crs_from_text(crs), transform_from_gdal(geotransform), width, height)
    return Scene.objects.create(
        project=project, name=name, original_name=original_name, status=SceneStatus.READY, crs=crs,
        geotransform=list(geotransform), width=width, height=height, band_count=3, gsd_m=0.5,
        footprint=GEOSPolygon(ring, srid=4326),
    )


def px_polygon_lonlat(scene, polygon: Polygon) -> Polygon:
    """A pixel polygon of the scene in lon/lat (the expected position of an imported label)."""
    frame = SceneFrame.of(scene)
    return shapely.transform(polygon, lambda c: np.column_stack(frame.to_lonlat(c[:, 0], c[:, 1])))


def hausdorff_deg(a, b) -> float:
    return shapely.hausdorff_distance(a, b)


@pytest.fixture
def scene(project):
    return scene_row(project)


def upload(client, project, path: Path, scene_id=None):
    with open(path, "rb") as fh:
        data = {"file": fh}
        if scene_id:
            data["scene_id"] = scene_id
        return client.post(f"/api/projects/{project.pk}/imports/", data, format="multipart")


def run_import(client, import_id, *, target="examples", class_map=None, capture=None):
    """POST the run, then run the job in-process (the task module is part A's; the runner is the same code)."""
    response = client.post(f"/api/imports/{import_id}/run/", {"target": target, "class_map": class_map or {}},
                           format="json")
    if response.status_code != 202:
        return response, None
    job = import_services.import_job_run(job_id=response.json()["job"]["id"])
    return response, job


def geojson_file(tmp_path, features, name="labels.geojson") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def feat(geometry, **properties) -> dict:
    return {"type": "Feature", "geometry": mapping(geometry) if geometry is not None else None,
            "properties": properties}


def scene_lonlat_box(scene, x0, y0, x1, y1) -> Polygon:
    return px_polygon_lonlat(scene, box(x0, y0, x1, y1))


# ------------------------------------------------------------------------------------------ GeoJSON
def test_geojson_inspection_mapping_and_examples(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    kiln = scene_lonlat_box(scene, 100, 100, 140, 130)
    holed = Polygon(scene_lonlat_box(scene, 300, 300, 400, 400).exterior.coords,
                    [scene_lonlat_box(scene, 330, 330, 360, 360).exterior.coords])
    multi = MultiPolygon([scene_lonlat_box(scene, 500, 100, 520, 120), scene_lonlat_box(scene, 600, 100, 620, 120)])
    bowtie = Polygon(px_polygon_lonlat(scene, Polygon([(700, 700), (750, 750), (750, 700), (700, 750)])).exterior)
    far = box(10.0, 10.0, 10.001, 10.001)
    path = geojson_file(tmp_path, [
        feat(kiln, label="brick kiln "),
        feat(holed, label="Solar Panel"),
        feat(multi, label="Tank"),
        feat(bowtie, label="Sheds"),
        feat(far, label="Sheds"),
        feat(None, label="Sheds"),
        feat(shapely.geometry.LineString(list(kiln.exterior.coords)[:2]), label="Sheds"),
        feat(scene_lonlat_box(scene, 10, 10, 20, 20), label="1.0"),
    ], name="my labels, v1.2.geojson")
    response = upload(api, project, path)
    assert response.status_code == 201, response.content
    meta = response.json()
    inspection = meta["inspection"]
    assert inspection["format"] == "geojson" and inspection["feature_count"] == 8
    assert inspection["class_field"] == "label"
    classes = {c["name"]: c for c in inspection["classes"]}
    assert classes["brick kiln"]["class_id"] == ObjectClass.objects.get(project=project, name="Brick Kiln").pk
    assert classes["Tank"]["count"] == 2 and classes["Tank"]["class_id"] is None
    assert inspection["unmatched"] == ["1", "Tank"]
    assert inspection["split"] == {"objects": 2, "parts": 4} and inspection["repaired"] == 1  # the bow-tie too
    assert inspection["skipped"]["by_reason"] == {
        "degenerate_geometry": 1, "empty_geometry": 1, "outside_every_scene": 1}
    assert inspection["scenes"] == [{"id": scene.pk, "name": scene.name, "count": inspection["objects"]}]
    assert meta["file_name"] == "my labels, v1.2.geojson"

    # Unmapped names are refused with what to do; then "new" adds a class and null skips.
    refused, _ = run_import(api, meta["id"])
    assert "Tank" in assert_error(refused, 400, "invalid")["message"]
    with django_capture_on_commit_callbacks(execute=False):
        response, job = run_import(api, meta["id"], class_map={"Tank": "new", "1": None})
    assert response.status_code == 202 and job.status == JobStatus.SUCCEEDED, job.error
    report = job.result
    tank = ObjectClass.objects.get(project=project, name="Tank")
    assert report["imported"] == 6  # kiln, holed, 2 tank parts, 2 bow-tie halves (make_valid)
    assert report["per_class"] == {"Brick Kiln": 1, "Solar Panel": 1, "Tank": 2, "Sheds": 2}
    assert report["skipped"]["by_reason"]["unknown_class_skipped"] == 1
    assert report["skipped"]["items"][0]["message"]
    examples = Annotation.objects.filter(scene=scene)
    assert examples.count() == 6 and examples.filter(object_class=tank).count() == 2
    kept = shapely.from_wkb(bytes(examples.get(object_class__name="Solar Panel").geometry.wkb))
    assert len(kept.interiors) == 1 and hausdorff_deg(kept, holed) < 1e-9  # the hole is kept
    assert all(shapely.from_wkb(bytes(e.geometry.wkb)).is_valid for e in examples)


def test_accepted_detections_with_audit_trail(api, project, manager, scene, tmp_path,
                                              django_capture_on_commit_callbacks):
    path = geojson_file(tmp_path, [feat(scene_lonlat_box(scene, 10 * i, 10, 10 * i + 8, 18), category="STP")
                                   for i in range(1, 6)])
    meta = upload(api, project, path).json()
    with django_capture_on_commit_callbacks(execute=False):
        response, job = run_import(api, meta["id"], target="accepted")
    assert job.status == JobStatus.SUCCEEDED, job.error
    detections = Detection.objects.filter(scene=scene)
    assert detections.count() == 5
    assert set(detections.values_list("source", "status", "reviewer", "score")) == {
        ("import", "accepted", manager.pk, None)}
    assert all(d.reviewed_at is not None and d.job_id == job.pk for d in detections)
    events = ReviewEvent.objects.filter(detection_id__in=detections.values("pk"))
    assert events.count() == 5 and set(events.values_list("verb", "actor")) == {(ReviewVerb.CREATE_MANUAL, manager.pk)}
    assert "import job" in events.first().comment and len(set(events.values_list("batch_id", flat=True))) == 1


def test_roles_file_errors_and_scene_choice(project, manager, scene, tmp_path, django_capture_on_commit_callbacks):
    annotator, viewer = make_user("annot"), make_user("view")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    membership_set(project=project, user=viewer, role=Role.VIEWER)
    path = geojson_file(tmp_path, [feat(scene_lonlat_box(scene, 10, 10, 30, 30), label="STP")])
    assert_error(upload(client_for(viewer), project, path), 403, "forbidden")
    meta = upload(client_for(annotator), project, path).json()
    assert_error(client_for(annotator).post(f"/api/imports/{meta['id']}/run/", {"target": "accepted"}, format="json"),
                 403, "forbidden")
    assert_error(client_for(make_user("stranger")).get(f"/api/imports/{meta['id']}/"), 404)
    assert_error(client_for(manager).get("/api/imports/not-an-id/"), 404)
    assert_error(client_for(annotator).post(f"/api/imports/{meta['id']}/run/", {"target": "both"}, format="json"), 400)
    # A new class is a manager's to add.
    other = geojson_file(tmp_path, [feat(scene_lonlat_box(scene, 10, 10, 30, 30), label="Tank")], name="t.geojson")
    meta = upload(client_for(annotator), project, other).json()
    assert_error(client_for(annotator).post(
        f"/api/imports/{meta['id']}/run/", {"class_map": {"Tank": "new"}}, format="json"), 403, "forbidden")
    assert_error(client_for(manager).post(
        f"/api/imports/{meta['id']}/run/", {"class_map": {"Tank": 999999}}, format="json"), 400, "invalid")
    # Not label files: a clear 400 saying what to upload.
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert "GeoJSON" in assert_error(upload(client_for(manager), project, bad), 400, "import_unreadable")["message"]
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [')
    assert_error(upload(client_for(manager), project, broken), 400, "import_unreadable")
    # A chosen scene: objects outside it are skipped with that reason.
    second = scene_row(project, name="Second", geotransform=(600000.0, 0.5, 0.0, 3160000.0, 0.0, -0.5))
    response = upload(client_for(manager), project, path, scene_id=second.pk)
    assert response.json()["inspection"]["skipped"]["by_reason"] == {"outside_scene": 1}
    assert_error(upload(client_for(manager), project, path, scene_id=987654), 400)


# ------------------------------------------------------------------------------------------ GPKG, Shapefile
def _write_layer(path: Path, polygons, classes, crs: str, layer: str, driver: str):
    pyogrio.raw.write(
        path, np.array([p.wkb for p in polygons], dtype=object),
        [np.array(classes, dtype=object)], fields=["Class_Name"], geometry_type="Polygon", crs=crs, layer=layer,
        driver=driver, promote_to_multi=False,
    )


def _utm_polygon(scene, x0, y0, x1, y1) -> Polygon:
    t = transform_from_gdal(scene.geotransform)
    return shapely.transform(box(x0, y0, x1, y1), lambda c: np.column_stack(
        [t.a * c[:, 0] + t.c, t.e * c[:, 1] + t.f]))


def test_geopackage_in_utm_is_reprojected(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    path = tmp_path / "objects.gpkg"
    polygons = [_utm_polygon(scene, 100, 100, 150, 140), _utm_polygon(scene, 400, 300, 420, 330)]
    _write_layer(path, polygons, ["Sheds", "Pond-1"], UTM43, "scene_1", "GPKG")
    _write_layer(path, [_utm_polygon(scene, 800, 600, 820, 610)], ["Sheds"], UTM43, "scene_2", "GPKG")
    meta = upload(api, project, path).json()
    assert meta["inspection"]["format"] == "gpkg" and meta["inspection"]["feature_count"] == 3
    assert meta["inspection"]["layers"] == ["scene_1", "scene_2"] and "32643" in meta["inspection"]["crs"]
    with django_capture_on_commit_callbacks(execute=False):
        _, job = run_import(api, meta["id"])
    assert job.result["imported"] == 3
    got = shapely.from_wkb(bytes(Annotation.objects.get(object_class__name="Pond-1").geometry.wkb))
    assert hausdorff_deg(got, scene_lonlat_box(scene, 400, 300, 420, 330)) < 1e-7


def test_zipped_shapefile_any_crs_and_missing_prj(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    from rasterio.warp import transform_geom

    folder = tmp_path / "shp"
    folder.mkdir()
    lonlat = scene_lonlat_box(scene, 200, 200, 260, 250)
    mercator = shapely.geometry.shape(transform_geom("EPSG:4326", "EPSG:3857", mapping(lonlat)))
    _write_layer(folder / "kilns.shp", [mercator], ["Brick Kiln"], "EPSG:3857", "kilns", "ESRI Shapefile")
    archive = tmp_path / "kilns, 2024.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in folder.iterdir():
            zf.write(part, f"kilns/{part.name}")
    meta = upload(api, project, archive).json()
    assert meta["inspection"]["format"] == "shapefile" and meta["inspection"]["objects"] == 1
    with django_capture_on_commit_callbacks(execute=False):
        _, job = run_import(api, meta["id"])
    got = shapely.from_wkb(bytes(Annotation.objects.get().geometry.wkb))
    assert hausdorff_deg(got, lonlat) < 1e-7
    no_prj = tmp_path / "noprj.zip"
    with zipfile.ZipFile(no_prj, "w") as zf:
        for part in folder.iterdir():
            if part.suffix != ".prj":
                zf.write(part, part.name)
    assert ".prj" in assert_error(upload(api, project, no_prj), 400, "import_unreadable")["message"]


# ------------------------------------------------------------------------------------------ YOLO
def _png(width, height) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_yolo_detect_and_segment_matched_by_scene_name(api, project, scene, tmp_path,
                                                       django_capture_on_commit_callbacks):
    archive = tmp_path / "yolo.zip"
    w, h = WIDTH / 2, HEIGHT / 2  # a half-size copy of the scene: labels scale to the scene's pixels
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: Brick Kiln\n  1: STP\n")
        zf.writestr(f"images/train/{scene.name}.png", _png(int(w), int(h)))
        zf.writestr(f"labels/train/{scene.name}.txt", "\n".join([
            "1.0 0.25 0.5 0.1 0.2",  # class id written as 1.0
            "0 0.99 0.5 0.1 0.1",  # half outside the image: clipped
            "0 1.5 1.5 0.1 0.1",  # wholly outside: dropped
            "0 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2",  # segment polygon
            "0 0.5",  # unreadable
        ]))
        zf.writestr("images/val/empty.png", _png(8, 8))
        zf.writestr("labels/val/empty.txt", "")  # an empty label file: a negative, nothing to import
    meta = upload(api, project, archive).json()
    inspection = meta["inspection"]
    assert inspection["format"] == "yolo" and inspection["objects"] == 3 and inspection["clipped"] == 1
    assert inspection["skipped"]["by_reason"] == {"outside_image": 1, "unreadable_line": 1}
    with django_capture_on_commit_callbacks(execute=False):
        _, job = run_import(api, meta["id"])
    assert job.result["per_class"] == {"Brick Kiln": 2, "STP": 1}
    stp = shapely.from_wkb(bytes(Annotation.objects.get(object_class__name="STP").geometry.wkb))
    expected = scene_lonlat_box(scene, (0.25 - 0.05) * WIDTH, (0.5 - 0.1) * HEIGHT, 0.3 * WIDTH, 0.6 * HEIGHT)
    assert hausdorff_deg(stp, expected) < 1e-8
    clipped = scene_lonlat_box(scene, 0.94 * WIDTH, 0.45 * HEIGHT, WIDTH, 0.55 * HEIGHT)
    assert any(hausdorff_deg(shapely.from_wkb(bytes(a.geometry.wkb)), clipped) < 1e-8
               for a in Annotation.objects.filter(object_class__name="Brick Kiln"))


def _geotiff(transform: Affine, crs: str, size=64) -> bytes:
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=size, height=size, count=1, dtype="uint8", crs=crs,
                      transform=transform) as ds:
            ds.write(np.zeros((1, size, size), dtype="uint8"))
        return mem.read()


def test_yolo_georeferenced_chips_and_chips_csv(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    t = transform_from_gdal(scene.geotransform)
    chip_t = t @ Affine.translation(256, 128)  # a 64 px chip at column 256, row 128 of the scene
    archive = tmp_path / "chips.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data.yaml", "names: [Brick Kiln, STP]\n")
        zf.writestr("images/train/chip.a.tif", _geotiff(chip_t, UTM43))
        zf.writestr("labels/train/chip.a.txt", "0 0.5 0.5 0.25 0.25\n")
        # A PNG chip placed through chips.csv (our exports' sidecar), with a geotransform column.
        gt = list((t @ Affine.translation(512, 384)).to_gdal())
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["file", "split", "scene_id", "scene_name", "crs", "geotransform", "width", "height"])
        writer.writerow(["images/val/x_1.png", "val", scene.pk, scene.name, UTM43, json.dumps(gt), 64, 64])
        zf.writestr("chips.csv", table.getvalue())
        zf.writestr("images/val/x_1.png", _png(64, 64))
        zf.writestr("labels/val/x_1.txt", "1 0.5 0.5 0.5 0.5\n")
        # No geotransform column: the native window (resampled: 128 scene px -> 64 chip px) places it.
        window = io.StringIO()
        csv.writer(window).writerows([["file", "scene_id", "width", "height", "col_off", "row_off", "window_width",
                                       "window_height"], ["w.png", scene.pk, 64, 64, 100, 50, 128, 128]])
        zf.writestr("more/chips.csv", window.getvalue())
        zf.writestr("more/images/w.png", _png(64, 64))
        zf.writestr("more/labels/w.txt", "1 0.25 0.25 0.5 0.5\n")
    meta = upload(api, project, archive).json()
    assert meta["inspection"]["objects"] == 3, meta["inspection"]
    with django_capture_on_commit_callbacks(execute=False):
        _, job = run_import(api, meta["id"])
    kiln = shapely.from_wkb(bytes(Annotation.objects.get(object_class__name="Brick Kiln").geometry.wkb))
    assert hausdorff_deg(kiln, scene_lonlat_box(scene, 256 + 24, 128 + 24, 256 + 40, 128 + 40)) < 1e-8
    stp = [shapely.from_wkb(bytes(a.geometry.wkb)) for a in Annotation.objects.filter(object_class__name="STP")]
    for expected in (scene_lonlat_box(scene, 512 + 16, 384 + 16, 512 + 48, 384 + 48),
                     scene_lonlat_box(scene, 100, 50, 164, 114)):
        assert min(hausdorff_deg(got, expected) for got in stp) < 1e-8


def test_yolo_image_matching_no_scene_is_reported(api, project, scene, tmp_path):
    archive = tmp_path / "lost.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data.yaml", "names: [Brick Kiln]\n")
        zf.writestr("images/train/elsewhere.png", _png(32, 32))
        zf.writestr("labels/train/elsewhere.txt", "0 0.5 0.5 0.2 0.2\n")
    inspection = upload(api, project, archive).json()["inspection"]
    assert inspection["objects"] == 0 and inspection["skipped"]["by_reason"] == {"image_unmatched": 1}
    meta = upload(api, project, archive).json()
    assert "nothing to import" in assert_error(
        api.post(f"/api/imports/{meta['id']}/run/", {}, format="json"), 400)["message"]
    # The same file with a chosen scene lands on it.
    assert upload(api, project, archive, scene_id=scene.pk).json()["inspection"]["objects"] == 1


# ------------------------------------------------------------------------------------------ COCO
def test_coco_polygons_bbox_and_rle_with_hole(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    from pycocotools import mask as mask_utils

    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8, order="F")
    mask[100:200, 600:700] = 1
    mask[130:170, 630:670] = 0  # a hole
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    doc = {
        "images": [{"id": 7, "file_name": f"{scene.name}.jpg", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": 1, "name": "Brick Kiln"}, {"id": 2, "name": "STP"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0, "area": 1200,
             "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]]},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [300, 300, 50, 20], "iscrowd": 0, "area": 1000},
            {"id": 3, "image_id": 7, "category_id": 2, "segmentation": rle, "iscrowd": 0, "bbox": [600, 100, 100, 100]},
            {"id": 4, "image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2]},
        ],
    }
    path = tmp_path / "instances_train.json"
    path.write_text(json.dumps(doc))
    meta = upload(api, project, path).json()
    assert meta["inspection"]["format"] == "coco" and meta["inspection"]["objects"] == 3
    assert meta["inspection"]["skipped"]["by_reason"] == {"unknown_image": 1}
    with django_capture_on_commit_callbacks(execute=False):
        _, job = run_import(api, meta["id"])
    assert job.result["per_class"] == {"Brick Kiln": 1, "STP": 2}
    kiln = shapely.from_wkb(bytes(Annotation.objects.get(object_class__name="Brick Kiln").geometry.wkb))
    assert hausdorff_deg(kiln, scene_lonlat_box(scene, 10, 20, 40, 60)) < 1e-8
    holed = [shapely.from_wkb(bytes(a.geometry.wkb)) for a in Annotation.objects.filter(object_class__name="STP")]
    ring = next(g for g in holed if g.interiors)
    expected = Polygon(scene_lonlat_box(scene, 600, 100, 700, 200).exterior.coords,
                       [scene_lonlat_box(scene, 630, 130, 670, 170).exterior.coords])
    assert hausdorff_deg(ring, expected) < 1e-8


# ------------------------------------------------------------------------------------------ command
def test_import_labels_command(project, manager, scene, tmp_path):
    path = geojson_file(tmp_path, [feat(scene_lonlat_box(scene, 10, 10, 30, 30), label="Tank"),
                                   feat(scene_lonlat_box(scene, 50, 10, 70, 30), label="STP")])
    out = io.StringIO()
    call_command("import_labels", str(path), project=project.name, user=manager.username, target="accepted",
                 map=["Tank=skip"], stdout=out)
    assert Detection.objects.filter(scene=scene, source="import").count() == 1
    assert "Imported 1 accepted objects" in out.getvalue() and Job.objects.filter(kind="import").count() == 1


def test_cancelled_import_leaves_nothing(api, project, scene, tmp_path, django_capture_on_commit_callbacks):
    from gpu_tasks.run_context import RunContext

    features = [feat(scene_lonlat_box(scene, (i % 100) * 10, (i // 100) * 10, (i % 100) * 10 + 5,
                                      (i // 100) * 10 + 5), label="STP") for i in range(1200)]
    meta = upload(api, project, geojson_file(tmp_path, features)).json()
    with django_capture_on_commit_callbacks(execute=False):
        response = api.post(f"/api/imports/{meta['id']}/run/", {}, format="json")
    job = Job.objects.get(pk=response.json()["job"]["id"])
    from gpu_tasks.inference.errors import Cancelled

    with pytest.raises(Cancelled):
        import_services.import_run(job=job, run=RunContext(should_cancel=lambda: True))
    assert not Annotation.objects.filter(scene=scene).exists()  # the first batch was rolled back with the rest
    done = import_services.import_job_run(job_id=job.pk)
    assert done.status == JobStatus.SUCCEEDED and done.result["imported"] == 1200
    assert Annotation.objects.filter(scene=scene).count() == 1200


def test_third_party_oddities_3d_coordinates_and_bad_segmentation(api, project, scene, tmp_path,
                                                                  django_capture_on_commit_callbacks):
    ring = [(x, y, 12.5) for x, y in scene_lonlat_box(scene, 10, 10, 40, 40).exterior.coords]
    path = geojson_file(tmp_path, [{"type": "Feature", "properties": {"class": "STP"},
                                    "geometry": {"type": "Polygon", "coordinates": [ring]}}])
    meta = upload(api, project, path).json()
    with django_capture_on_commit_callbacks(execute=False):
        _, job = run_import(api, meta["id"], target="accepted")
    assert job.status == JobStatus.SUCCEEDED and not Detection.objects.get().geometry.hasz
    doc = {"images": [{"id": 1, "file_name": f"{scene.name}.png", "width": WIDTH, "height": HEIGHT}],
           "categories": [{"id": 0, "name": "STP"}],
           "annotations": [{"id": 5, "image_id": 1, "category_id": 0.0, "segmentation": {"size": [2, 2], "counts": 7}},
                           {"id": 6, "image_id": 1, "category_id": "0", "bbox": [5, 5, 10, 10]}]}
    coco = tmp_path / "odd.json"
    coco.write_text(json.dumps(doc))
    inspection = upload(api, project, coco).json()["inspection"]
    assert inspection["skipped"]["by_reason"] == {"unreadable_geometry": 1}
    assert inspection["classes"] == [{"name": "STP", "count": 1, "class_id": ObjectClass.objects.get(
        project=project, name="STP").pk}]
