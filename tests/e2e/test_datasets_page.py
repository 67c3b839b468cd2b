"""Label import and dataset export in Chromium (issue 11): a manager imports a GeoJSON with an unknown class name
through the dialog (mapped to a new class) and reads the report; exports GeoJSON and a YOLO detection set through the
export dialog, downloads each zip and checks what it holds; saves an export and runs it again. A viewer is offered
neither."""

import io
import json
import zipfile

import pytest
from django.utils import timezone
from playwright.sync_api import expect
from shapely.geometry import box, mapping

from annotate.models import Annotation, Detection, DetectionSource, DetectionStatus, ObjectClass, Role
from annotate.services import membership_set
from datasets.models import ExportDefinition
from gpu_tasks.models import Job, JobKind, JobStatus
from tests.conftest import NEON, make_user
from tests.e2e.test_browser import log_in
from tests.e2e.test_review_workspace import shot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def labels_file(tmp_path, scene, existing_class: str):
    """Three boxes inside the scene (two of an unknown class, one of an existing one) and one far outside it."""
    x0, y0, x1, y1 = scene.footprint.envelope.extent
    w, h = (x1 - x0) / 10, (y1 - y0) / 10

    def at(i, j):
        return mapping(box(x0 + i * w, y0 + j * h, x0 + (i + 1.5) * w, y0 + (j + 1.2) * h))

    features = [
        {"type": "Feature", "geometry": at(1, 1), "properties": {"label": "Solar Farm"}},
        {"type": "Feature", "geometry": at(5, 2), "properties": {"label": "Solar Farm"}},
        {"type": "Feature", "geometry": at(3, 6), "properties": {"label": existing_class}},
        {"type": "Feature", "geometry": mapping(box(10.0, 10.0, 10.001, 10.001)),
         "properties": {"label": "Solar Farm"}},
    ]
    path = tmp_path / "field survey, v2.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def download_zip(page, job_row) -> zipfile.ZipFile:
    """Click a finished export's download link; the zip it saves."""
    with page.expect_download() as info:
        job_row.get_by_role("link", name="Download zip").click()
    return zipfile.ZipFile(io.BytesIO(open(info.value.path(), "rb").read()))


def finished_row(page, job_id: int):
    row = page.locator(f"#export-jobs [data-job-id='{job_id}']")
    expect(row).to_have_attribute("data-status", "succeeded", timeout=60_000)
    return row


def open_project(page, base: str, project) -> None:
    """Open the project page and wait until its lists have loaded (they move the sections down as they fill)."""
    page.goto(f"{base}/projects/{project.pk}/")
    page.wait_for_selector("#scenes .scene-card, #scenes p:not(:has-text('Loading'))")
    page.wait_for_selector("#class-admin li[data-class-id]")
    page.wait_for_selector("#export-jobs > *")


def latest_export() -> Job:
    return Job.objects.filter(kind=JobKind.EXPORT).order_by("-pk").first()


def test_a_manager_imports_labels_and_exports_datasets_and_a_viewer_is_offered_neither(
    page, second_page, live_server, project, manager, viewer, ingested, tmp_path
):
    scene = ingested(NEON)
    existing = ObjectClass.objects.filter(project=project).order_by("position").first()
    assert existing is not None, "the project fixture has classes"
    base = live_server.url
    log_in(page, base)
    open_project(page, base, project)

    # Import: open the dialog with the keyboard, choose the file, upload it with Enter on the button.
    opener = page.locator("#import-open")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#import-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#import-file")).to_be_focused()
    page.set_input_files("#import-file", str(labels_file(tmp_path, scene, existing.name)))
    page.locator("#import-upload").focus()
    page.keyboard.press("Enter")
    inspection = dialog.locator(".import-inspection")
    expect(inspection).to_be_visible()
    expect(inspection.locator("[data-fact=format]")).to_have_text("GeoJSON")
    expect(inspection.locator("[data-fact=objects]")).to_contain_text("3 (from 4 features)")
    expect(inspection.locator("[data-fact=crs]")).to_contain_text("4326")
    expect(inspection.locator(".import-skipped")).to_contain_text("1 skipped")
    unknown = dialog.get_by_label("Class for Solar Farm")
    expect(unknown).to_have_value("new")  # a manager's default for an unknown name: a new class
    expect(unknown).to_be_focused()  # the first choice to make has the focus
    expect(dialog.get_by_label(f"Class for {existing.name}")).to_have_value(str(existing.pk))
    # Import as accepted objects: the keyboard moves the target from examples to accepted.
    dialog.locator("input[name=target][value=examples]").focus()
    page.keyboard.press("ArrowDown")
    expect(dialog.locator("input[name=target][value=accepted]")).to_be_checked()
    shot(page, "datasets-import-inspection.png")
    dialog.locator("#import-run").click()
    report = dialog.locator("#import-report")
    expect(report).to_be_visible(timeout=30_000)
    expect(report.locator(".import-imported")).to_have_text("Imported 3 accepted objects.")
    expect(report.locator("li[data-name='Solar Farm']")).to_have_attribute("data-count", "2")
    expect(report.locator(".import-skipped li[data-reason=outside_every_scene]")).to_contain_text(
        "outside every scene of the project: 1")
    shot(page, "datasets-import-report.png")
    solar = ObjectClass.objects.get(project=project, name="Solar Farm")
    imported = Detection.objects.filter(scene=scene, source=DetectionSource.IMPORT, status=DetectionStatus.ACCEPTED)
    assert imported.count() == 3 and imported.filter(object_class=solar).count() == 2
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.wait_for_selector("#class-admin li[data-class-name='Solar Farm']")  # the class list was re-read

    # Export GeoJSON (the default format), not saved; the zip holds the three objects.
    page.locator("#export-open").click()
    export_dialog = page.locator("#export-dialog")
    expect(export_dialog).to_be_visible()
    expect(page.locator("#export-format")).to_be_focused()
    expect(export_dialog.locator("#export-chip-options")).to_be_hidden()  # chip options only for chip formats
    expect(export_dialog.locator(f"input[name=scene_ids][value='{scene.pk}']")).to_be_attached()
    export_dialog.get_by_label("Save this export").uncheck()
    shot(page, "datasets-export-dialog.png")
    export_dialog.get_by_role("button", name="Export", exact=True).click()
    expect(export_dialog).to_be_hidden()
    geojson_job = latest_export()
    assert geojson_job.params["format"] == "geojson"
    row = finished_row(page, geojson_job.pk)
    expect(row.locator(".export-objects")).to_have_text("Objects selected 3, written 3, labels 3")
    archive = download_zip(page, row)
    collection = json.loads(archive.read("objects.geojson"))
    assert len(collection["features"]) == 3
    assert sorted(f["properties"]["class"] for f in collection["features"]) == sorted(
        ["Solar Farm", "Solar Farm", existing.name])
    assert ExportDefinition.objects.count() == 0  # unticked: not saved

    # Bad choices are told in words and keep the dialog open: nothing rejected to export (the server says so),
    # then no status at all (the dialog says so).
    page.locator("#export-open").click()
    export_dialog.get_by_label("accepted").uncheck()
    export_dialog.get_by_label("rejected").check()
    export_dialog.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#export-error")).to_contain_text("No object matches this export (rejected objects")
    export_dialog.get_by_label("rejected").uncheck()
    export_dialog.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#export-error")).to_have_text("Tick at least one status to export.")
    expect(export_dialog).to_be_visible()
    export_dialog.get_by_label("accepted").check()
    assert latest_export().pk == geojson_job.pk  # neither started a job

    # Export a YOLO detection set, saved by name; chosen and submitted from the keyboard.
    page.locator("#export-format").focus()
    page.locator("#export-format").select_option("yolo_detect")
    expect(export_dialog.locator("#export-chip-options")).to_be_visible()
    expect(export_dialog.locator("#export-gpkg-field")).to_be_hidden()
    page.locator("#export-chip-size").fill("128")
    # Fractions that leave nothing to train on: the server's field message, in words.
    page.locator("#export-val-fraction").fill("0.6")
    page.locator("#export-test-fraction").fill("0.5")
    export_dialog.get_by_role("button", name="Export", exact=True).click()
    expect(page.locator("#export-error")).to_contain_text(
        "val_fraction + test_fraction must leave something to train on")
    page.locator("#export-test-fraction").fill("0")
    page.locator("#export-val-fraction").fill("0.25")
    export_dialog.get_by_label("Save this export").check()
    page.locator("#export-name").focus()
    page.keyboard.type("Kilns YOLO")
    page.keyboard.press("Enter")
    expect(export_dialog).to_be_hidden()
    yolo_job = latest_export()
    assert yolo_job.params["format"] == "yolo_detect" and yolo_job.params["chip_size"] == 128
    assert yolo_job.params["val_fraction"] == 0.25 and yolo_job.params["gsd_m"] is None
    row = finished_row(page, yolo_job.pk)
    expect(row.locator(".export-chips")).to_contain_text("train")
    expect(row.locator(".export-per-class")).to_contain_text("Solar Farm")
    archive = download_zip(page, row)
    names = archive.namelist()
    assert "data.yaml" in names
    assert "Solar Farm" in archive.read("data.yaml").decode()
    labels = [n for n in names if n.startswith("labels/") and n.endswith(".txt")]
    assert labels and any(archive.read(n).strip() for n in labels)
    assert any(n.startswith("images/") for n in names)
    page.locator("#exports-section").scroll_into_view_if_needed()
    shot(page, "datasets-exports-list.png")
    # Opened again, the dialog starts unnamed and unsaved (the last name would overwrite that saved export).
    page.locator("#export-open").click()
    expect(page.locator("#export-name")).to_have_value("")
    expect(export_dialog.get_by_label("Save this export")).not_to_be_checked()
    page.keyboard.press("Escape")
    expect(export_dialog).to_be_hidden()

    # The saved export is listed; run it again from the list.
    definition = ExportDefinition.objects.get(project=project, name="Kilns YOLO")
    saved = page.locator(f"#export-definitions [data-definition-id='{definition.pk}']")
    expect(saved).to_be_visible()
    saved.get_by_role("button", name="Run Kilns YOLO again").click()
    expect(page.locator("#export-jobs .export-job")).to_have_count(3)
    again = latest_export()
    assert again.pk != yolo_job.pk and again.params.get("definition_id") == definition.pk
    finished_row(page, again.pk)
    assert Job.objects.get(pk=again.pk).status == JobStatus.SUCCEEDED
    expect(saved).to_contain_text("last run succeeded")
    page.locator("#exports-section").scroll_into_view_if_needed()
    shot(page, "datasets-export-run-again.png")
    # Deleting the saved export removes it from the list.
    saved.get_by_role("button", name="Delete Kilns YOLO").click()
    expect(saved).to_have_count(0)
    assert not ExportDefinition.objects.filter(pk=definition.pk).exists()

    # A viewer sees the project without import or export.
    log_in(second_page, base, username="viewer", password="pw-viewer")
    with second_page.expect_response(lambda r: r.url.endswith(f"/api/projects/{project.pk}/me/")):
        second_page.goto(f"{base}/projects/{project.pk}/")
    second_page.wait_for_selector("#class-admin li[data-class-id]")
    for selector in ("#import-open", "#export-open", "#import-dialog", "#export-dialog"):
        assert second_page.locator(selector).count() == 0, selector
    expect(second_page.locator("#datasets-grid")).to_be_hidden()
    shot(second_page, "datasets-as-viewer.png")
    # The two refused exports' 400s are the only errors the browser logged.
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert page.console_errors == [refused] * 2
    assert not second_page.console_errors, second_page.console_errors


def test_an_annotator_imports_examples_only_and_maps_unknown_names_to_existing_classes_or_skip(
    page, live_server, project, ingested, tmp_path
):
    scene = ingested(NEON)
    annotator = make_user("anna")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    existing = ObjectClass.objects.filter(project=project).order_by("position").first()
    log_in(page, live_server.url, username="anna", password="pw-anna")
    open_project(page, live_server.url, project)
    page.locator("#import-open").click()
    dialog = page.locator("#import-dialog")
    # A file that cannot be read is told in words, and the dialog stays at its first step.
    broken = tmp_path / "broken.geojson"
    broken.write_text("{not json")
    page.set_input_files("#import-file", str(broken))
    page.locator("#import-upload").click()
    expect(page.locator("#import-error")).to_contain_text("The file is not valid JSON")
    expect(dialog.locator(".import-inspection")).to_have_count(0)
    page.set_input_files("#import-file", str(labels_file(tmp_path, scene, existing.name)))
    page.locator("#import-upload").click()
    unknown = dialog.get_by_label("Class for Solar Farm")
    expect(unknown).to_have_value("skip")  # an annotator cannot add classes: unknown names are skipped by default
    expect(page.locator("#import-error")).to_be_hidden()
    assert unknown.locator("option[value=new]").count() == 0
    assert dialog.locator("input[name=target][value=accepted]").count() == 0  # accepted objects: managers only
    expect(page.locator("#export-open")).to_be_visible()  # annotators export
    # Skipping every class is refused by the server, in words.
    dialog.get_by_label(f"Class for {existing.name}").select_option("skip")
    dialog.locator("#import-run").click()
    expect(page.locator("#import-error")).to_contain_text("Every class is mapped to skip")
    dialog.get_by_label(f"Class for {existing.name}").select_option(str(existing.pk))
    unknown.select_option(str(existing.pk))  # or map the unknown name to an existing class
    shot(page, "datasets-import-as-annotator.png")
    dialog.locator("#import-run").click()
    expect(dialog.locator(".import-imported")).to_have_text("Imported 3 examples.", timeout=30_000)
    assert Annotation.objects.filter(scene=scene, object_class=existing).count() == 3
    assert not ObjectClass.objects.filter(project=project, name="Solar Farm").exists()
    assert len(page.console_errors) == 2 and all("status of 400" in e for e in page.console_errors)  # the refusals


def test_a_running_export_shows_its_progress_and_is_cancelled_from_the_list(page, live_server, project, manager):
    job = Job.objects.create(
        kind=JobKind.EXPORT, project=project, created_by=manager, status=JobStatus.RUNNING, progress=0.4,
        message="Wrote 40 of 100 chips", params={"format": "yolo_segment", "name": "Big one"},
        started_at=timezone.now(), heartbeat_at=timezone.now(),
    )
    log_in(page, live_server.url)
    open_project(page, live_server.url, project)
    row = page.locator(f"#export-jobs [data-job-id='{job.pk}']")
    expect(row).to_have_attribute("data-status", "running")
    expect(row.locator(".job-pct")).to_have_text("40%")
    expect(row.locator(".job-message")).to_have_text("Wrote 40 of 100 chips")
    expect(row).to_contain_text("Big one")
    page.locator("#exports-section").scroll_into_view_if_needed()
    shot(page, "datasets-export-running.png")
    row.get_by_role("button", name="Cancel Big one").click()
    for _ in range(50):
        job.refresh_from_db()
        if job.cancel_requested:
            break
        page.wait_for_timeout(100)
    assert job.cancel_requested
    expect(row.locator(".job-cancel")).to_have_text("Cancelling…")
    # The worker stops at its next batch: the row follows it to the end, without a Cancel button or a download.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled")
    expect(row).to_have_attribute("data-status", "cancelled")
    expect(row.locator(".job-cancel")).to_have_count(0)
    expect(row.locator(".export-download")).to_have_count(0)
