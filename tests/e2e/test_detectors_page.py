"""The detector loop in Chromium (issue 12, sections 2-4): a manager trains a YOLO model on the accepted objects from
the project page (a real 1-epoch CPU run), sees its epoch chart and the new version, makes it current, compares it
with an earlier version (metrics and per-class accuracy-area figures side by side) and measures a YOLO version in the
accuracy panel; on the scene page a probe run proposes candidates that show on the map and name their proposer on
the card, a YOLO proposal names its model and verification, the trained version runs on the scene, and a probe on a
never-searched scene says why it cannot start. A running training's chart grows as the worker reports epochs and a
cancel keeps a version. A manager renames a version in its row and deletes one after an in-page confirmation (its
unreviewed proposals and weights go, reviewed objects stay). A reviewer sees the versions but no training form, no
"Make current", no renaming and no deleting; an annotator is told in the page why a training cannot start."""

import pytest
from django.conf import settings
from django.contrib.gis.geos import Polygon
from playwright.sync_api import expect

from annotate.models import Detection, DetectionSource, DetectionStatus, Proposer, Role
from annotate.services import membership_set
from detectors.models import ModelVersion
from gpu_tasks import runtime
from gpu_tasks.models import Job, JobKind, JobStatus
from review.accuracy_models import AccuracyArea
from tests.conftest import NEON, make_user
from tests.e2e.test_browser import log_in
from tests.e2e.test_review_workspace import shot
from tests.e2e.test_scene_search import card_facts, page_points, wait_for_features_at
from tests.gpu_tasks.support import ColourEmbedder, px_box_to_polygon
from tests.gpu_tasks.test_update_proposals import OBJECTS, lookalike_scene, searched

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HISTORY = [{"epoch": e, "losses": {"box_loss": 2.0 - e / 4, "cls_loss": 3.0 - e / 3, "dfl_loss": 1.5 - e / 10},
            "metrics": {"map50": 0.2 * e, "map50_95": 0.1 * e, "precision": 0.3 * e, "recall": 0.25 * e}}
           for e in (1, 2, 3)]


@pytest.fixture
def scene(tmp_path, ingested):
    """The synthetic 1 m scene with red kilns, dark-red look-alikes and blue ponds (tests/gpu_tasks)."""
    scene = ingested(lookalike_scene(tmp_path / "lookalikes.tif"))
    scene.stretch = [[0.0, 255.0]] * len(scene.stretch)
    scene.save(update_fields=["stretch"])
    return scene


@pytest.fixture
def embedder():
    """The colour embedder behind runtime.embedder() (the live server is a thread of this process)."""
    with runtime.use_embedder(ColourEmbedder()) as emb:
        yield emb


def at(scene, name: str, inset: float = 4) -> Polygon:
    return px_box_to_polygon(scene, OBJECTS[name][1], inset=inset)


def add(scene, name: str, class_name: str, status: str, source: str, **more) -> Detection:
    polygon = at(scene, name)
    return Detection.objects.create(scene=scene, object_class=scene.project.classes.get(name=class_name),
                                    geometry=polygon, bbox=polygon.envelope, status=status, source=source, **more)


def earlier_version(project, manager, number=1, name="earlier") -> ModelVersion:
    """A version as a training of last week left it (its weights are never read here)."""
    classes = [{"index": c.index, "class_id": c.pk, "name": c.name} for c in project.classes.order_by("index")]
    return ModelVersion.objects.create(
        project=project, number=number, name=name, classes=classes, gsd_m=1.0, imgsz=256, weights="none.pt",
        params={"base_model": "yolov8n.yaml", "epochs": 5, "imgsz": 256, "batch": 8, "patience": 20},
        metrics={"map50": 0.6, "map50_95": 0.3, "precision": 0.9, "recall": 0.75}, history=HISTORY,
        dataset={"parameters": {"name": "accepted set"}, "counts": {"objects_written": 2}}, stopped_early=True,
        created_by=manager)


@pytest.fixture
def loop(scene, project, manager):
    """Examples and one search (the grid cached), two accepted kilns, two rejected look-alikes, the whole scene an
    accuracy area, and v1 with two proposals there: one on a kiln, one on a look-alike."""
    searched(scene, manager)
    Detection.objects.filter(scene=scene, status=DetectionStatus.PROPOSED).delete()  # the map shows the new ones
    for name in ("red_b", "red_c"):
        add(scene, name, "Brick Kiln", DetectionStatus.ACCEPTED, DetectionSource.MANUAL)
    for name in ("look_1", "look_2"):
        add(scene, name, "Brick Kiln", DetectionStatus.REJECTED, DetectionSource.SEARCH, proposer=Proposer.SEARCH)
    whole = Polygon.from_bbox(scene.footprint.extent)
    AccuracyArea.objects.create(project=project, scene=scene, geometry=whole, created_by=manager)
    v1 = earlier_version(project, manager)
    kiln = project.classes.get(name="Brick Kiln").pk
    for name, score in (("red_b", 0.8), ("look_3", 0.6)):
        add(scene, name, "Brick Kiln", DetectionStatus.PROPOSED, DetectionSource.YOLO, proposer=Proposer.YOLO,
            model_version=v1, score=score,
            proposer_scores={"yolo_class_id": kiln, "yolo_score": score, "verify_class_id": kiln, "verify_score": 0.7,
                             "verify_score_yolo_class": 0.7, "relabelled": False})
    return v1


def go_to_scene(page, base: str, scene) -> None:
    """Open a scene page (already logged in) and wait until its panel has loaded."""
    page.goto(f"{base}/scenes/{scene.pk}/")
    page.wait_for_function("Number(document.getElementById('map').dataset.tilesLoaded || 0) >= 1", timeout=30_000)
    page.wait_for_selector("#search-panel[data-ready='1']")


def open_project(page, base: str, project) -> None:
    page.goto(f"{base}/projects/{project.pk}/")
    page.wait_for_selector("#detector-versions table, #detector-versions p")
    page.wait_for_selector("#accuracy-areas li")


def test_a_manager_trains_compares_measures_and_proposes(page, live_server, project, manager, scene, loop, ingested,
                                                         embedder):
    v1 = loop
    base = live_server.url
    log_in(page, base)
    open_project(page, base, project)
    section = page.locator("#detectors-section")
    expect(section.get_by_role("heading", name="Detectors", exact=True)).to_be_visible()
    expect(page.locator(f"#detector-versions tr[data-version-id='{v1.pk}']")).to_contain_text("3 of 5 · stopped early")

    # Train on every accepted object: 1 epoch at 64 px, submitted with Enter from a field of the form.
    expect(page.locator("#train-dataset")).to_have_value("")
    expect(page.locator("#train-dataset option").first).to_have_text("All accepted objects")
    expect(page.locator("#train-base-model")).to_have_value("yolov8n.yaml")
    page.get_by_label("Model name").fill("quick")
    page.get_by_label("Epochs", exact=True).fill("1")
    page.get_by_label("Image size (px)").fill("64")
    expect(page.get_by_label("Image size (px)")).to_have_accessible_description("empty: the chips' size")
    page.get_by_label("Batch", exact=True).fill("4")
    page.get_by_label("Patience (epochs)").press("Enter")
    training = page.locator("#detector-trainings .training-job").first
    expect(training).to_have_attribute("data-status", "succeeded", timeout=180_000)
    job = Job.objects.get(kind=JobKind.TRAIN)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.params["epochs"] == 1 and job.params["imgsz"] == 64 and job.params["definition_id"] is None
    v2 = ModelVersion.objects.get(project=project, number=2)
    assert v2.name == "quick" and len(v2.history) == 1
    expect(training.locator(".epoch-charts")).to_have_attribute("data-epochs", "1")
    expect(training.locator(".epoch-metrics .epoch-dot")).to_have_count(2)  # mAP50 and mAP50-95 at epoch 1
    expect(training.locator(".training-made")).to_contain_text("Made v2 quick")
    row2 = page.locator(f"#detector-versions tr[data-version-id='{v2.pk}']")
    expect(row2).to_contain_text("1 of 1")
    expect(row2).to_contain_text("2 objects")
    training.scroll_into_view_if_needed()
    shot(page, "detectors-trained.png")

    # Make the new version current (then v1 is offered it and v2 is marked).
    row2.get_by_role("button", name="Make v2 quick current").click()
    expect(row2.locator(".badge-current")).to_have_text("current")
    expect(page.locator(f"#detector-versions tr[data-version-id='{v1.pk}']")
           .get_by_role("button", name="Make v1 earlier current")).to_be_visible()
    v2.refresh_from_db()
    assert v2.is_current

    # Compare both: parameters and metrics per column, and the per-class figures in the accuracy area.
    compare = page.locator("#detector-compare")
    expect(compare).to_be_disabled()
    page.get_by_label("Compare v1 earlier").check()
    page.get_by_label("Compare v2 quick").check()
    expect(compare).to_have_text("Compare 2 versions")
    compare.click()
    table = page.locator("#detector-comparison-table")
    expect(table.locator("thead th")).to_have_text(["", "v1 earlier", "v2 quick (current)"])
    expect(table.locator("tr[data-row=imgsz] td")).to_have_text(["256 px", "64 px"])
    expect(table.locator("tr[data-row=epochs] td").first).to_have_text("3 of 5 · stopped early")
    expect(table.locator("tr[data-row=map50] td").first).to_have_text("0.600")
    kiln_row = table.locator("tr[data-class-name='Brick Kiln'] td")
    expect(kiln_row.first).to_have_text("AP50 0.50 · P 0.50 · R 0.50 (1/2)")
    expect(kiln_row.nth(1)).to_contain_text("(0/2)")
    expect(table).to_be_focused()
    table.scroll_into_view_if_needed()
    shot(page, "detectors-compare.png")

    # The accuracy panel measures one YOLO version.
    page.locator("#accuracy-source").select_option(label="YOLO v1 earlier")
    page.locator("#accuracy-measure").click()
    result = page.locator("#accuracy-results tr[data-class-name='Brick Kiln'] td")
    expect(result.nth(1)).to_have_text("2")  # reviewed kilns
    expect(result.nth(2)).to_have_text("2")  # v1's proposals
    expect(result.nth(3)).to_have_text("1")
    expect(result.nth(4)).to_have_text("0.50")
    expect(page.locator(".accuracy-table")).to_contain_text("proposer: YOLO v1 earlier")
    page.locator("#accuracy-section").scroll_into_view_if_needed()
    shot(page, "detectors-accuracy.png")
    assert page.console_errors == []

    # The scene page: the proposer choice lists the probes and the versions (current first); a probe run proposes.
    go_to_scene(page, base, scene)
    choice = page.locator("#proposer-choice")
    expect(choice.locator("option")).to_have_text(["Prototype search", "Probe (logistic)", "Probe (kNN)",
                                                    "YOLO v2 quick (current)", "YOLO v1 earlier"])
    choice.select_option(label="Probe (logistic)")
    expect(page.locator("#search-button")).to_have_text("Run probe")
    expect(page.locator("#search-scale-field")).to_be_hidden()
    page.locator("#search-button").click()
    page.wait_for_selector("#job-box[data-status='succeeded']", timeout=60_000)
    box = page.locator("#job-box")
    assert box.get_attribute("data-kind") == "probe"
    expect(box).to_contain_text("Probe proposals (logistic)")
    probe = list(Detection.objects.filter(scene=scene, proposer=Proposer.PROBE))
    assert probe, "the probe proposed candidates"
    others = Detection.objects.filter(scene=scene).exclude(proposer=Proposer.PROBE)
    alone = next(d for d in probe if not others.filter(geometry__intersects=d.geometry).exists())
    centre = alone.geometry.centroid.transform(3857, clone=True)
    wait_for_features_at(page, (centre.x, centre.y), 1)
    page.mouse.click(*page_points(page, [[centre.x, centre.y]])[0])
    card = page.locator("#detection-card")
    expect(card).to_have_attribute("data-detection-id", str(alone.pk))
    expect(card.locator(".card-proposer")).to_have_text(f"Probe (logistic) {alone.score:.2f}")
    shot(page, "detectors-probe-scene.png")

    # A YOLO proposal's card names its version and the verification.
    look = Detection.objects.get(scene=scene, model_version=v1, score=0.6)
    centre = look.geometry.centroid.transform(3857, clone=True)
    page.keyboard.press("Escape")
    page.mouse.click(*page_points(page, [[centre.x, centre.y]])[0])
    expect(card).to_have_attribute("data-detection-id", str(look.pk))
    facts = card_facts(card)
    assert facts["Proposed by"] == "YOLO v1 earlier 0.60 · verified 0.70", facts
    page.keyboard.press("Escape")

    # The trained version proposes on the scene through its tiled job, verified against the cached grid.
    choice.select_option(label="YOLO v2 quick (current)")
    expect(page.locator("#search-button")).to_have_text("Run YOLO v2")
    expect(page.locator("#search-threshold-field")).to_be_hidden()
    expect(page.locator("#search-scope")).to_be_hidden()
    expect(page.get_by_label("Confidence")).to_have_value("0.25")
    expect(page.get_by_label("Verify each box against the examples (relabel where they disagree)")).to_be_checked()
    page.locator(".sidebar").evaluate("s => s.scrollTop = s.scrollHeight")
    shot(page, "detectors-yolo-choice.png")
    page.locator("#search-button").click()
    page.wait_for_selector("#job-box[data-kind='predict'][data-status='succeeded']", timeout=120_000)
    expect(box).to_contain_text("YOLO v2 quick proposals")
    predict = Job.objects.get(kind=JobKind.PREDICT)
    assert predict.params["model_version"] == v2.pk and predict.params["verify"] is True
    assert predict.result["tiles"] > 1

    # A scene never searched has no cached embeddings: the probe says so in the panel (409) and starts nothing.
    other = ingested(NEON)
    go_to_scene(page, base, other)
    page.locator("#proposer-choice").select_option(label="Probe (kNN)")
    page.locator("#search-button").click()
    error = page.locator("#panel-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The kNN probe could not start:")
    assert not Job.objects.filter(kind=JobKind.PROBE, scene=other).exists()
    shot(page, "detectors-probe-refused.png")


def test_a_reviewer_sees_versions_but_may_neither_train_nor_choose(page, live_server, project, manager, scene):
    earlier_version(project, manager)
    current = earlier_version(project, manager, number=2, name="")
    current.is_current = True
    current.save()
    reviewer = make_user("rev")
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    base = live_server.url
    log_in(page, base, "rev", "pw-rev")
    open_project(page, base, project)
    rows = page.locator("#detector-versions-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#detector-train")).to_have_count(0)
    expect(page.get_by_role("button", name="Make current")).to_have_count(0)
    expect(page.locator(f"tr[data-version-id='{current.pk}'] .badge-current")).to_have_text("current")
    section = page.locator("#detectors-section")
    expect(section.get_by_role("button", name="Rename")).to_have_count(0)
    expect(section.get_by_role("button", name="Delete")).to_have_count(0)
    expect(section.get_by_role("columnheader", name="Manage")).to_have_count(0)
    page.get_by_label("Compare v1 earlier").check()
    page.get_by_label("Compare v2", exact=True).check()
    page.locator("#detector-compare").click()
    expect(page.locator("#detector-comparison-table tr[data-row=no-areas] td").first).to_contain_text(
        "No accuracy area yet")
    expect(page.locator("#accuracy-source option", has_text="YOLO v2 (current)")).to_have_count(1)
    shot(page, "detectors-reviewer.png")
    assert page.console_errors == []


def test_an_annotator_is_told_why_a_training_cannot_start(page, live_server, project, manager, scene):
    annotator = make_user("ann")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    base = live_server.url
    log_in(page, base, "ann", "pw-ann")
    open_project(page, base, project)
    expect(page.locator("#detector-versions")).to_contain_text("No model yet")
    page.locator("#train-submit").focus()
    page.keyboard.press("Enter")
    error = page.locator("#train-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Training could not start:")
    assert not Job.objects.filter(kind=JobKind.TRAIN).exists()
    shot(page, "detectors-annotator-refused.png")


def test_a_running_training_draws_each_epoch_and_is_cancelled_keeping_a_version(page, live_server, project,
                                                                                 manager):
    """The page follows a training a worker runs (simulated here by writing the Job row as the worker does)."""
    job = Job.objects.create(kind=JobKind.TRAIN, project=project, created_by=manager, status=JobStatus.RUNNING,
                             params={"name": "long", "base_model": "yolov8s.yaml", "epochs": 5},
                             result={"history": HISTORY[:2], "epochs": 5}, progress=0.46,
                             message="Epoch 2 of 5: mAP50 0.400")
    base = live_server.url
    log_in(page, base)
    open_project(page, base, project)
    row = page.locator(f"#detector-trainings [data-job-id='{job.pk}']")
    expect(row).to_have_attribute("data-status", "running")
    expect(row.locator(".job-head")).to_contain_text("Training “long” · yolov8s.yaml")
    expect(row.locator(".epoch-charts")).to_have_attribute("data-epochs", "2")
    expect(row.locator(".epoch-metrics polyline[data-series='mAP50']")).to_have_attribute("data-points", "2")
    expect(row.locator(".epoch-metrics svg")).to_have_attribute(
        "aria-label", f"Validation of Training “long” · yolov8s.yaml · job {job.pk} per epoch, after epoch 2 of 5: "
                      "mAP50 0.400, mAP50-95 0.200")
    row.scroll_into_view_if_needed()
    shot(page, "detectors-running.png")

    # The worker reports a third epoch: the chart grows while the page polls.
    Job.objects.filter(pk=job.pk).update(result={"history": HISTORY, "epochs": 5}, progress=0.64,
                                         message="Epoch 3 of 5: mAP50 0.600")
    expect(row.locator(".epoch-charts")).to_have_attribute("data-epochs", "3")
    expect(row.locator(".job-message")).to_have_text("Epoch 3 of 5: mAP50 0.600")

    # Cancel from the keyboard: the row says so; the worker stops at the end of the epoch keeping the best weights.
    row.get_by_role("button", name=f"Cancel Training “long” · yolov8s.yaml · job {job.pk}").focus()
    page.keyboard.press("Enter")
    expect(row.get_by_role("button", name=f"Cancel Training “long” · yolov8s.yaml · job {job.pk}")).to_have_text(
        "Cancelling…")
    job.refresh_from_db()
    assert job.cancel_requested
    version = earlier_version(project, manager, name="long")
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.CANCELLED, message=f"Stopped after epoch 3 of 5; {version} keeps the best weights so far",
        result={"history": HISTORY, "epochs": 5, "model_version": version.pk, "label": str(version),
                "metrics": version.metrics})
    expect(row).to_have_attribute("data-status", "cancelled")
    expect(row.locator(".training-made")).to_have_text("Made v1 long: mAP50 0.600, mAP50-95 0.300.")
    expect(page.locator(f"#detector-versions tr[data-version-id='{version.pk}']")).to_contain_text(
        "3 of 5 · stopped early")
    assert page.console_errors == []


def test_a_manager_renames_and_deletes_versions_in_the_page(page, live_server, project, manager, scene):
    """Rename with Enter and Escape from the keyboard and Save with the mouse; the label changes in the table, the
    comparison and the accuracy panel. Delete asks in the row; Escape and Keep keep; a version deleted meanwhile
    says why in the page."""
    v1 = earlier_version(project, manager)
    v2 = earlier_version(project, manager, number=2, name="second")
    v2.is_current = True
    v2.save()
    weights = settings.DATA_DIR / "models" / "yolo" / "v3.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    v3 = earlier_version(project, manager, number=3, name="doomed")
    v3.weights = str(weights.relative_to(settings.DATA_DIR))
    v3.save()
    ghost = earlier_version(project, manager, number=4, name="ghost")
    proposed = add(scene, "look_3", "Brick Kiln", DetectionStatus.PROPOSED, DetectionSource.YOLO,
                   proposer=Proposer.YOLO, model_version=v3, score=0.6)
    accepted = add(scene, "red_b", "Brick Kiln", DetectionStatus.ACCEPTED, DetectionSource.YOLO,
                   proposer=Proposer.YOLO, model_version=v3, score=0.8)
    base = live_server.url
    log_in(page, base)
    open_project(page, base, project)
    row = {v.pk: page.locator(f"#detector-versions tr[data-version-id='{v.pk}']") for v in (v1, v2, v3, ghost)}
    expect(page.get_by_role("columnheader", name="Manage")).to_be_visible()

    # Compare v1 and v2 first: a rename shows in the open comparison.
    page.get_by_label("Compare v1 earlier").check()
    page.get_by_label("Compare v2 second").check()
    page.locator("#detector-compare").click()
    head = page.locator("#detector-comparison-table thead th")
    expect(head).to_have_text(["", "v1 earlier", "v2 second (current)"])

    # Keyboard: Rename opens the editor with the name, focused; Escape leaves it as it was, focus on Rename.
    rename2 = row[v2.pk].get_by_role("button", name="Rename v2 second")
    rename2.focus()
    page.keyboard.press("Enter")
    name = row[v2.pk].get_by_label("New name of v2")
    expect(name).to_be_focused()
    expect(name).to_have_value("second")
    expect(rename2).to_be_hidden()
    page.keyboard.press("Control+A")
    page.keyboard.type("thrown away")
    page.keyboard.press("Escape")
    expect(name).to_have_count(0)
    expect(row[v2.pk].locator(".detector-label")).to_have_text("v2 second")
    expect(rename2).to_be_focused()

    # Enter saves: the table, the comparison and the accuracy panel say the new name; the focus is back on Rename.
    page.keyboard.press("Enter")
    expect(name).to_be_focused()
    name.fill("spring kilns")
    row[v2.pk].scroll_into_view_if_needed()
    shot(page, "detectors-rename-open.png")
    name.press("Enter")
    expect(row[v2.pk].locator(".detector-label")).to_have_text("v2 spring kilns")
    expect(row[v2.pk].get_by_role("button", name="Rename v2 spring kilns")).to_be_focused()
    expect(head).to_have_text(["", "v1 earlier", "v2 spring kilns (current)"])
    expect(page.locator("#accuracy-source option", has_text="YOLO v2 spring kilns (current)")).to_have_count(1)
    expect(page.locator("#detector-versions-status")).to_have_text("Renamed v2 second to v2 spring kilns.")
    v2.refresh_from_db()
    assert v2.name == "spring kilns"

    # Mouse: rename v1 with Save; an emptied name leaves the bare number.
    row[v1.pk].get_by_role("button", name="Rename v1 earlier").click()
    row[v1.pk].get_by_label("New name of v1").fill("")
    row[v1.pk].get_by_role("button", name="Save").click()
    expect(row[v1.pk].locator(".detector-label")).to_have_text("v1")
    expect(head).to_have_text(["", "v1", "v2 spring kilns (current)"])
    v1.refresh_from_db()
    assert v1.name == ""

    # Delete asks in the row (the harmless choice focused); Escape keeps, so does Keep.
    delete3 = row[v3.pk].get_by_role("button", name="Delete v3 doomed")
    delete3.click()
    confirm = page.locator(f"#detector-versions tr[data-confirm-for='{v3.pk}']")
    expect(confirm).to_contain_text("Delete v3 doomed and its unreviewed proposals?")
    expect(confirm.get_by_role("group", name="Delete v3 doomed and its unreviewed proposals?")).to_be_visible()
    expect(confirm.get_by_role("button", name="Keep v3 doomed")).to_be_focused()
    expect(delete3).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(confirm).to_have_count(0)
    expect(delete3).to_be_focused()
    page.keyboard.press("Enter")
    expect(confirm).to_be_visible()
    confirm.scroll_into_view_if_needed()
    shot(page, "detectors-delete-confirm.png")
    confirm.get_by_role("button", name="Keep v3 doomed").click()
    expect(confirm).to_have_count(0)
    assert ModelVersion.objects.filter(pk=v3.pk).exists()

    # A version deleted elsewhere meanwhile: renaming and deleting it say why in the row, which stays.
    ModelVersion.objects.filter(pk=ghost.pk).delete()
    row[ghost.pk].get_by_role("button", name="Rename v4 ghost").click()
    row[ghost.pk].get_by_label("New name of v4").fill("phantom")
    row[ghost.pk].get_by_label("New name of v4").press("Enter")
    expect(row[ghost.pk].get_by_role("alert")).to_contain_text("Could not rename v4 ghost:")
    expect(row[ghost.pk].get_by_label("New name of v4")).to_be_focused()
    expect(row[ghost.pk].get_by_label("New name of v4")).to_have_value("phantom")
    row[ghost.pk].scroll_into_view_if_needed()
    shot(page, "detectors-rename-error.png")
    page.keyboard.press("Escape")
    expect(row[ghost.pk].locator(".detector-label")).to_have_text("v4 ghost")
    row[ghost.pk].get_by_role("button", name="Delete v4 ghost").click()
    ghost_confirm = page.locator(f"#detector-versions tr[data-confirm-for='{ghost.pk}']")
    ghost_confirm.get_by_role("button", name="Delete v4 ghost now").click()
    error = ghost_confirm.get_by_role("alert")
    expect(error).to_contain_text("Could not delete v4 ghost:")
    expect(ghost_confirm.get_by_role("button", name="Delete v4 ghost now")).to_be_focused()
    expect(row[ghost.pk]).to_be_visible()
    ghost_confirm.scroll_into_view_if_needed()
    shot(page, "detectors-delete-error.png")
    ghost_confirm.get_by_role("button", name="Keep v4 ghost").click()

    # Delete for good: the row goes, the status says so and takes the focus; unreviewed proposals and weights go,
    # the reviewed object stays without its version.
    delete3.click()
    confirm.get_by_role("button", name="Delete v3 doomed now").click()
    expect(row[v3.pk]).to_have_count(0)
    expect(confirm).to_have_count(0)
    status = page.locator("#detector-versions-status")
    expect(status).to_have_text("Deleted v3 doomed and its unreviewed proposals.")
    expect(status).to_be_focused()
    expect(page.locator("#accuracy-source option", has_text="YOLO v3 doomed")).to_have_count(0)
    assert not ModelVersion.objects.filter(pk=v3.pk).exists()
    assert not Detection.objects.filter(pk=proposed.pk).exists()
    accepted.refresh_from_db()
    assert accepted.model_version is None and accepted.status == DetectionStatus.ACCEPTED
    assert not weights.exists()
    page.locator("#detectors-section").scroll_into_view_if_needed()
    shot(page, "detectors-after-delete.png")
    # The only console error is the browser's report of the ghost's 404.
    assert [e for e in page.console_errors if "404" not in e] == []
