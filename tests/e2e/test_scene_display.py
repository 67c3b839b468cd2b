"""Scene display in the browser: warnings shown, a manager sets the fill value, the map fits a scene across 180."""

import numpy as np
import pytest

from annotate.models import Role, Scene
from annotate.services import membership_set
from tests.conftest import ARTIFACTS, make_user
from tests.e2e.test_browser import log_in
from tests.rasters import gradient, write_across_antimeridian, write_tif

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
WORLD_HALF_M = 20037508.34


def open_scene(page, base_url, scene, username="manager"):
    log_in(page, base_url, username, f"pw-{username}")
    page.goto(f"{base_url}/scenes/{scene.pk}/")
    page.wait_for_selector("#map[data-ready='1']")


def test_a_manager_hides_an_undeclared_fill_value_from_the_scene_page(page, live_server, ingested, tmp_path):
    data = (gradient(count=3, dtype="float32", scale=1.0) * 100 + 100).astype("float32")
    data[:, :100, :] = -9999
    scene = ingested(write_tif(tmp_path / "fill.tif", data))
    tile_urls = []
    page.on("request", lambda r: "/tiles/" in r.url and tile_urls.append(r.url))
    open_scene(page, live_server.url, scene)

    warnings = page.locator("#scene-warnings")
    warnings.wait_for(state="visible")
    assert "-9999" in warnings.inner_text()
    page.click("#scene-display summary")
    page.fill("#scene-display input[name=nodata]", "-9999")
    page.click("#scene-display button[type=submit]")
    page.wait_for_selector("#scene-display[data-saved]")
    assert Scene.objects.get(pk=scene.pk).nodata == -9999
    assert "-9999" not in (page.locator("#scene-warnings").inner_text() if warnings.is_visible() else "")
    page.wait_for_function("() => document.getElementById('map').dataset.tilesLoaded > 0")
    page.wait_for_timeout(500)
    assert any("?v=" in url for url in tile_urls), "the tiles were asked for again"

    page.fill("#scene-display input[aria-label^='Red'][aria-label$='low']", "300")
    page.fill("#scene-display input[aria-label^='Red'][aria-label$='high']", "200")
    page.click("#scene-display button[type=submit]")
    error = page.locator("#scene-display .alert")
    error.wait_for(state="visible")
    assert "must be below high" in error.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".sidebar").screenshot(path=str(ARTIFACTS / "scene-display.png"))
    # The browser logs the refused PATCH's 400 itself; nothing else may fail.
    assert [e for e in page.console_errors if "status of 400" not in e] == []


def test_a_viewer_sees_warnings_but_no_display_form(page, live_server, ingested, project, tmp_path):
    data = np.zeros((3, 300, 400), "uint8") + 120
    data[:, :20, :] = data[:, -20:, :] = data[:, :, :20] = data[:, :, -20:] = 0
    scene = ingested(write_tif(tmp_path / "collar.tif", data))
    membership_set(project=project, user=make_user("viewer"), role=Role.VIEWER)
    open_scene(page, live_server.url, scene, "viewer")
    page.locator("#scene-warnings").wait_for(state="visible")
    assert "GDAL_TIFF_INTERNAL_MASK" in page.locator("#scene-warnings code").first.inner_text()
    assert page.locator("#scene-display").count() == 0
    assert page.console_errors == []


def test_the_map_fits_a_scene_across_the_antimeridian_not_the_world(page, live_server, ingested, tmp_path):
    scene = ingested(write_across_antimeridian(tmp_path / "fiji.tif"))
    open_scene(page, live_server.url, scene)
    west, south, east, north = page.evaluate("() => window.__georeviewMap.getView().calculateExtent()")
    assert east - west < 200_000, "the view shows the 20 km scene, not the world"
    assert west < WORLD_HALF_M < east or west < -WORLD_HALF_M < east, "centred on 180 degrees"
    page.wait_for_function("() => document.getElementById('map').dataset.tilesLoaded > 0")
    page.screenshot(path=str(ARTIFACTS / "antimeridian-scene.png"))
    assert page.console_errors == []
