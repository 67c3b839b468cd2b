"""The real browser path: log in, see the project's scenes, upload one, open a scene and see its tiles."""

import pytest

from tests.conftest import ARTIFACTS, NAIP, NEON

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def log_in(page, base_url, username="manager", password="pw-manager"):
    page.goto(f"{base_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def test_wrong_password_says_so(page, live_server, manager):
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", "manager")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "did not match" in page.locator("[role=alert]").inner_text()


def test_log_in_open_scene_and_see_tiles(page, live_server, project, ingested):
    scene = ingested(NEON)
    log_in(page, live_server.url)
    page.click(f"text={project.name}")
    card = page.locator(f".scene-card[data-scene-id='{scene.pk}']")
    card.wait_for()
    thumb = card.locator("img")
    thumb.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    card.click()
    page.wait_for_url(f"{live_server.url}/scenes/{scene.pk}/")
    page.wait_for_function("Number(document.getElementById('map').dataset.tilesLoaded || 0) >= 1", timeout=30_000)
    page.wait_for_timeout(500)  # let OpenLayers draw the loaded tiles
    assert page.locator("#map").get_attribute("data-tiles-failed") is None
    # The map canvas shows imagery (opaque pixels) in the middle of the scene.
    alpha = page.evaluate(
        """() => {
            const canvas = document.querySelector('#map canvas');
            const ctx = canvas.getContext('2d');
            const d = ctx.getImageData(canvas.width / 2 - 5, canvas.height / 2 - 5, 10, 10).data;
            let opaque = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) opaque++;
            return opaque;
        }"""
    )
    assert alpha == 100
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "scene-page.png"))
    assert page.console_errors == []


def test_upload_from_the_project_page(page, live_server, project):
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.set_input_files("#file-input", str(NAIP))
    page.locator(".scene-card.status-ready").wait_for(timeout=60_000)
    assert "934 × 723 px" in page.locator(".scene-card.status-ready").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "project-page.png"))
