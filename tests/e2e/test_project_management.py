"""Project management in Chromium (issue 10 §1): a manager creates a project from the home page, edits its classes
(add, rename, recolour, reorder by button and keyboard, a refused deletion), adds and changes members, and deletes
a scene through its dialog; a reviewer opening the same page is offered none of it."""

import re

import pytest
from django.contrib.gis.geos import Polygon
from playwright.sync_api import expect

from annotate.models import Detection, DetectionSource, Membership, ObjectClass, Project, Role, Scene
from annotate.services import DEFAULT_CLASSES, membership_set
from tests.conftest import NEON, make_user
from tests.e2e.test_browser import log_in
from tests.e2e.test_review_workspace import shot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def class_names(page) -> list[str]:
    return page.locator("#class-admin li").evaluate_all("rows => rows.map(r => r.dataset.className)")


def test_a_manager_runs_a_project_from_its_pages_and_a_reviewer_is_offered_none_of_it(
    page, second_page, live_server, manager, ingested
):
    rita = make_user("rita")
    make_user("omar")
    base = live_server.url
    log_in(page, base)

    # Create the project from the home page, with the default classes.
    page.fill("#project-name", "Survey 2026")
    page.fill("#project-description", "Kilns north of the river")
    page.check("input[name=starting_classes][value=default]")
    shot(page, "project-create-form.png")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url(re.compile(r"/projects/\d+/$"))
    project = Project.objects.get(name="Survey 2026")
    assert Membership.objects.get(project=project, user=manager).role == Role.MANAGER
    page.wait_for_selector("#class-admin li[data-class-id]")
    assert class_names(page) == [name for name, _ in DEFAULT_CLASSES]

    # Add a class, rename it, recolour it.
    page.get_by_label("New class").fill("Water Tank")
    page.get_by_role("button", name="Add class").click()
    page.wait_for_selector("#class-admin li[data-class-name='Water Tank']")
    name_box = page.get_by_label("Name of Water Tank")
    name_box.fill("Water Tower")
    name_box.press("Enter")
    page.wait_for_selector("#class-admin li[data-class-name='Water Tower']")
    page.get_by_label("Colour of Water Tower").fill("#1f77b4")
    expect(page.get_by_label("Colour of Water Tower")).to_have_value("#1f77b4")
    tower = ObjectClass.objects.get(project=project, name="Water Tower")
    for _ in range(20):
        tower.refresh_from_db()
        if tower.color == "#1f77b4":
            break
        page.wait_for_timeout(100)
    assert tower.color == "#1f77b4" and tower.index == 8  # the export index never moves

    # Reorder: one step up by its button, then one more with Alt+Up on its name.
    page.get_by_role("button", name="Move Water Tower up").click()
    expect(page.locator("#class-admin li").nth(7)).to_have_attribute("data-class-name", "Water Tower")
    page.get_by_label("Name of Water Tower").focus()
    page.keyboard.press("Alt+ArrowUp")
    expect(page.locator("#class-admin li").nth(6)).to_have_attribute("data-class-name", "Water Tower")
    expect(page.get_by_label("Name of Water Tower")).to_be_focused()  # keeps its place for the next key
    assert class_names(page)[6:] == ["Water Tower", "Pond-1", "Pond-2"]
    tower.refresh_from_db()
    assert (tower.position, tower.index) == (6, 8)

    # A class in use cannot be deleted: the page says how many objects use it.
    scene = ingested(NEON, target_project=project)
    kiln = ObjectClass.objects.get(project=project, name="Brick Kiln")
    footprint = scene.footprint.envelope
    x0, y0, x1, y1 = footprint.extent
    box = Polygon.from_bbox((x0, y0, x0 + (x1 - x0) / 10, y0 + (y1 - y0) / 10))
    box.srid = 4326
    for _ in range(2):
        Detection.objects.create(scene=scene, object_class=kiln, geometry=box, bbox=box,
                                 source=DetectionSource.SEARCH, score=0.7)
    page.reload()  # the scene was added behind the page's back: a reload shows it
    page.wait_for_selector(f".scene-card[data-scene-id='{scene.pk}']")
    page.wait_for_selector("#class-admin li[data-class-id]")
    page.get_by_role("button", name="Delete Brick Kiln").click()
    error = page.locator("#classes-error")
    expect(error).to_have_text("Brick Kiln is used by 2 detections; relabel or delete them first.")
    assert ObjectClass.objects.filter(pk=kiln.pk).exists()
    page.locator("#class-admin").scroll_into_view_if_needed()
    shot(page, "project-class-in-use.png")
    # An unused class goes.
    page.get_by_role("button", name="Delete Pond-2").click()
    expect(page.locator("#class-admin li[data-class-name='Pond-2']")).to_have_count(0)
    expect(error).to_be_hidden()

    # Members: an unknown name is told, a known one added as reviewer, another's role changed.
    page.get_by_label("User name").fill("ritaa")
    page.locator("#member-add-role").select_option("reviewer")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator("#members-error")).to_contain_text("There is no user named 'ritaa'")
    page.get_by_label("User name").fill("rita")
    page.get_by_role("button", name="Add member").click()
    page.wait_for_selector("#member-admin li[data-username='rita']")
    expect(page.get_by_label("Role of rita")).to_have_value("reviewer")
    page.get_by_label("User name").fill("omar")
    page.locator("#member-add-role").select_option("viewer")
    page.get_by_role("button", name="Add member").click()
    page.wait_for_selector("#member-admin li[data-username='omar']")
    page.get_by_label("Role of omar").select_option("annotator")
    expect(page.get_by_label("Role of omar")).to_be_focused()
    for _ in range(20):
        if Membership.objects.get(project=project, user__username="omar").role == Role.ANNOTATOR:
            break
        page.wait_for_timeout(100)
    assert Membership.objects.get(project=project, user__username="omar").role == Role.ANNOTATOR
    assert Membership.objects.get(project=project, user=rita).role == Role.REVIEWER
    # The last manager cannot demote themselves: the page says why and keeps them manager.
    page.evaluate("window.__notReloaded = true")
    page.get_by_label("Role of manager").select_option("viewer")
    expect(page.locator("#members-error")).to_contain_text("only manager")
    expect(page.get_by_label("Role of manager")).to_have_value("manager")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__notReloaded === true")  # a refused change leaves the page as it is
    page.locator("#members-section").scroll_into_view_if_needed()
    shot(page, "project-members.png")

    # The reviewer sees the classes and members, and no control to change them or delete scenes.
    log_in(second_page, base, username="rita", password="pw-rita")
    second_page.goto(f"{base}/projects/{project.pk}/")
    second_page.wait_for_selector("#class-admin li[data-class-id]")
    second_page.wait_for_selector("#member-admin li[data-user-id]")
    second_page.wait_for_selector(f".scene-card[data-scene-id='{scene.pk}']")
    for selector in ("#class-add", ".class-delete", ".class-up", "input[type=color]", ".class-name-input",
                     "#member-add", ".member-remove", ".member-role-select", ".scene-delete",
                     "#scene-delete-dialog", "#dropzone"):
        assert second_page.locator(selector).count() == 0, selector
    assert "Water Tower" in class_names(second_page)
    shot(second_page, "project-as-reviewer.png")

    # Delete the scene through its dialog, which names it; Cancel keeps it.
    page.get_by_role("button", name=f"Delete scene {scene.name}").click()
    dialog = page.locator("#scene-delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#scene-delete-text")).to_have_text(f"Delete “{scene.name}” from this project?")
    shot(page, "project-scene-delete-dialog.png")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert Scene.objects.filter(pk=scene.pk).exists()
    page.get_by_role("button", name=f"Delete scene {scene.name}").click()
    dialog.get_by_role("button", name="Delete scene").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f".scene-card[data-scene-id='{scene.pk}']")).to_have_count(0)
    assert not Scene.objects.filter(pk=scene.pk).exists()
    assert not Detection.objects.filter(object_class=kiln).exists()
    assert page.console_errors == [] or all("409" in e or "400" in e for e in page.console_errors)


@pytest.fixture
def planted(tmp_path, ingested):
    from tests.gpu_tasks.support import planted_scene

    return ingested(planted_scene(tmp_path / "planted.tif"))


def test_the_scene_page_offers_each_role_what_the_api_allows(page, second_page, live_server, planted, project):
    from tests.e2e.test_review_keys import wait_selected
    from tests.e2e.test_scene_search import add_detection, open_scene

    reviewer = make_user("rex")
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    proposal = add_detection(planted, "red_b", "proposed", 0.9)

    # A reviewer decides one at a time and may refine the one in front of them; bulk and search are not offered.
    open_scene(page, live_server.url, planted, username="rex")
    page.wait_for_selector(".score-row")
    for selector in (".bulk-accept", ".bulk-reject", "#search-button", ".class-row input[type=checkbox]"):
        assert page.locator(selector).count() == 0, selector
    assert page.locator("#draw-missed").count() == 1
    page.keyboard.press("n")
    wait_selected(page, proposal.pk)
    page.wait_for_selector(f"#detection-card[data-detection-id='{proposal.pk}']")
    commands = page.locator("#detection-card button[data-command]").evaluate_all("bs => bs.map(b => b.dataset.command)")
    assert "refine" in commands and "accept" in commands
    shot(page, "scene-as-reviewer.png")

    # The manager gets the bulk buttons.
    open_scene(second_page, live_server.url, planted, username="manager")
    second_page.wait_for_selector(".score-row .bulk-accept")
    assert second_page.locator("#search-button").count() == 1


def test_a_manager_renames_the_project_and_a_taken_name_is_refused_on_the_page(page, live_server, manager, project):
    Project.objects.create(name="Taken name")
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.get_by_text("Project name and description").click()  # opens the <details>
    page.get_by_label("Name", exact=True).fill("Taken name")
    page.get_by_label("Name", exact=True).press("Enter")
    error = page.locator("#project-edit-error")
    expect(error).to_be_visible()
    assert "Not saved" in error.inner_text()
    project.refresh_from_db()
    assert project.name != "Taken name"

    page.get_by_label("Name", exact=True).fill("Kilns 2027")
    page.get_by_label("Description").fill("Second season")
    with page.expect_navigation():
        page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("Kilns 2027")
    expect(page.locator("#project-description")).to_have_text("Second season")
    project.refresh_from_db()
    assert (project.name, project.description) == ("Kilns 2027", "Second season")
    shot(page, "project-renamed.png")


def test_a_reviewer_is_not_offered_the_project_settings(page, live_server, project):
    membership_set(project=project, user=make_user("rita"), role=Role.REVIEWER)
    log_in(page, live_server.url, username="rita", password="pw-rita")
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.wait_for_selector("#class-admin li")
    assert page.locator("#project-settings").count() == 0
