"""Proposer accuracy on the project page in Chromium (issue 12, section 1): a manager marks a scene's done work cell
as an accuracy area and measures visual search there: a per-class table and a precision-recall curve; a reviewer
measures too but is not offered marking."""

import pytest
from django.contrib.gis.geos import Polygon
from playwright.sync_api import expect

from annotate.models import Detection, ObjectClass, Role
from annotate.services import membership_set
from review import cells as cell_services
from review.accuracy_models import AccuracyArea
from tests.conftest import NEON, make_user
from tests.e2e.test_browser import log_in
from tests.e2e.test_review_workspace import shot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_manager_marks_done_cells_and_measures_search(page, live_server, project, manager, ingested):
    scene = ingested(NEON)
    kiln = ObjectClass.objects.filter(project=project).order_by("index").first()
    x0, y0, x1, y1 = scene.footprint.extent
    w, h = (x1 - x0) / 10, (y1 - y0) / 10

    def at(i, j, shift=0.0):
        polygon = Polygon.from_bbox((x0 + (i + shift) * w, y0 + j * h, x0 + (i + shift + 1) * w, y0 + (j + 1) * h))
        polygon.srid = 4326
        return polygon

    def add(geometry, source, status, score=None):
        Detection.objects.create(scene=scene, object_class=kiln, geometry=geometry, bbox=geometry.envelope,
                                 source=source, status=status, score=score)

    add(at(1, 1), "search", "accepted", 0.9)  # found and accepted
    add(at(4, 4), "search", "rejected", 0.8)  # nothing there
    add(at(7, 1, 0.1), "search", "proposed", 0.7)  # beside a drawn object (IoU 0.82)
    add(at(7, 1), "manual", "accepted")
    add(at(2, 7), "manual", "accepted")  # missed by search
    cells = cell_services.cells_split(scene=scene, actor=manager, size_m=1000)  # the 40 m scene in one cell
    assert len(cells) == 1
    cell_services.cell_mark_done(cell=cells[0], actor=manager)

    base = live_server.url
    log_in(page, base)
    page.goto(f"{base}/projects/{project.pk}/")
    row = page.locator(f"#accuracy-areas li[data-accuracy-scene='{scene.pk}']")
    expect(row).to_have_attribute("data-areas", "0")
    row.get_by_role("button", name=f"Mark the done work cells of {scene.name} as accuracy areas").click()
    expect(row).to_have_attribute("data-areas", "1")
    assert AccuracyArea.objects.get().cell_id == cells[0].pk
    page.locator("#accuracy-source").select_option("search")
    page.locator("#accuracy-measure").focus()
    page.keyboard.press("Enter")
    result = page.locator(f"#accuracy-results tr[data-class-name='{kiln.name}'] td")
    expect(result.nth(1)).to_have_text("3")  # reviewed objects
    expect(result.nth(2)).to_have_text("3")  # proposals
    expect(result.nth(3)).to_have_text("2")  # matched
    expect(result.nth(4)).to_have_text("0.67")  # precision
    expect(result.nth(5)).to_have_text("0.67")  # recall
    expect(result.nth(7)).to_have_text(f"{(34 + 33 * 2 / 3) / 101:.2f}")  # AP50
    expect(page.locator(".accuracy-curve polyline.pr-line")).to_have_count(1)
    page.locator("#accuracy-section").scroll_into_view_if_needed()
    shot(page, "accuracy-measured.png")

    # Marking again finds nothing new to mark, and says why.
    row.get_by_role("button", name=f"Mark the done work cells of {scene.name} as accuracy areas").click()
    expect(page.locator("#accuracy-error")).to_contain_text("no done work cell that is not an accuracy area")


def test_a_reviewer_measures_but_is_not_offered_marking(page, live_server, project, manager, ingested):
    scene = ingested(NEON)
    reviewer = make_user("rev")
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    base = live_server.url
    log_in(page, base, "rev", "pw-rev")
    page.goto(f"{base}/projects/{project.pk}/")
    row = page.locator(f"#accuracy-areas li[data-accuracy-scene='{scene.pk}']")
    expect(row).to_have_attribute("data-areas", "0")
    expect(row.get_by_role("button")).to_have_count(0)
    page.locator("#accuracy-measure").click()
    expect(page.locator(".accuracy-table")).to_contain_text("No accuracy area yet")
