"""First run: fetch_models --if-online without a reachable hub, the model-status endpoint, and the demo's classes."""

import http.server
import io
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from huggingface_hub import constants as hf_constants
from rest_framework.test import APIClient

from annotate.demo import DEMO_CLASSES, DEMO_SCENES
from annotate.models import Annotation, Project, SceneStatus
from annotate.services import DEFAULT_CLASSES, project_create, scene_create_from_path, scene_ingest
from gpu_tasks.model_status import FETCH_COMMAND, hub_answers
from tests.conftest import ROOT, client_for, make_user

NOT_REACHABLE = "Models are not installed: the model hub is not reachable from this machine"


# ------------------------------------------------------------------ a hub that is not there, or does not answer
@pytest.fixture
def refused_endpoint(monkeypatch):
    """A hub endpoint on a local port where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    return port


@pytest.fixture
def silent_endpoint(monkeypatch):
    """A hub endpoint that accepts TCP connections and never answers (a black-holed network looks like this)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield
    server.close()


@pytest.fixture
def answering_endpoint(monkeypatch):
    """A hub endpoint that answers (HEAD 401 as for a gated repo, GET 404 as for a missing one)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(401)
            self.end_headers()

        def do_GET(self):
            self.send_response(404)  # no such repository: the download fails at once
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()


@pytest.fixture
def empty_model_dir(settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    settings.DINO_MODEL = "facebook/dinov2-small"
    settings.SAM2_MODEL = "facebook/sam2.1-hiera-tiny"
    return settings.MODEL_DIR


def install_fake_weights(model_dir):
    """Files where fetch_models puts the default models (the loader's resolution only looks at files)."""
    dino = model_dir / "facebook--dinov2-small"
    dino.mkdir(parents=True)
    (dino / "config.json").write_text("{}")
    sam2 = model_dir / "facebook--sam2.1-hiera-tiny"
    sam2.mkdir(parents=True)
    (sam2 / "sam2.1_hiera_tiny.pt").write_bytes(b"")


def fetch_models(*args) -> tuple[str, float]:
    """Run `manage.py fetch_models ARGS` in this process: (stdout, seconds)."""
    out = io.StringIO()
    started = time.monotonic()
    call_command("fetch_models", *args, stdout=out)
    return out.getvalue(), time.monotonic() - started


def test_if_online_says_plainly_that_the_hub_is_unreachable_and_exits_0(refused_endpoint, empty_model_dir):
    out, seconds = fetch_models("--if-online")  # no CommandError: exit status 0, the demo goes on
    assert NOT_REACHABLE in out
    assert f"On a machine with internet run: {FETCH_COMMAND}" in out
    assert "facebook/dinov2-small" in out and "facebook/sam2.1-hiera-tiny" in out
    assert seconds < 10
    assert not any(empty_model_dir.iterdir()), "nothing half-downloaded is left behind"


def test_if_online_gives_up_on_a_hub_that_never_answers_within_its_timeout(silent_endpoint, empty_model_dir):
    out, seconds = fetch_models("--if-online", "--hub-timeout", "2")
    assert NOT_REACHABLE in out
    assert 1.5 < seconds < 5


def test_default_hub_timeout_keeps_the_first_run_under_ten_seconds(silent_endpoint, empty_model_dir):
    out, seconds = fetch_models("--if-online")
    assert NOT_REACHABLE in out
    assert seconds < 10


def test_if_online_a_failed_download_is_said_plainly_and_exits_0(answering_endpoint, empty_model_dir):
    out, seconds = fetch_models("--if-online")
    assert "Models are not installed: downloading facebook/dinov2-small failed" in out
    assert f"On a machine with internet run: {FETCH_COMMAND}" in out
    assert seconds < 30


def test_without_if_online_an_unreachable_hub_is_an_error(refused_endpoint, empty_model_dir):
    with pytest.raises(CommandError, match="needs internet access to the model hub"):
        fetch_models()


def test_installed_models_are_skipped_without_asking_the_hub(silent_endpoint, empty_model_dir):
    install_fake_weights(empty_model_dir)
    out, seconds = fetch_models("--if-online")
    assert "All models are present" in out and "skipped" in out
    assert seconds < 1, "a silent hub would have cost the probe's timeout"


def test_a_missing_local_model_path_is_named_not_downloaded(refused_endpoint, empty_model_dir, settings, tmp_path):
    settings.DINO_MODEL = str(tmp_path / "my-dino")
    with pytest.raises(CommandError, match="DINO_MODEL is a local path"):
        fetch_models()
    out, _ = fetch_models("--if-online")
    assert "Not installed: DINO_MODEL is a local path" in out and NOT_REACHABLE in out  # SAM2 still wanted


@pytest.fixture
def hub_allowed(monkeypatch):
    """huggingface_hub's offline switch lifted, as fetch_models does (settings turn it on for every process)."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)


def test_the_hub_probe_counts_any_http_answer_as_reachable(answering_endpoint, hub_allowed):
    assert hub_answers(repo_id="facebook/dinov2-small", timeout_s=3)


def test_the_hub_probe_says_no_when_nothing_answers(refused_endpoint, hub_allowed):
    assert not hub_answers(repo_id="facebook/dinov2-small", timeout_s=3)


def test_fetch_models_leaves_the_hub_switched_off_for_the_rest_of_the_process(refused_endpoint, empty_model_dir):
    offline = hf_constants.HF_HUB_OFFLINE
    fetch_models("--if-online")
    assert offline == hf_constants.HF_HUB_OFFLINE


# ------------------------------------------------------------------ GET /api/models/
@pytest.mark.django_db
def test_model_status_names_what_is_missing_and_the_command(empty_model_dir):
    data = client_for(make_user("someone")).get("/api/models/").json()
    assert data["ready"] is False and data["search_ready"] is False and data["refine_ready"] is False
    assert data["backbone"] == {
        "setting": "DINO_MODEL", "model": "facebook/dinov2-small", "needed_for": "search", "installed": False,
        "fetchable": True, "hint": data["backbone"]["hint"],
    }
    assert FETCH_COMMAND in data["backbone"]["hint"] and FETCH_COMMAND in data["message"]
    assert str(empty_model_dir) not in str(data), "server paths are not shown to users"


@pytest.mark.django_db
def test_model_status_sees_models_where_the_loader_finds_them(empty_model_dir):
    install_fake_weights(empty_model_dir)
    data = client_for(make_user("someone")).get("/api/models/").json()
    assert data["ready"] and data["search_ready"] and data["refine_ready"] and data["message"] == ""


@pytest.mark.django_db
def test_a_local_model_path_gets_a_hint_about_the_path_not_the_download(settings, tmp_path):
    settings.DINO_MODEL = str(tmp_path / "my-dino")
    data = client_for(make_user("someone")).get("/api/models/").json()
    assert data["backbone"]["fetchable"] is False and "DINO_MODEL names a local path" in data["backbone"]["hint"]


@pytest.mark.django_db
def test_model_status_needs_a_login():
    assert APIClient().get("/api/models/").status_code in (401, 403)


def test_checking_models_does_not_import_torch():
    """The web process answers /api/models/ without loading the ML stack (about 1.5 GB per worker)."""
    code = (
        "import sys, django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "from gpu_tasks.model_apis import ModelStatusApi; from gpu_tasks.model_status import model_status;"
        "model_status().message();"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'sam2'});"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# ------------------------------------------------------------------ seed_demo
def demo_class_names(project) -> list[str]:
    return list(project.classes.order_by("index").values_list("name", flat=True))


@pytest.mark.slow
@pytest.mark.django_db
def test_seed_demo_gives_classes_that_fit_the_imagery_and_is_idempotent():
    call_command("seed_demo", verbosity=0, stdout=io.StringIO())
    project = Project.objects.get(name="Demo")
    assert demo_class_names(project) == [name for name, _ in DEMO_CLASSES]
    assert list(project.classes.order_by("index").values_list("index", flat=True)) == [0, 1, 2, 3]
    scenes = {s.name: s for s in project.scenes.all()}
    assert set(scenes) == {d.name for d in DEMO_SCENES}
    assert all(s.status == SceneStatus.READY for s in scenes.values())
    naip = scenes["NAIP prairie potholes, North Dakota (5 m)"]
    assert (naip.width, naip.height, naip.rgb_bands) == (934, 723, [1, 2, 3])
    before = {(c.pk, c.name, c.index, c.color) for c in project.classes.all()}

    out = io.StringIO()
    call_command("seed_demo", verbosity=0, stdout=out)
    assert {(c.pk, c.name, c.index, c.color) for c in project.classes.all()} == before
    assert {s.pk for s in project.scenes.all()} == {s.pk for s in scenes.values()}
    assert "Created" not in out.getvalue() and "is now" not in out.getvalue()


@pytest.mark.slow
@pytest.mark.django_db
def test_seed_demo_replaces_the_unused_default_classes_of_an_existing_demo():
    user = make_user("demo")
    project = project_create(name="Demo", user=user)  # what an older seed_demo left: the eight defaults
    assert demo_class_names(project) == [name for name, _ in DEFAULT_CLASSES]
    neon = DEMO_SCENES[0]
    scene = scene_ingest(scene=scene_create_from_path(project=project, user=user, source=neon.path, name=neon.name))
    kiln = project.classes.get(name="Brick Kiln")
    example = Annotation.objects.create(
        scene=scene, object_class=kiln, geometry=scene.footprint.centroid.buffer(0.00001), author=user
    )

    call_command("seed_demo", verbosity=0, stdout=io.StringIO())
    names = demo_class_names(project)
    assert "Brick Kiln" in names, "a class with an example is the user's work: kept"
    assert set(names) == {"Brick Kiln", *(name for name, _ in DEMO_CLASSES)}
    example.refresh_from_db()
    assert example.object_class_id == kiln.pk
    # Renamed in place: the demo classes took the unused defaults' export indexes, none beyond the old range.
    assert max(project.classes.values_list("index", flat=True)) < len(DEFAULT_CLASSES)
    assert project.scenes.get(name=neon.name).pk == scene.pk, "the ready demo scene is not ingested again"
