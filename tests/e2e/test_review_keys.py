"""Keyboard-first review on the scene page: accept, reject, relabel, undo and next without the mouse."""

import pytest
from django.db.models import F

from annotate.models import Detection, DetectionStatus
from review.models import ReviewEvent
from tests.conftest import ARTIFACTS, make_user
from tests.e2e.test_scene_search import add_detection, open_scene

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PLANTED_BY_SCORE = [("red_a", 0.9), ("red_b", 0.8), ("red_seam", 0.7), ("blue_a", 0.6), ("blue_b", 0.5)]


@pytest.fixture
def scene(tmp_path, ingested):
    from tests.gpu_tasks.support import planted_scene

    return ingested(planted_scene(tmp_path / "planted.tif"))


def selected(page) -> int | None:
    value = page.locator("#search-panel").get_attribute("data-selected")
    return int(value) if value else None


def wait_selected(page, detection_id: int | None) -> None:
    """Wait until the page has selected `detection_id` (None: nothing); selection follows the queue's answer."""
    if detection_id is None:
        page.wait_for_selector("#search-panel:not([data-selected])", state="attached")
    else:
        page.wait_for_selector(f"#search-panel[data-selected='{detection_id}']", state="attached")


def press_and_wait(page, key: str, url_part: str) -> int:
    """Press a review key and wait for the call it makes; its HTTP status."""
    with page.expect_response(lambda r: url_part in r.url and r.request.method == "POST") as answer:
        page.keyboard.press(key)
    return answer.value.status


def test_five_detections_reviewed_with_the_keyboard_only(page, live_server, scene):
    d1, d2, d3, d4, d5 = (add_detection(scene, name, DetectionStatus.PROPOSED, s) for name, s in PLANTED_BY_SCORE)
    second_class = scene.project.classes.order_by("index")[1]
    open_scene(page, live_server.url, scene)

    # Keys typed into a field are not review keys.
    page.locator("#search-threshold").focus()
    page.keyboard.press("n")
    page.wait_for_timeout(300)
    assert selected(page) is None
    page.locator("#search-threshold").blur()

    page.keyboard.press("?")
    help_box = page.locator("#review-help")
    help_box.wait_for(state="visible")
    assert "Accept" in help_box.inner_text() and "Undo my last decision" in help_box.inner_text()
    page.keyboard.press("?")
    help_box.wait_for(state="hidden")

    page.keyboard.press("n")  # the best-scored proposal
    wait_selected(page, d1.pk)
    card = page.locator("#detection-card")
    for command in ("accept", "reject", "rejectWithComment", "class-2", "edit", "refine"):
        assert card.locator(f"button[data-command='{command}']").is_visible(), command
    assert card.locator("button[data-command='deleteManual']").count() == 0  # a proposal is rejected, not deleted
    for button in ("#queue-next", "#update-proposals", "#help-toggle", "#draw-missed"):
        assert page.locator(button).is_visible(), button

    # Accept: the next proposal is selected before the server answers.
    assert press_and_wait(page, "a", f"/api/detections/{d1.pk}/review/") == 200
    wait_selected(page, d2.pk)
    assert press_and_wait(page, "r", f"/api/detections/{d2.pk}/review/") == 200
    wait_selected(page, d3.pk)
    assert press_and_wait(page, "2", f"/api/detections/{d3.pk}/relabel/") == 200
    page.wait_for_selector(f"#detection-card[data-detection-id='{d3.pk}'][data-version='2']")
    assert card.locator(".card-class").inner_text() == second_class.name
    assert card.locator("button[data-command='class-2'][aria-pressed='true']").count() == 1
    assert press_and_wait(page, "a", f"/api/detections/{d3.pk}/review/") == 200
    wait_selected(page, d4.pk)
    assert press_and_wait(page, "u", "/api/review/undo/") == 200  # undoes the accept of d3
    page.keyboard.press("ArrowRight")
    wait_selected(page, d5.pk)
    assert press_and_wait(page, "r", f"/api/detections/{d5.pk}/review/") == 200
    # The last in score order: the page says so and stays; P goes back to the proposals left.
    page.wait_for_selector(f"#detection-card[data-detection-id='{d5.pk}'][data-status='rejected']")
    page.wait_for_timeout(500)  # the queue has answered: nothing after d5
    wait_selected(page, d5.pk)
    page.keyboard.press("p")
    wait_selected(page, d4.pk)

    # Someone else changes d4 meanwhile: the accept is refused, rolled back to the current state, and says who.
    alice = make_user("alice")
    Detection.objects.filter(pk=d4.pk).update(version=F("version") + 1, reviewer=alice)
    assert press_and_wait(page, "a", f"/api/detections/{d4.pk}/review/") == 409
    error = page.locator("#panel-error")
    error.wait_for(state="visible")
    assert "alice" in error.inner_text()
    page.wait_for_selector(f"#detection-card[data-detection-id='{d4.pk}'][data-status='proposed'][data-version='2']")
    assert page.locator("#search-panel").get_attribute("data-selected-status") == "proposed"
    page.keyboard.press("p")
    wait_selected(page, d3.pk)  # the proposal the undo restored is in the queue again

    states = {d.pk: (d.status, d.object_class_id) for d in Detection.objects.filter(scene=scene)}
    kiln = d1.object_class_id
    assert states == {
        d1.pk: (DetectionStatus.ACCEPTED, kiln),
        d2.pk: (DetectionStatus.REJECTED, kiln),
        d3.pk: (DetectionStatus.PROPOSED, second_class.pk),
        d4.pk: (DetectionStatus.PROPOSED, kiln),
        d5.pk: (DetectionStatus.REJECTED, kiln),
    }
    events = list(ReviewEvent.objects.filter(scene=scene).order_by("pk").values_list("detection_id", "verb"))
    assert events == [
        (d1.pk, "accept"),
        (d2.pk, "reject"),
        (d3.pk, "relabel"),
        (d3.pk, "accept"),
        (d3.pk, "undo"),
        (d5.pk, "reject"),
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "scene-review-keys.png"))
    assert page.console_errors == [] or all("409" in e for e in page.console_errors)
