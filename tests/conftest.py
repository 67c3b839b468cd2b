"""Shared fixtures: real PostGIS (pytest-django's test database), real Redis, sample scenes, users."""

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from annotate.models import Role
from annotate.services import membership_set, project_create
from config.celery import app as celery_app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
NEON = SAMPLES / "neon_trees_OSBS_029.tif"
NAIP = SAMPLES / "naip_rgbn_m_4709963_se_14_1_20200831.tif"
AERIAL = SAMPLES / "aerial_0.6m_epsg3857_cogeo.tif"
ARTIFACTS = ROOT / "test-artifacts"
# TEST_CACHE_DB lets two test runs on one machine keep their caches (sessions, presence) apart.
TEST_CACHE_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_CACHE_DB', '15')}"


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Each test writes scenes and uploads under its own temporary DATA_DIR."""
    settings.DATA_DIR = tmp_path / "data"
    settings.SCENES_DIR = settings.DATA_DIR / "media" / "scenes"
    settings.UPLOAD_TMP_DIR = settings.DATA_DIR / "uploads"
    settings.FILE_UPLOAD_TEMP_DIR = str(settings.UPLOAD_TMP_DIR)
    settings.SCENES_DIR.mkdir(parents=True)
    settings.UPLOAD_TMP_DIR.mkdir(parents=True)
    # A Redis database of its own, so tests never read or evict a running demo's sessions and cache.
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": TEST_CACHE_URL, "KEY_PREFIX": "georeview-test"}
    }


@pytest.fixture(autouse=True)
def _eager_celery():
    """Run tasks inline unless a test asks for the real worker (see tests/gpu_tasks/test_worker.py)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False


def make_user(username: str):
    """A user with password `pw-<username>`."""
    return get_user_model().objects.create_user(username=username, password=f"pw-{username}")


@pytest.fixture
def manager(db):
    return make_user("manager")


@pytest.fixture
def outsider(db):
    return make_user("outsider")


@pytest.fixture
def project(manager):
    return project_create(name="Kilns", user=manager)


@pytest.fixture
def other_project(outsider):
    return project_create(name="Elsewhere", user=outsider)


@pytest.fixture
def viewer(project):
    user = make_user("viewer")
    membership_set(project=project, user=user, role=Role.VIEWER)
    return user


@pytest.fixture
def api(manager):
    """An API client logged in (real session) as the project's manager."""
    return client_for(manager)


def client_for(user) -> APIClient:
    """An API client with a real session for `user` (CSRF checks off, as DRF's test client does)."""
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def ingested(project, manager):
    """Ingest a sample scene into the manager's project: `ingested(path, bands=None)`."""
    from annotate.services import scene_create_from_path, scene_ingest

    def _ingest(path: Path, bands=None, target_project=None):
        scene = scene_create_from_path(project=target_project or project, user=manager, source=path)
        return scene_ingest(scene=scene, rgb_bands=bands)

    return _ingest


SAM2_TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="session")
def random_sam2_checkpoint(tmp_path_factory):
    """SAM2.1-tiny with random weights saved as a checkpoint file, loaded by the product's loader."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2(SAM2_TINY_CONFIG, ckpt_path=None, device="cpu")
    path = tmp_path_factory.mktemp("models") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return f"{SAM2_TINY_CONFIG}::{path}"
