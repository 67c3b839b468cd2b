"""The core loop in the browser: draw an example on the scene page, search, see the detections on the map."""

import pytest

from annotate.models import Detection, DetectionSource, DetectionStatus
from gpu_tasks import runtime
from gpu_tasks.models import Job, JobKind, JobStatus
from review.models import ReviewEvent
from tests.conftest import ARTIFACTS
from tests.e2e.test_browser import log_in
from tests.gpu_tasks.support import PLANTED, ColourEmbedder, planted_scene, px_box_to_polygon

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BY_NAME = {p.name: p for p in PLANTED}


@pytest.fixture
def scene(tmp_path, ingested):
    return ingested(planted_scene(tmp_path / "planted.tif"))


@pytest.fixture
def embedder():
    """The deterministic colour embedder behind gpu_tasks.runtime.embedder() (the live server is a thread here)."""
    with runtime.use_embedder(ColourEmbedder()) as emb:
        yield emb


def open_scene(page, base_url, scene, username="manager"):
    log_in(page, base_url, username=username, password=f"pw-{username}")
    page.goto(f"{base_url}/scenes/{scene.pk}/")
    page.wait_for_function("document.getElementById('map').dataset.ready === '1'")
    page.wait_for_function("Number(document.getElementById('map').dataset.tilesLoaded || 0) >= 1", timeout=30_000)
    page.wait_for_selector("#search-panel[data-ready='1']")


def page_points(page, coords_3857):
    """Page pixel positions of EPSG:3857 map coordinates (from the OpenLayers map the page exposes)."""
    pixels = page.evaluate("cs => cs.map(c => window.__georeviewMap.getPixelFromCoordinate(c))", coords_3857)
    box = page.locator("#map").bounding_box()
    return [(box["x"] + x, box["y"] + y) for x, y in pixels]


def wait_for_features_at(page, coord_3857, count: int):
    """Wait until the map has at least `count` features under a map coordinate (vector tiles load on their own)."""
    page.wait_for_function(
        "([c, n]) => { const m = window.__georeviewMap; m.renderSync();"
        " return m.getFeaturesAtPixel(m.getPixelFromCoordinate(c), {hitTolerance: 0}).length >= n; }",
        arg=[list(coord_3857), count],
        timeout=20_000,
    )


def card_facts(card) -> dict[str, str]:
    """The floating card's facts (Score, Source, Version, Last change) as shown."""
    terms = card.locator(".card-facts dt").all_inner_texts()
    return dict(zip(terms, card.locator(".card-facts dd").all_inner_texts(), strict=True))


def draw_polygon(page, points):
    """Click the corners, then the first corner again to close the ring (as a person does)."""
    for x, y in [*points, points[0]]:
        page.mouse.click(x, y)
        page.wait_for_timeout(300)  # slower than OpenLayers' double-click window


def planted_ring_3857(scene, name, inset=8):
    polygon = px_box_to_polygon(scene, BY_NAME[name].box_px, inset=inset).transform(3857, clone=True)
    return [list(c) for c in polygon.exterior_ring.coords[:-1]]


def test_draw_an_example_search_and_see_detections(page, live_server, scene, embedder):
    open_scene(page, live_server.url, scene)
    panel = page.locator("#search-panel")
    assert panel.get_attribute("data-detections") == "0"

    page.get_by_role("radio", name="Brick Kiln").click()
    page.click("#draw-toggle")
    assert page.locator("#draw-toggle").get_attribute("aria-pressed") == "true"
    draw_polygon(page, page_points(page, planted_ring_3857(scene, "red_a")))
    page.wait_for_selector("#search-panel[data-examples='1']")
    assert page.locator(".class-row[data-class-name='Brick Kiln'] .class-count.ex").inner_text() == "1"
    assert scene.annotations.get().object_class.name == "Brick Kiln"
    page.keyboard.press("Escape")
    assert page.locator("#draw-toggle").get_attribute("aria-pressed") == "false"

    page.click("#search-button")
    job_box = page.locator("#job-box")
    page.wait_for_selector("#job-box[data-status='succeeded']", timeout=60_000)
    assert job_box.get_attribute("data-kind") == "search"
    assert "candidates found" in job_box.inner_text()
    job = Job.objects.get(pk=int(job_box.get_attribute("data-job-id")))
    assert job.status == JobStatus.SUCCEEDED and job.params["default_threshold"] == 0.5
    assert embedder.tiles_seen > 0

    # The counts are re-read once the box says "succeeded"; the panel counts the proposals per class.
    total = scene.detections.count()
    assert total >= 2
    page.wait_for_function("n => Number(document.getElementById('search-panel').dataset.detections) === n", arg=total)
    kilns = scene.detections.filter(object_class__name="Brick Kiln").count()
    assert kilns >= 2
    assert page.locator(".class-row[data-class-name='Brick Kiln'] .class-count.det").inner_text() == str(kilns)
    page.wait_for_selector(f"#review-progress .count-proposed[data-count='{total}']", state="attached")

    # A class's score slider hides its weaker proposals on the client, with counts.
    kiln_id = scene.project.classes.get(name="Brick Kiln").pk
    row = page.locator(f".score-row[data-class-id='{kiln_id}']")
    row.locator("input[type=range]").fill("1")
    page.wait_for_function("n => Number(document.getElementById('search-panel').dataset.detections) < n", arg=total)
    assert int(row.locator(".score-counts").get_attribute("data-hidden")) >= 1
    row.locator("input[type=range]").fill("0")
    page.wait_for_function("n => Number(document.getElementById('search-panel').dataset.detections) === n", arg=total)
    assert row.locator(".score-counts").get_attribute("data-shown") == str(kilns)

    page.hover(".scene-title")  # the pointer off the map
    page.locator("#panel-notice").wait_for(state="hidden")  # the "example saved" toast has gone
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "scene-search.png"))
    assert page.console_errors == []


def test_an_example_outside_the_scene_shows_the_api_error(page, live_server, scene):
    open_scene(page, live_server.url, scene)
    page.click("#draw-toggle")
    box = page.locator("#map").bounding_box()
    # The map's top-left corner, outside the fitted footprint.
    x0, y0 = box["x"] + 60, box["y"] + 8
    draw_polygon(page, [(x0, y0), (x0 + 30, y0), (x0 + 30, y0 + 30), (x0, y0 + 30)])
    error = page.locator("#panel-error")
    error.wait_for(state="visible")
    assert "outside the scene" in error.inner_text()
    assert page.locator("#search-panel").get_attribute("data-examples") == "0"
    assert not scene.annotations.exists()


def test_a_viewer_sees_detections_but_no_write_controls(page, live_server, scene, viewer):
    proposal = add_detection(scene, "red_b", DetectionStatus.PROPOSED, 0.9)
    open_scene(page, live_server.url, scene, username="viewer")
    assert page.locator(".class-row").count() == 8
    for selector in (
        "#draw-toggle",
        "#draw-missed",
        "#search-button",
        "#refine-button",
        "#update-proposals",
        ".class-row input[type=checkbox]",
        ".bulk-accept",
        ".bulk-reject",
    ):
        assert page.locator(selector).count() == 0, selector
    assert "viewer" in page.locator("#search-panel .read-only").inner_text()
    assert page.locator(".score-row").count() == 1  # the sliders filter the view for everyone

    # A viewer can walk the queue and read a card, but review keys change nothing.
    page.keyboard.press("n")
    page.wait_for_selector(f"#search-panel[data-selected='{proposal.pk}']", state="attached")
    assert page.locator("#detection-card button[data-command]").count() == 0
    writes = []
    page.on("request", lambda r: r.method != "GET" and writes.append(r.url))
    for key in ("a", "r", "2", "e", "s", "d", "x", "u", "g"):
        page.keyboard.press(key)
    page.wait_for_timeout(500)
    assert writes == []
    assert page.locator("#map").get_attribute("data-sketch") is None
    proposal.refresh_from_db()
    assert proposal.status == DetectionStatus.PROPOSED and proposal.version == 1
    assert not ReviewEvent.objects.filter(detection=proposal).exists()
    assert page.console_errors == []


def add_detection(scene, planted_name, status, score):
    """A Brick Kiln search detection on a planted object of the scene."""
    return kiln_detection(scene, BY_NAME[planted_name].box_px, status, score)


def kiln_detection(scene, box_px, status, score):
    """A Brick Kiln search detection on a pixel box of the scene."""
    polygon = px_box_to_polygon(scene, box_px)
    return Detection.objects.create(
        scene=scene,
        object_class=scene.project.classes.get(name="Brick Kiln"),
        geometry=polygon,
        bbox=polygon.envelope,
        score=score,
        source=DetectionSource.SEARCH,
        status=status,
    )


def test_a_failed_refine_shows_its_error_and_can_run_again(page, live_server, scene, settings):
    add_detection(scene, "red_b", DetectionStatus.PROPOSED, 0.9)
    add_detection(scene, "red_seam", DetectionStatus.ACCEPTED, 0.8)
    add_detection(scene, "lookalike", DetectionStatus.REJECTED, 0.6)
    settings.SAM2_MODEL = "no-such-sam2-model"  # the live server thread shares these settings
    open_scene(page, live_server.url, scene)
    # Shown: the proposal and the accepted one (the rejected one is not counted as shown).
    assert page.locator("#search-panel").get_attribute("data-detections") == "2"
    assert page.locator(".class-row[data-class-name='Brick Kiln'] .class-count.det").inner_text() == "2"

    page.click("#refine-button")
    box = page.locator("#job-box")
    page.wait_for_selector("#job-box[data-status='failed']", timeout=30_000)
    assert box.get_attribute("data-kind") == "refine"
    assert "no-such-sam2-model" in box.locator(".job-error").inner_text()
    assert page.locator("#job-cancel").count() == 0
    job = Job.objects.get(pk=int(box.get_attribute("data-job-id")))
    assert job.attempts == 1

    with page.expect_response(f"**/api/jobs/{job.pk}/retry/") as retry:
        page.click("#job-retry")
    assert retry.value.status == 202
    page.wait_for_selector(f"#job-box[data-job-id='{job.pk}'][data-attempts='2'][data-status='failed']")
    assert "attempt 2" in box.inner_text()
    assert not page.locator("#search-button").is_disabled()
    job.refresh_from_db()
    assert job.attempts == 2 and job.status == JobStatus.FAILED
    assert page.console_errors == []


def test_a_waiting_job_of_the_scene_shows_on_load_and_can_be_cancelled(page, live_server, scene, manager):
    job = Job.objects.create(
        kind=JobKind.SEARCH, project=scene.project, scene=scene, created_by=manager, message="Waiting for a worker"
    )
    open_scene(page, live_server.url, scene)
    box = page.locator("#job-box")
    page.wait_for_selector(f"#job-box[data-job-id='{job.pk}'][data-status='queued']")
    assert page.locator("#search-button").is_disabled()
    page.click("#job-cancel")
    page.wait_for_selector("#job-box[data-status='cancelled']")
    assert page.locator("#job-retry").is_visible()
    assert not page.locator("#search-button").is_disabled()
    assert "Cancelled" in box.inner_text()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_click_a_detection_and_refine_it_alone(page, live_server, scene, settings, random_sam2_checkpoint):
    settings.SAM2_MODEL = random_sam2_checkpoint  # the live server thread shares these settings
    runtime.unload()
    target = add_detection(scene, "red_b", DetectionStatus.PROPOSED, 0.9)
    other = add_detection(scene, "red_seam", DetectionStatus.PROPOSED, 0.8)
    open_scene(page, live_server.url, scene)
    panel = page.locator("#search-panel")
    assert panel.get_attribute("data-detections") == "2"

    # A click inside the detection selects it: its facts and "Refine this" appear.
    ring = planted_ring_3857(scene, "red_b", inset=0)
    cx, cy = (sum(c[i] for c in ring) / len(ring) for i in (0, 1))
    wait_for_features_at(page, [cx, cy], 1)
    ((x, y),) = page_points(page, [[cx, cy]])
    page.mouse.click(x, y)
    card = page.locator("#detection-card")
    card.wait_for(state="visible")
    page.wait_for_selector(f"#detection-card[data-detection-id='{target.pk}'][data-version='1']")
    assert panel.get_attribute("data-selected") == str(target.pk)
    assert card.locator(".card-class").inner_text() == "Brick Kiln"
    facts = card_facts(card)
    assert facts["Score"] == "0.90" and facts["Source"] == "search" and facts["Version"] == "1"

    with page.expect_response(f"**/api/detections/{target.pk}/refine/") as started:
        card.locator("button[data-command='refine']").click()
    assert started.value.status == 202
    # It runs beside the job box's job (its own queue): search stays available, the card tells the outcome.
    assert not page.locator("#search-button").is_disabled()
    card.locator(".card-status", has_text="Outlined by SAM2.").wait_for(timeout=60_000)
    # Only the chosen detection changed; the reloaded map keeps it selected with its new version.
    target.refresh_from_db()
    other.refresh_from_db()
    assert target.version == 2 and other.version == 1
    page.wait_for_selector(f"#detection-card[data-detection-id='{target.pk}'][data-version='2']")
    page.screenshot(path=str(ARTIFACTS / "scene-refine-one.png"))
    page.keyboard.press("Escape")
    card.wait_for(state="hidden")
    assert panel.get_attribute("data-selected") is None
    assert page.console_errors == []
    runtime.unload()
