"""Work cells in Chromium (issue 10 §2, §5): a manager splits a scene into cells and deals them round-robin in the
page; two reviewers each get their own cell's detections first; a reviewer marks her cell done, and a key pressed
on a detection there shows the refusal while nothing changes in the database."""

import re

import pytest

from annotate.models import DetectionStatus, Role
from annotate.services import membership_set
from review.models import ReviewEvent, WorkCell
from tests.conftest import make_user
from tests.e2e.conftest import fresh_page
from tests.e2e.test_review_keys import wait_selected
from tests.e2e.test_review_workspace import centre_3857, shot
from tests.e2e.test_scene_search import kiln_detection, open_scene, page_points

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PROPOSED = DetectionStatus.PROPOSED


@pytest.fixture
def scene(tmp_path, ingested):
    from tests.gpu_tasks.support import planted_scene

    return ingested(planted_scene(tmp_path / "planted.tif"))  # 1036 m square, 1 m UTM pixels


@pytest.fixture
def reviewers(project):
    users = [make_user("rita"), make_user("bob")]
    for u in users:
        membership_set(project=project, user=u, role=Role.REVIEWER)
    return users


def test_cells_split_dealt_served_first_and_done_cells_refuse_edits(browser, page, second_page, live_server, scene,
                                                                    reviewers):
    rita, bob = reviewers
    # One proposal per quarter of the scene; by score alone bob's two (the left half) come first for everyone.
    a1 = kiln_detection(scene, (84, 84, 140, 140), PROPOSED, 0.95)
    a2 = kiln_detection(scene, (700, 140, 756, 196), PROPOSED, 0.6)
    b1 = kiln_detection(scene, (140, 840, 196, 896), PROPOSED, 0.9)
    b2 = kiln_detection(scene, (840, 840, 896, 896), PROPOSED, 0.5)

    with fresh_page(browser) as manager_page:
        open_scene(manager_page, live_server.url, scene, username="manager")
        section = manager_page.locator("#cells-block")
        section.get_by_text("This scene is not split into cells.").wait_for()
        manager_page.get_by_label("Cell size (m)").fill("518")
        manager_page.get_by_role("button", name="Split whole scene").click()
        section.get_by_text("4 cells, 0 done.").wait_for()
        # Deal them over the two reviewers (the manager unticked).
        manager_page.get_by_label("manager (manager)").uncheck()
        manager_page.get_by_role("button", name="Assign round-robin").click()
        manager_page.wait_for_function(
            "() => window.__georeviewMap.getLayers().getArray().find(l => l.get('name') === 'work-cells')"
            ".getSource().getFeatures().every(f => f.get('assignee_name'))"
        )
        shot(manager_page, "work-cells-dealt.png")
        owners = dict(WorkCell.objects.filter(scene=scene).values_list("label", "assignee__username"))
        assert owners == {"A1": "bob", "A2": "rita", "B1": "bob", "B2": "rita"}  # members in name order

        # By hand: pick a reviewer, then click cells on the map (A1 to rita, then back to bob).
        manager_page.get_by_role("button", name="Assign by clicking cells").click()
        a1_centre = page_points(manager_page, [centre_3857(WorkCell.objects.get(scene=scene, label="A1").geometry)])[0]
        for name in ("rita", "bob"):
            manager_page.get_by_label("Clicked cells go to").select_option(label=name)
            with manager_page.expect_response(lambda r: "/assign/" in r.url) as answer:
                manager_page.mouse.click(*a1_centre)
            assert answer.value.status == 200
            assert WorkCell.objects.get(scene=scene, label="A1").assignee.username == name
        manager_page.get_by_role("button", name="Stop assigning").click()
        assert manager_page.console_errors == []

    # Each reviewer's queue starts in their own cells: rita gets A2 (0.6), not bob's 0.95 or 0.9.
    open_scene(page, live_server.url, scene, username="rita")
    open_scene(second_page, live_server.url, scene, username="bob")
    page.keyboard.press("n")
    wait_selected(page, a2.pk)
    second_page.keyboard.press("n")
    wait_selected(second_page, a1.pk)
    page.keyboard.press("n")
    wait_selected(page, b2.pk)
    second_page.keyboard.press("n")
    wait_selected(second_page, b1.pk)
    page.locator("#my-cells").get_by_text(re.compile(r"Your cells: A2 \(0/1\), B2 \(0/1\)")).wait_for()
    shot(page, "work-cells-own-first.png")

    # Rita finishes B2 (after a confirmation) with its proposal still undecided.
    page.get_by_role("button", name="Mark my cell done").click()
    dialog = page.locator("#confirm-dialog")
    assert "Mark cell B2 done?" in dialog.inner_text()
    dialog.get_by_role("button", name="Yes, do it").click()
    page.locator("#my-cells").get_by_text("B2 (done)").wait_for()
    # The card says why, and its decision buttons are disabled.
    card = page.locator("#detection-card")
    card.locator(".cell-done-note").get_by_text(re.compile(r"Cell B2 was marked done by rita at \d\d:\d\d")).wait_for()
    assert card.locator("button[data-command='accept']").is_disabled()

    # The key still reaches the server, which refuses; the message says who and what to do.
    with page.expect_response(lambda r: f"/api/detections/{b2.pk}/review/" in r.url) as answer:
        page.keyboard.press("a")
    assert answer.value.status == 409
    error = page.locator("#panel-error")
    error.wait_for(state="visible")
    assert re.search(r"Cell B2 was marked done by rita at \d\d:\d\d; ask a manager to reopen it\.", error.inner_text())
    error.scroll_into_view_if_needed()
    shot(page, "work-cells-done-refused.png")
    b2.refresh_from_db()
    assert (b2.status, b2.version) == (PROPOSED, 1)
    assert not ReviewEvent.objects.filter(detection_id=b2.pk).exists()
    assert WorkCell.objects.get(scene=scene, label="B2").status == "done"
    assert all("409" in e for e in page.console_errors), page.console_errors
    assert second_page.console_errors == []


def test_a_manager_draws_an_area_and_only_cells_touching_it_are_made(page, live_server, scene):
    from tests.gpu_tasks.support import px_box_to_polygon

    open_scene(page, live_server.url, scene, username="manager")
    page.get_by_label("Cell size (m)").fill("100")
    page.get_by_role("button", name="Draw area and split").click()
    # An area over the top-left 250 m x 250 m of the scene (1 m pixels), drawn corner by corner.
    area = px_box_to_polygon(scene, (10, 10, 250, 250))
    corners = page_points(page, [list(c) for c in area.transform(3857, clone=True).exterior_ring.coords[:-1]])
    with page.expect_response(lambda r: "/cells/split/" in r.url) as answer:
        for point in [*corners, corners[0]]:
            page.mouse.click(*point)
            page.wait_for_timeout(300)
    assert answer.value.status == 200, answer.value.text()
    page.locator("#cells-summary").get_by_text("9 cells, 0 done.").wait_for()
    labels = sorted(WorkCell.objects.filter(scene=scene).values_list("label", flat=True))
    # 100 m cells from the area's top-left corner: 240 m across -> 3 columns and 3 rows.
    assert labels == ["A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3"]
    assert all(c.geometry.intersects(area) for c in WorkCell.objects.filter(scene=scene))
    shot(page, "work-cells-area.png")
    assert page.console_errors == []
