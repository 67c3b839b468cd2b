"""First run in the browser: before Search, the scene page says which models are missing and what installs them."""

import pytest

from gpu_tasks.model_status import FETCH_COMMAND
from gpu_tasks.models import Job
from tests.conftest import ARTIFACTS, NEON
from tests.e2e.test_browser import log_in
from tests.test_first_run import install_fake_weights

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scene(ingested):
    return ingested(NEON)


@pytest.fixture
def model_dir(settings, tmp_path):
    """An empty MODEL_DIR with the default hub ids configured (the live server thread shares these settings)."""
    settings.MODEL_DIR = tmp_path / "models"
    settings.DINO_MODEL = "facebook/dinov2-small"
    settings.SAM2_MODEL = "facebook/sam2.1-hiera-tiny"
    return settings.MODEL_DIR


def open_scene(page, base_url, scene):
    log_in(page, base_url)
    page.goto(f"{base_url}/scenes/{scene.pk}/")
    page.wait_for_selector("#search-panel[data-ready='1']")


def test_the_scene_page_says_models_are_missing_before_search_and_search_explains(page, live_server, scene, model_dir):
    search_posts = []
    page.on("request", lambda r: r.method == "POST" and "/search/" in r.url and search_posts.append(r.url))
    open_scene(page, live_server.url, scene)

    notice = page.locator("#models-notice")
    notice.wait_for(state="visible")
    text = notice.inner_text()
    assert "Models are not installed" in text
    assert "facebook/dinov2-small" in text and "facebook/sam2.1-hiera-tiny" in text
    assert FETCH_COMMAND in notice.locator("code").inner_text()
    assert str(model_dir) not in text
    assert page.locator("#search-button").get_attribute("aria-describedby") == "models-notice"

    page.click("#search-button")
    error = page.locator("#panel-error")
    error.wait_for(state="visible")
    assert "Search needs the facebook/dinov2-small model" in error.inner_text()
    assert FETCH_COMMAND in error.inner_text()
    assert search_posts == [] and not Job.objects.exists(), "no job was queued to fail"
    assert not page.locator("#search-button").is_disabled(), "it stays pressable, to explain"

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".sidebar").screenshot(path=str(ARTIFACTS / "models-notice.png"))
    assert page.console_errors == []


def test_no_notice_when_the_models_are_installed(page, live_server, scene, model_dir):
    install_fake_weights(model_dir)
    open_scene(page, live_server.url, scene)
    assert page.locator("#models-notice").is_hidden()
    assert page.locator("#models-notice").get_attribute("data-search-ready") == "1"
    assert page.console_errors == []


def test_only_sam2_missing_warns_about_refinement_and_leaves_search_alone(page, live_server, scene, model_dir):
    install_fake_weights(model_dir)
    (model_dir / "facebook--sam2.1-hiera-tiny" / "sam2.1_hiera_tiny.pt").unlink()
    open_scene(page, live_server.url, scene)
    notice = page.locator("#models-notice")
    notice.wait_for(state="visible")
    assert "Refinement needs facebook/sam2.1-hiera-tiny" in notice.inner_text()
    assert "Search needs" not in notice.inner_text()
    assert notice.get_attribute("data-search-ready") == "1"
    assert page.console_errors == []
