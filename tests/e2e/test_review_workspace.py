"""The review workspace in Chromium (issue 9 §5): conflicts between two reviewers, drawing a missed object, editing
and deleting an example, bulk accept with its confirmation and group undo, overlap picking, and Update proposals
with a real CPU worker. Keyboard-only review of five detections is tests/e2e/test_review_keys.py.
"""

import pytest
from django.contrib.gis.geos import Polygon

from annotate.models import Annotation, Detection, DetectionSource, DetectionStatus, Role
from annotate.services import membership_set
from gpu_tasks.models import Job, JobStatus
from review.models import ReviewEvent
from tests.conftest import ARTIFACTS, make_user
from tests.e2e.test_review_keys import press_and_wait, wait_selected
from tests.e2e.test_scene_search import (
    add_detection,
    card_facts,
    kiln_detection,
    open_scene,
    page_points,
    wait_for_features_at,
)
from tests.gpu_tasks.conftest import start_worker  # noqa: F401 (a fixture: a real Celery worker)
from tests.gpu_tasks.support import px_box_to_polygon

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROPOSED, ACCEPTED, REJECTED = DetectionStatus.PROPOSED, DetectionStatus.ACCEPTED, DetectionStatus.REJECTED


@pytest.fixture
def scene(tmp_path, ingested):
    from tests.gpu_tasks.support import planted_scene

    return ingested(planted_scene(tmp_path / "planted.tif"))


@pytest.fixture
def reviewer(project):
    user = make_user("reviewer")
    membership_set(project=project, user=user, role=Role.REVIEWER)
    return user


def ring_3857(polygon: Polygon) -> list[list[float]]:
    """A polygon's corners (without the closing one) in EPSG:3857, as the page's map uses them."""
    return [list(c) for c in polygon.transform(3857, clone=True).exterior_ring.coords[:-1]]


def centre_3857(polygon: Polygon) -> list[float]:
    c = polygon.centroid.transform(3857, clone=True)
    return [c.x, c.y]


def map_idle(page) -> None:
    """Wait for the map's animations (a fly to the next proposal, Z) to end."""
    page.wait_for_function("!window.__georeviewMap.getView().getAnimating()")


def click(page, point) -> None:
    """One click, then a pause longer than OpenLayers' double-click window (so it is a single click)."""
    page.mouse.click(*point)
    page.wait_for_timeout(350)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def annotation_call(response, example, method: str) -> bool:
    return f"/api/annotations/{example.pk}/" in response.url and response.request.method == method


def test_a_conflict_between_two_reviewers_shows_who_decided_and_the_current_state(
    page, second_page, live_server, scene, manager, reviewer
):
    target = add_detection(scene, "red_b", PROPOSED, 0.9)
    add_detection(scene, "red_seam", ACCEPTED, 0.8)  # reviewed already: not in the queue
    # The reviewer's live updates are held (the request never answers), so they decide on the version they saw:
    # the case live updates narrow (a decision in the second before a poll brings the other's) but cannot close.
    second_page.route(f"**/api/scenes/{scene.pk}/live/**", lambda route: None)
    open_scene(page, live_server.url, scene, username="manager")
    open_scene(second_page, live_server.url, scene, username="reviewer")
    # The manager is served it by the queue (which then holds it for her); the reviewer clicks it on the map.
    page.keyboard.press("n")
    wait_for_features_at(second_page, centre_3857(target.geometry), 1)
    click(second_page, page_points(second_page, [centre_3857(target.geometry)])[0])
    for p in (page, second_page):
        wait_selected(p, target.pk)
        p.wait_for_selector(f"#detection-card[data-detection-id='{target.pk}'][data-version='1']")

    # The manager accepts first; the reviewer, still looking at version 1, rejects.
    assert press_and_wait(page, "a", f"/api/detections/{target.pk}/review/") == 200
    assert press_and_wait(second_page, "r", f"/api/detections/{target.pk}/review/") == 409
    error = second_page.locator("#panel-error")
    error.wait_for(state="visible")
    assert "last changed by manager" in error.inner_text()
    # Nothing is overwritten: the card shows the state the server has now, with who made it.
    card = second_page.locator("#detection-card")
    second_page.wait_for_selector(
        f"#detection-card[data-detection-id='{target.pk}'][data-status='accepted'][data-version='2']"
    )
    assert second_page.locator("#search-panel").get_attribute("data-selected-status") == "accepted"
    card.locator(".card-history li", has_text="manager accepted").wait_for()
    assert card_facts(card)["Last change"].startswith("manager,")

    target.refresh_from_db()
    assert (target.status, target.version, target.reviewer_id) == (ACCEPTED, 2, manager.pk)
    events = list(ReviewEvent.objects.filter(detection=target).values_list("verb", "actor__username"))
    assert events == [("accept", "manager")]
    shot(second_page, "workspace-conflict.png")
    assert page.console_errors == []
    assert all("409" in e for e in second_page.console_errors)


def test_a_missed_object_is_drawn_corrected_saved_accepted_and_deleted(page, live_server, scene, manager):
    open_scene(page, live_server.url, scene)
    kiln = scene.project.classes.get(name="Brick Kiln")
    page.get_by_role("radio", name="Brick Kiln").click()
    page.evaluate("document.activeElement.blur()")  # keys typed into a field are not review keys
    outline = px_box_to_polygon(scene, (84, 84, 140, 140))  # "red_a", which no detection covers
    corners = page_points(page, ring_3857(outline))
    page.keyboard.press("d")
    page.wait_for_selector("#map[data-sketch='missed']", state="attached")

    # Two corners, then a click on the last one twice (a double click): closed by accident, the sketch stays.
    for point in (corners[0], corners[1], corners[1], corners[1]):
        click(page, point)
    error = page.locator("#panel-error")
    error.wait_for(state="visible")
    assert "at least three corners" in error.inner_text()
    assert page.locator("#map").get_attribute("data-sketch") == "missed"
    assert not Detection.objects.filter(scene=scene).exists()
    shot(page, "workspace-missed-kept-sketch.png")

    # A third corner, a wrong one taken back with Backspace, the fourth, then the first again closes it.
    (wx, wy) = corners[2]
    click(page, corners[2])
    click(page, (wx + 60, wy + 90))
    page.keyboard.press("Backspace")
    page.wait_for_timeout(150)
    with page.expect_response(f"**/api/scenes/{scene.pk}/detections/manual/") as saved:
        click(page, corners[3])
        click(page, corners[0])
    assert saved.value.status == 201 or saved.value.status == 200, saved.value.text()
    drawn = Detection.objects.get(scene=scene)
    wait_selected(page, drawn.pk)
    assert page.locator("#map").get_attribute("data-sketch") is None
    error.wait_for(state="hidden")  # the earlier complaint is gone once it is saved
    assert (drawn.source, drawn.status, drawn.object_class_id, drawn.reviewer_id) == (
        DetectionSource.MANUAL,
        ACCEPTED,
        kiln.pk,
        manager.pk,
    )
    # Four corners: the wrong one is not in it, and it covers the object's outline (to a screen pixel or two).
    assert len(drawn.geometry.exterior_ring.coords) == 5
    expected = outline.transform(3857, clone=True)
    got = drawn.geometry.transform(3857, clone=True)
    assert got.sym_difference(expected).area / expected.area < 0.15
    card = page.locator("#detection-card")
    page.wait_for_selector(f"#detection-card[data-detection-id='{drawn.pk}'][data-status='accepted']")
    assert card_facts(card)["Source"] == "manual"
    card.locator(".card-history li", has_text="manager drew it").wait_for()
    shot(page, "workspace-missed-saved.png")

    # X deletes a drawn detection (an event records it; the row is gone).
    with page.expect_response(lambda r: f"/api/detections/{drawn.pk}/manual/" in r.url) as deleted:
        page.keyboard.press("x")
    assert deleted.value.ok, deleted.value.text()
    wait_selected(page, None)
    assert not Detection.objects.filter(pk=drawn.pk).exists()
    verbs = list(ReviewEvent.objects.filter(scene=scene).order_by("pk").values_list("verb", flat=True))
    assert verbs == ["create_manual", "delete_manual"]
    assert page.console_errors == []


def test_an_example_is_selected_reshaped_reclassed_and_deleted(page, live_server, scene, manager):
    kiln, pond = (scene.project.classes.get(name=n) for n in ("Brick Kiln", "Pond-1"))
    classes = list(scene.project.classes.order_by("index"))
    pond_key = str(classes.index(pond) + 1)
    shape = px_box_to_polygon(scene, (260, 260, 400, 400))
    example = Annotation.objects.create(scene=scene, object_class=kiln, author=manager, geometry=shape)
    open_scene(page, live_server.url, scene)
    page.wait_for_selector("#search-panel[data-examples='1']", state="attached")

    wait_for_features_at(page, centre_3857(shape), 1)
    ((x, y),) = page_points(page, [centre_3857(shape)])
    click(page, (x, y))
    card = page.locator("#detection-card")
    page.wait_for_selector(f"#detection-card[data-example-id='{example.pk}']")
    assert page.locator("#search-panel").get_attribute("data-selected") is None
    assert "Example · Brick Kiln" in card.inner_text()

    # E, drag the top-left corner inwards, Enter: the new shape is saved.
    page.keyboard.press("e")
    card.locator(".edit-hint").wait_for()
    ring = ring_3857(shape)
    corner = min(page_points(page, ring), key=lambda p: p[0] + p[1])  # top-left on screen
    drag(page, corner, (30, 30))
    with page.expect_response(lambda r: annotation_call(r, example, "PATCH")) as r:
        page.keyboard.press("Enter")
    assert r.value.status == 200, r.value.text()
    example.refresh_from_db()
    before, after = shape.transform(3857, clone=True), example.geometry.transform(3857, clone=True)
    assert after.area < before.area * 0.95  # a corner moved inwards
    assert after.sym_difference(before).area > 0
    card.locator(".edit-hint").wait_for(state="detached")
    shot(page, "workspace-example-edited.png")

    # A number key changes its class.
    with page.expect_response(lambda r: annotation_call(r, example, "PATCH")) as r:
        page.keyboard.press(pond_key)
    assert r.value.status == 200, r.value.text()
    example.refresh_from_db()
    assert example.object_class_id == pond.pk
    page.wait_for_function("() => document.getElementById('detection-card').innerText.includes('Example · Pond-1')")

    # X deletes it.
    with page.expect_response(lambda r: annotation_call(r, example, "DELETE")) as r:
        page.keyboard.press("x")
    assert r.value.ok, r.value.text()
    page.wait_for_selector("#search-panel[data-examples='0']", state="attached")
    card.wait_for(state="hidden")
    assert card.get_attribute("data-example-id") is None
    assert not Annotation.objects.filter(pk=example.pk).exists()
    assert page.console_errors == []


def drag(page, start, by) -> None:
    """Press at `start`, move by `by` screen pixels in small steps, release (a vertex drag in Modify)."""
    page.mouse.move(*start)
    page.wait_for_timeout(100)
    page.mouse.down()
    for step in (0.25, 0.5, 0.75, 1.0):
        page.mouse.move(start[0] + by[0] * step, start[1] + by[1] * step, steps=2)
    page.mouse.up()


def test_fix_and_accept_a_proposal_is_one_decision(page, live_server, scene, manager):
    # A proposal whose box is too large: the reviewer pulls a corner in and sets the class, then Enter.
    proposal = kiln_detection(scene, (680, 120, 776, 216), PROPOSED, 0.8)
    second_class = scene.project.classes.order_by("index")[1]
    open_scene(page, live_server.url, scene)
    page.keyboard.press("n")
    wait_selected(page, proposal.pk)
    map_idle(page)
    card = page.locator("#detection-card")
    page.keyboard.press("e")
    card.locator(".edit-hint").wait_for()
    corner = min(page_points(page, ring_3857(proposal.geometry)), key=lambda p: p[0] + p[1])
    drag(page, corner, (40, 40))
    page.keyboard.press("2")  # while editing: part of the fix, not a decision of its own
    page.wait_for_timeout(300)
    assert not ReviewEvent.objects.exists()
    with page.expect_response(lambda r: f"/api/detections/{proposal.pk}/review/" in r.url) as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 200, answer.value.text()
    proposal_before = proposal.geometry.transform(3857, clone=True)
    proposal.refresh_from_db()
    assert (proposal.status, proposal.object_class_id, proposal.version) == (ACCEPTED, second_class.pk, 2)
    assert proposal.geometry.transform(3857, clone=True).area < proposal_before.area * 0.95
    event = ReviewEvent.objects.get(detection=proposal)
    assert (event.verb, event.status_after, event.class_after) == ("accept", ACCEPTED, second_class.pk)
    assert event.geometry_after is not None and event.geometry_before is not None
    # The counts follow (a moment after the decisions settle): the kiln row lost it, the STP row has it.
    page.wait_for_selector("#review-progress .count-accepted[data-count='1']", state="attached")
    page.wait_for_selector(f".class-row[data-class-id='{second_class.pk}'] .class-count.det[data-detections='1']")
    shot(page, "workspace-fix-and-accept.png")
    assert page.console_errors == []


def test_bulk_accept_states_the_number_and_undo_takes_back_the_group(page, live_server, scene):
    scores = [0.95, 0.85, 0.72, 0.61, 0.42, 0.18]
    boxes = [(20 + 80 * i, 300, 70 + 80 * i, 350) for i in range(len(scores))]
    kilns = [kiln_detection(scene, box, PROPOSED, s) for box, s in zip(boxes, scores, strict=True)]
    kiln_detection(scene, (20, 420, 70, 470), ACCEPTED, 0.9)  # reviewed: no bulk action touches it
    pond = add_detection(scene, "blue_a", PROPOSED, 0.99)
    pond.object_class = scene.project.classes.get(name="Pond-1")
    pond.save(update_fields=["object_class"])
    kiln_id = kilns[0].object_class_id
    open_scene(page, live_server.url, scene)

    row = page.locator(f".score-row[data-class-id='{kiln_id}']")
    row.locator("input[type=range]").fill("0.5")
    counts = row.locator(".score-counts")
    page.wait_for_selector(f".score-row[data-class-id='{kiln_id}'] .score-counts[data-shown='4'][data-hidden='2']")
    should = Detection.objects.filter(object_class_id=kiln_id, status=PROPOSED, score__gte=0.5)
    assert should.count() == int(counts.get_attribute("data-shown"))
    # Shown: 4 kilns above the floor + 1 accepted kiln + the pond proposal.
    assert page.locator("#search-panel").get_attribute("data-detections") == "6"

    # "Reject 2 below", cancelled: nothing happens.
    row.locator(".bulk-reject").click()
    dialog = page.locator("dialog#confirm-dialog")
    dialog.wait_for(state="visible")
    text = dialog.locator(".confirm-text").inner_text()
    assert text == "Reject 2 proposed Brick Kiln detections with a score below 0.50?"
    dialog.locator("button[value=no]").click()
    dialog.wait_for(state="hidden")

    row.locator(".bulk-accept").click()
    dialog.wait_for(state="visible")
    text = dialog.locator(".confirm-text").inner_text()
    assert text == f"Accept {should.count()} proposed Brick Kiln detections with a score of 0.50 or more?"
    shot(page, "workspace-bulk-confirm.png")
    with page.expect_response(f"**/api/scenes/{scene.pk}/detections/bulk-review/") as answer:
        dialog.locator("button[value=yes]").click()
    assert answer.value.status == 200, answer.value.text()
    assert answer.value.json()["count"] == 4
    statuses = {d.pk: d.status for d in Detection.objects.filter(pk__in=[k.pk for k in kilns])}
    assert statuses == {k.pk: (ACCEPTED if k.score >= 0.5 else PROPOSED) for k in kilns}
    assert Detection.objects.get(pk=pond.pk).status == PROPOSED
    page.wait_for_selector("#review-progress .count-accepted[data-count='5']", state="attached")
    page.wait_for_selector(f".score-row[data-class-id='{kiln_id}'] .score-counts[data-shown='0']", state="attached")
    batch = set(ReviewEvent.objects.filter(verb="accept").values_list("batch_id", flat=True))
    assert len(batch) == 1 and None not in batch

    # U undoes the whole group.
    page.locator(".scene-title").click()  # the focus off the dialog's button
    assert press_and_wait(page, "u", "/api/review/undo/") == 200
    assert set(Detection.objects.filter(pk__in=[k.pk for k in kilns]).values_list("status", flat=True)) == {PROPOSED}
    page.wait_for_selector("#review-progress .count-accepted[data-count='1']", state="attached")
    page.wait_for_selector(f".score-row[data-class-id='{kiln_id}'] .score-counts[data-shown='4']", state="attached")
    assert ReviewEvent.objects.filter(verb="undo").count() == 4
    shot(page, "workspace-bulk-undone.png")
    assert page.console_errors == []


def test_a_click_where_objects_overlap_selects_the_smallest_then_the_next_larger(page, live_server, scene):
    small = kiln_detection(scene, (84, 84, 140, 140), PROPOSED, 0.6)
    large = kiln_detection(scene, (40, 40, 300, 300), PROPOSED, 0.9)
    open_scene(page, live_server.url, scene)
    inside_both = centre_3857(small.geometry)
    wait_for_features_at(page, inside_both, 2)
    ((x, y),) = page_points(page, [inside_both])

    click(page, (x, y))
    wait_selected(page, small.pk)
    page.locator("#panel-notice", has_text="2 objects here").wait_for()
    click(page, (x, y))
    wait_selected(page, large.pk)
    click(page, (x, y))
    wait_selected(page, small.pk)  # round again
    shot(page, "workspace-overlap-small.png")

    # Inside the large one only: the large one at once.
    page.keyboard.press("Escape")
    wait_selected(page, None)
    only_large = px_box_to_polygon(scene, (220, 220, 260, 260))
    ((x2, y2),) = page_points(page, [centre_3857(only_large)])
    click(page, (x2, y2))
    wait_selected(page, large.pk)
    assert page.console_errors == []


@pytest.fixture
def lookalike_scene(tmp_path, ingested):
    """The scene of tests/gpu_tasks/test_update_proposals.py: kilns, dark-red look-alikes and ponds."""
    from tests.gpu_tasks.test_update_proposals import lookalike_scene as paint

    scene = ingested(paint(tmp_path / "lookalikes.tif"))
    scene.stretch = [[0.0, 255.0]] * len(scene.stretch)  # as is: the colours are what the embedder sees
    scene.save(update_fields=["stretch"])
    return scene


def click_detection(page, detection) -> None:
    """Select a detection by clicking its middle with the whole scene in view (the card closed first)."""
    page.keyboard.press("Escape")
    page.keyboard.press("z")
    map_idle(page)
    middle = centre_3857(detection.geometry)
    wait_for_features_at(page, middle, 1)
    ((x, y),) = page_points(page, [middle])
    click(page, (x, y))
    wait_selected(page, detection.pk)


def test_update_proposals_after_two_rejections_removes_the_lookalikes(
    page,
    live_server,
    lookalike_scene,
    manager,
    start_worker,  # noqa: F811 (the fixture imported above)
    tmp_path,
):
    from tests.gpu_tasks.test_update_proposals import LOOKALIKES, proposal_at, proposed_names, searched

    scene = lookalike_scene
    search = searched(scene, manager)  # examples of both classes, one search with the colour embedder
    assert proposed_names(scene) == {"red_b", "red_c", *LOOKALIKES, "blue_b"}, "the look-alikes are proposed at first"
    # A CPU worker on the default queue with no model on disk: Update proposals must not need the backbone.
    worker = start_worker("default", DINO_MODEL="missing/no-such-model", MODEL_DIR=str(tmp_path / "no-models"))
    open_scene(page, live_server.url, scene)
    refused = []
    page.on("response", lambda r: r.status >= 400 and refused.append((r.status, r.request.method, r.url)))
    page.wait_for_selector("#review-progress .count-proposed[data-count='7']", state="attached")

    # Two look-alikes rejected and one kiln accepted, each picked on the map and decided with a key.
    for name, key in (("look_1", "r"), ("look_2", "r"), ("red_b", "a")):
        det = proposal_at(scene, name)
        click_detection(page, det)
        assert press_and_wait(page, key, f"/api/detections/{det.pk}/review/") == 200
        # The page has moved on to the next proposal (so Esc below closes that one, not this one).
        page.wait_for_function("id => document.getElementById('search-panel').dataset.selected !== id", arg=str(det.pk))
    page.keyboard.press("Escape")
    page.keyboard.press("z")
    map_idle(page)
    shot(page, "workspace-update-before.png")

    with page.expect_response(f"**/api/scenes/{scene.pk}/update-proposals/") as started:
        page.keyboard.press("g")
    assert started.value.status == 202, started.value.text()
    box = page.locator("#job-box")
    page.wait_for_selector("#job-box[data-kind='requery']", state="attached")
    try:
        page.wait_for_selector("#job-box[data-status='succeeded']", timeout=90_000)
    except Exception:
        worker.terminate()
        raise AssertionError((box.inner_text(), worker.communicate(timeout=30)[0][-4000:])) from None
    job = Job.objects.get(pk=int(box.get_attribute("data-job-id")))
    assert job.kind == "requery" and job.status == JobStatus.SUCCEEDED and job.result["requery"] is True
    assert job.result["examples"]["Brick Kiln"] == {"positives": 2, "negatives": 2}

    # The look-alikes of the rejected ones are gone; the page's counts and queue follow without a reload.
    assert proposed_names(scene) == {"red_c", "blue_b"}
    assert not scene.detections.filter(job=search, status=PROPOSED).exists()
    page.wait_for_selector("#review-progress .count-proposed[data-count='2']", state="attached")
    page.wait_for_function("() => document.getElementById('search-panel').dataset.detections === '3'")
    left = {proposal_at(scene, "red_c").pk, proposal_at(scene, "blue_b").pk}
    page.keyboard.press("z")
    page.keyboard.press("n")
    page.wait_for_function(
        "ids => ids.includes(Number(document.getElementById('search-panel').dataset.selected))", arg=sorted(left)
    )
    page.keyboard.press("Escape")
    page.keyboard.press("z")
    map_idle(page)
    page.wait_for_timeout(500)  # the reloaded tiles drawn
    shot(page, "workspace-update-after.png")
    assert refused == []
    assert page.console_errors == []


def test_reject_with_a_comment_layer_toggles_and_esc_cancelling_an_edit(page, live_server, scene):
    first = add_detection(scene, "red_b", PROPOSED, 0.9)
    second = add_detection(scene, "red_seam", PROPOSED, 0.8)
    open_scene(page, live_server.url, scene)
    page.on("dialog", lambda dialog: dialog.accept("a red roof, not a kiln"))
    page.keyboard.press("n")
    wait_selected(page, first.pk)
    assert press_and_wait(page, "Shift+R", f"/api/detections/{first.pk}/review/") == 200
    wait_selected(page, second.pk)
    event = ReviewEvent.objects.get(detection=first)
    assert (event.verb, event.comment) == ("reject", "a red roof, not a kiln")

    # E, a corner dragged, Esc: nothing is sent and the shape is as it was.
    map_idle(page)
    card = page.locator("#detection-card")
    page.keyboard.press("e")
    card.locator(".edit-hint").wait_for()
    corner = min(page_points(page, ring_3857(second.geometry)), key=lambda p: p[0] + p[1])
    calls = []
    page.on("request", lambda r: r.method != "GET" and calls.append(r.url))
    drag(page, corner, (25, 25))
    page.keyboard.press("Escape")
    card.locator(".edit-hint").wait_for(state="detached")
    page.keyboard.press("Enter")
    page.wait_for_timeout(500)
    assert calls == []
    before = second.geometry.wkt
    second.refresh_from_db()
    assert (second.version, second.geometry.wkt) == (1, before)
    wait_selected(page, second.pk)  # Esc cancelled the edit, not the selection

    # The rejected one, clicked on the map, shows the comment in its history.
    page.keyboard.press("Escape")
    wait_selected(page, None)
    page.keyboard.press("z")
    map_idle(page)
    middle = centre_3857(first.geometry)
    wait_for_features_at(page, middle, 1)
    ((x, y),) = page_points(page, [middle])
    click(page, (x, y))
    wait_selected(page, first.pk)
    card.locator(".card-history .history-comment", has_text="a red roof, not a kiln").wait_for()
    shot(page, "workspace-reject-comment.png")

    # Rejected hidden: it can no longer be picked. Proposed hidden: the queue has nothing to show.
    page.keyboard.press("Escape")
    wait_selected(page, None)
    page.locator("input[data-layer=rejected]").uncheck()
    page.locator(".scene-title").click()
    click(page, (x, y))
    page.wait_for_timeout(300)
    assert page.locator("#search-panel").get_attribute("data-selected") is None
    page.locator("input[data-layer=proposed]").uncheck()
    page.locator(".scene-title").click()
    page.keyboard.press("n")
    page.locator("#panel-notice", has_text="No more proposals").wait_for()
    page.wait_for_timeout(300)
    assert page.locator("#search-panel").get_attribute("data-selected") is None
    page.locator("input[data-layer=proposed]").check()
    page.locator(".scene-title").click()
    page.keyboard.press("n")
    wait_selected(page, second.pk)

    # The same with the class's score slider: above its score the queue is empty, back down it is there again.
    page.keyboard.press("Escape")
    wait_selected(page, None)
    slider = page.locator(f".score-row[data-class-id='{second.object_class_id}'] input[type=range]")
    slider.fill("0.9")
    page.locator(".scene-title").click()
    page.keyboard.press("n")
    page.locator("#panel-notice", has_text="No more proposals").wait_for()
    page.wait_for_timeout(300)
    assert page.locator("#search-panel").get_attribute("data-selected") is None
    slider.fill("0")
    page.locator(".scene-title").click()
    page.keyboard.press("n")
    wait_selected(page, second.pk)
    assert page.console_errors == []


def test_an_annotator_draws_examples_but_reviews_nothing(page, live_server, scene, project):
    annotator = make_user("annotator")
    membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    proposal = add_detection(scene, "red_b", PROPOSED, 0.9)
    open_scene(page, live_server.url, scene, username="annotator")
    assert page.locator("#draw-toggle").count() == 1  # examples are an annotator's work
    for selector in ("#draw-missed", "#update-proposals", ".bulk-accept", ".bulk-reject"):
        assert page.locator(selector).count() == 0, selector

    # The queue and the card are there to look at; of the card's commands only SAM2 refine (a job) is offered.
    page.keyboard.press("n")
    wait_selected(page, proposal.pk)
    card = page.locator("#detection-card")
    page.wait_for_selector(f"#detection-card[data-detection-id='{proposal.pk}']")
    assert card.locator("button[data-command]").evaluate_all("bs => bs.map(b => b.dataset.command)") == ["refine"]
    calls = []
    page.on("request", lambda r: r.method != "GET" and calls.append(r.url))
    for key in ("a", "r", "2", "d", "u", "x", "g"):
        page.keyboard.press(key)
    page.wait_for_timeout(500)
    assert calls == []
    assert page.locator("#map").get_attribute("data-sketch") is None
    proposal.refresh_from_db()
    assert (proposal.status, proposal.version) == (PROPOSED, 1)
    shot(page, "workspace-annotator.png")
    assert page.console_errors == []


def test_queue_orders_optimistic_moves_and_a_lost_answer_retried_without_a_duplicate(page, live_server, scene):
    best = add_detection(scene, "red_b", PROPOSED, 0.95)
    unsure = add_detection(scene, "red_seam", PROPOSED, 0.52)
    middle = add_detection(scene, "lookalike", PROPOSED, 0.7)
    open_scene(page, live_server.url, scene)

    # Most uncertain first: nearest the threshold (0.5), then further away.
    page.select_option("#queue-order", "uncertainty")
    page.locator(".scene-title").click()  # keys typed into the select are not review keys
    for expected in (unsure, middle, best):
        page.keyboard.press("n")
        wait_selected(page, expected.pk)
    page.select_option("#queue-order", "score")
    page.locator(".scene-title").click()
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    wait_selected(page, best.pk)

    # The next proposal is shown while the decision is still on its way.
    held = []
    page.route(f"**/api/detections/{best.pk}/review/", lambda route: held.append(route))
    with page.expect_request(f"**/api/detections/{best.pk}/review/"):
        page.keyboard.press("a")
        wait_selected(page, middle.pk)
    # The route's handler runs when Playwright hands the event over, which on a loaded machine (CI) can be
    # seconds after the request event: wait for it rather than for a fixed time.
    for _ in range(600):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1, "the decision's request never reached the route"
    assert not ReviewEvent.objects.exists()
    with page.expect_response(f"**/api/detections/{best.pk}/review/") as answer:
        held[0].continue_()
    assert answer.value.status == 200
    page.unroute(f"**/api/detections/{best.pk}/review/")
    assert ReviewEvent.objects.get(detection=best).verb == "accept"

    # The server saves a decision but its answer is lost (a 502 on the way back): the page says so, sends the
    # same request again (same client id), and the server records it once.
    bodies = []

    def lose_first_answer(route):
        bodies.append(route.request.post_data_json)
        if len(bodies) == 1:
            route.fetch()  # it reaches the server...
            route.fulfill(status=502, body="Bad gateway")  # ...and the answer does not come back
        else:
            route.continue_()

    page.route(f"**/api/detections/{middle.pk}/review/", lose_first_answer)
    with page.expect_response(lambda r: f"/api/detections/{middle.pk}/review/" in r.url and r.status == 200) as ok:
        page.keyboard.press("r")
        page.locator("#panel-error", has_text="retrying").wait_for()
    assert len(bodies) == 2 and bodies[0]["client_id"] == bodies[1]["client_id"]
    assert ReviewEvent.objects.filter(detection=middle).count() == 1
    middle.refresh_from_db()
    assert (middle.status, middle.version) == (REJECTED, 2)
    page.locator("#panel-error").wait_for(state="hidden")  # saved after all: no standing "not saved"
    assert ok.value.ok
    assert all("502" in e for e in page.console_errors)


def test_the_chosen_class_is_remembered_for_the_user_and_project(page, live_server, scene, reviewer):
    open_scene(page, live_server.url, scene, username="reviewer")
    with page.expect_response(lambda r: r.url.endswith(f"/api/projects/{scene.project_id}/me/")) as saved:
        page.get_by_role("radio", name="Pond-1").click()
    assert saved.value.ok, saved.value.text()
    page.reload()
    page.wait_for_selector("#search-panel[data-ready='1']")
    assert page.get_by_role("radio", name="Pond-1").get_attribute("aria-checked") == "true"
    assert page.get_by_role("radio", name="Brick Kiln").get_attribute("aria-checked") == "false"
    assert "Pond-1" in page.locator("#draw-label").inner_text()
    # Another member of the project keeps their own choice.
    page.context.clear_cookies()
    open_scene(page, live_server.url, scene, username="manager")
    assert page.get_by_role("radio", name="Brick Kiln").get_attribute("aria-checked") == "true"
    assert page.console_errors == []
