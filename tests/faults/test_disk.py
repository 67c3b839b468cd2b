"""Disk full and interrupted uploads, injected for real: a small tmpfs filled up, a socket closed mid-body,
a gunicorn worker killed mid-upload, a Celery worker started over stale files."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token

from annotate.models import SceneStatus
from annotate.services import project_create, scene_create_from_path
from annotate.upload_sweep import uploads_sweep
from gpu_tasks.models import JobStatus
from gpu_tasks.services import ingest_job_run, ingest_job_start
from tests.conftest import ROOT, make_user
from tests.rasters import write_tif
from tests.serving.conftest import free_ports, procfile_command, wait_until_up

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(size_mib)`: a tmpfs of that size (a real full filesystem: ENOSPC); unmounted at the end."""
    mounts: list[Path] = []

    def mount(size_mib: int) -> Path:
        where = tmp_path / f"small{len(mounts)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root in a container that allows it): {done.stderr}")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, size_mib: int) -> None:
    """Give a small tmpfs more room (the administrator freeing space)."""
    subprocess.run(["mount", "-o", f"remount,size={size_mib}m", str(where)], check=True)


def fill(where: Path, leave_bytes: int) -> Path:
    """Write a filler file until only about leave_bytes are free."""
    filler = where / "filler.bin"
    free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
    with open(filler, "ab") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))
    return filler


@pytest.fixture
def web(transactional_db, small_disk, tmp_path):
    """The Procfile's gunicorn (one worker) with DATA_DIR on a 24 MiB tmpfs, and a manager's token and project."""
    data_dir = small_disk(24)
    db = connection.settings_dict
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgis://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        "DATA_DIR": str(data_dir),
        "WEB_PORT": str(port),
        "WEB_WORKERS": "1",
        "CACHE_KEY_PREFIX": f"georeview-disk-test-{os.getpid()}",
    }
    user = make_user("uploader")
    project = project_create(name="Disk", user=user)
    token = Token.objects.create(user=user).key
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", f"exec {procfile_command('web')}"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/login/", proc, log)
        yield type("Web", (), {"port": port, "proc": proc, "data": data_dir, "uploads": data_dir / "uploads",
                               "token": token, "project": project, "log": log})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def multipart(size: int) -> tuple[bytes, bytes, bytes]:
    """(head, file bytes, tail) of a multipart body carrying one `file` of `size` random bytes."""
    head = (b"--xx\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.tif\"\r\n"
            b"Content-Type: image/tiff\r\n\r\n")
    return head, np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8).tobytes(), b"\r\n--xx--\r\n"


def open_upload(web, length: int) -> socket.socket:
    """A raw connection that has sent an upload's headers declaring `length` body bytes."""
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=30)
    sock.sendall(f"POST /api/projects/{web.project.pk}/scenes/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: Token {web.token}\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode())
    return sock


def answer(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the response on a raw connection."""
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def wait_until(predicate, timeout_s: float) -> float:
    """Seconds until predicate() held; fails after timeout_s."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not within {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - started


def temp_files(web) -> list[Path]:
    """Upload temp files on the server."""
    return [p for p in web.uploads.iterdir()] if web.uploads.exists() else []


def test_an_upload_that_fills_the_disk_is_507_and_its_partial_file_is_gone_at_once(web):
    head, content, tail = multipart(8 * MiB)
    sock = open_upload(web, len(head) + len(content) + len(tail))
    sock.sendall(head + content[: 4 * MiB])
    wait_until(lambda: any(p.stat().st_size >= 2 * MiB for p in temp_files(web)), 10)
    # Another writer takes the rest of the disk while the body is still coming.
    filler = fill(web.data, leave_bytes=MiB)
    with contextlib.suppress(OSError):  # the server may answer and close before it has read it all
        sock.sendall(content[4 * MiB:] + tail)
    status, body = answer(sock)
    sock.close()
    assert status == 507, body
    assert body["error"]["code"] == "insufficient_storage"
    assert "out of disk space" in body["error"]["message"] and "administrator" in body["error"]["message"]
    assert temp_files(web) == []  # the handler deleted its partial file before answering
    # With the space back, the next upload goes through (no restart).
    filler.unlink()
    head, content, tail = multipart(MiB)
    sock = open_upload(web, len(head) + len(content) + len(tail))
    sock.sendall(head + content + tail)
    status, body = answer(sock)
    sock.close()
    assert status == 202, body


def test_an_upload_declared_larger_than_the_free_space_is_refused_before_its_body(web):
    sock = open_upload(web, 64 * MiB)  # the tmpfs has 24
    started = time.monotonic()
    status, body = answer(sock)
    sock.close()
    assert status == 507 and body["error"]["code"] == "insufficient_storage", body
    assert "64.0 MiB" in body["error"]["message"]
    assert time.monotonic() - started < 5 and temp_files(web) == []


def test_a_client_that_disconnects_mid_upload_leaves_no_temp_file(web):
    head, content, tail = multipart(6 * MiB)
    sock = open_upload(web, len(head) + len(content) + len(tail))
    sock.sendall(head + content[: 3 * MiB])
    wait_until(lambda: any(p.stat().st_size >= MiB for p in temp_files(web)), 10)
    sock.close()
    seconds = wait_until(lambda: temp_files(web) == [], 10)
    print(f"temp file removed {seconds:.2f} s after the client disconnected")


def test_a_web_worker_killed_mid_upload_leaves_a_file_the_sweep_removes(web):
    head, content, tail = multipart(6 * MiB)
    sock = open_upload(web, len(head) + len(content) + len(tail))
    sock.sendall(head + content[: 3 * MiB])
    wait_until(lambda: any(p.stat().st_size >= MiB for p in temp_files(web)), 10)
    workers = subprocess.run(["pgrep", "-P", str(web.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 1, workers
    os.kill(int(workers[0]), signal.SIGKILL)  # the gunicorn worker this test's server started
    sock.close()
    time.sleep(0.5)
    (left,) = temp_files(web)
    settings.UPLOAD_TMP_DIR = web.uploads
    settings.DATA_DIR = web.data
    assert uploads_sweep() == []  # too recent: it might belong to a request in progress
    assert uploads_sweep(now=time.time() + settings.UPLOAD_STALE_AFTER_S + 1) == [left]
    assert temp_files(web) == []


def test_ingest_on_a_full_disk_says_so_removes_its_output_keeps_the_upload_and_retry_works(
    small_disk, project, manager, tmp_path, django_capture_on_commit_callbacks
):
    data = np.random.default_rng(1).integers(0, 255, (1, 1200, 1200), dtype=np.uint8)  # incompressible
    source = write_tif(tmp_path / "noise.tif", data)
    scenes = small_disk(4)
    settings.SCENES_DIR = scenes
    settings.DATA_DIR = scenes.parent
    scene = scene_create_from_path(project=project, user=manager, source=source)  # 1.4 MiB of the 4
    job = ingest_job_start(scene=scene, user=manager)
    job = ingest_job_run(job_id=job.pk)
    scene.refresh_from_db()
    assert job.status == JobStatus.FAILED and scene.status == SceneStatus.FAILED
    assert "disk is full" in job.error and "retry the ingest" in job.error and "Unexpected" not in job.error
    scene_dir = Path(settings.SCENES_DIR) / Path(scene.upload_path).parent.name
    assert sorted(p.name for p in scene_dir.iterdir()) == ["upload.tif"]  # partial output gone, upload kept
    remount(scenes, 16)  # the administrator frees space
    started = time.monotonic()
    retry = ingest_job_run(job_id=ingest_job_start(scene=scene, user=manager).pk)
    scene.refresh_from_db()
    assert retry.status == JobStatus.SUCCEEDED and scene.status == SceneStatus.READY, retry.error
    print(f"re-ingest after freeing space took {time.monotonic() - started:.2f} s")


GRID_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from gpu_tasks.inference.errors import InsufficientDiskSpace
    from gpu_tasks.inference.grid import GridMeta, GridStore
    meta = GridMeta(grid_h=400, grid_w=400, dim=64, cell_px=14, scale=1, tile_px=518, margin_patches=0,
                    scene_width_px=5600, scene_height_px=5600, key="k")
    try:
        tokens = GridStore(sys.argv[1]).create(meta)
    except InsufficientDiskSpace as exc:
        print("REFUSED", exc)
        sys.exit(0)
    tokens[:] = 1  # every page written, as an embedding run does tile by tile
    tokens.flush()
    print("WROTE")
""")


def test_an_embedding_grid_that_does_not_fit_is_refused_with_sizes_not_a_sigbus(small_disk):
    disk = small_disk(8)  # the grid needs 400 x 400 x 64 x 2 bytes = 19.5 MiB
    done = subprocess.run([sys.executable, "-c", GRID_WRITER, str(disk / "grid")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"the writer died with {done.returncode} (-7 is SIGBUS): {done.stderr[-2000:]}"
    assert done.stdout.startswith("REFUSED"), done.stdout
    assert "19.5 MiB" in done.stdout and "free" in done.stdout and "retry" in done.stdout
    assert (disk / "grid" / "tokens.f16").stat().st_blocks == 0  # what it had allocated is given back


@pytest.mark.worker
def test_a_worker_sweeps_stale_upload_files_when_it_starts(start_worker, settings):
    uploads = Path(settings.UPLOAD_TMP_DIR)
    stale, fresh = uploads / "stale.upload", uploads / "fresh.upload"
    stale.write_bytes(b"x" * 1024)
    fresh.write_bytes(b"y" * 1024)
    hours_ago = time.time() - 7200
    os.utime(stale, (hours_ago, hours_ago))
    worker = start_worker("default", UPLOAD_STALE_AFTER_S=3600)
    deadline = time.monotonic() + 60
    while stale.exists() and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.5)
    assert not stale.exists(), "the worker's housekeeping thread did not sweep the stale upload"
    assert fresh.exists(), "a recent upload (a request may still be writing it) is kept"
