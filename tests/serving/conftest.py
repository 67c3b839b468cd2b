"""A real gunicorn (the Procfile's `web:` command) behind a private nginx rendered from the repository's template."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent.parent
# Short, so that the cut-off is seen within the test; the demo's default is 10 s.
CLIENT_TIMEOUT_S = 3
# Debian puts it in /usr/sbin, which is not on a normal user's PATH.
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_ports(count: int) -> list[int]:
    """Loopback TCP ports nothing listens on."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def procfile_command(name: str) -> str:
    """A Procfile line's command (its ${VAR:-default}s are left to the shell, as honcho does)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.removeprefix(f"{name}:").strip()
    raise RuntimeError(f"Procfile has no {name}: line")


def wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Poll `url` until it answers below 500; fail with the server's log if it exits or takes 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited ({proc.returncode}): {log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer in 60 s: {log.read_text()[-3000:]}")


@dataclass
class Served:
    """Where the servers listen."""

    proxy: str  # http://127.0.0.1:PORT (nginx)
    direct: str  # http://127.0.0.1:PORT (gunicorn alone)
    proxy_port: int
    direct_port: int
    conf: Path


@pytest.fixture(scope="module")
def served(django_db_setup, django_db_blocker, tmp_path_factory):
    """gunicorn on a free port against the test database, nginx in front of it; both stopped at the end."""
    if not os.access(NGINX, os.X_OK):
        pytest.fail("nginx is not installed: run scripts/setup.sh (it installs Debian's nginx package)")
    tmp = tmp_path_factory.mktemp("serving")
    with django_db_blocker.unblock():
        db = connection.settings_dict
    proxy_port, direct_port = free_ports(2)
    env = {
        **os.environ,
        "DATABASE_URL": f"postgis://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        "DATA_DIR": str(tmp / "data"),
        "CACHE_KEY_PREFIX": f"georeview-serving-test-{os.getpid()}",
        "WEB_PORT": str(direct_port),
        "HOST": "127.0.0.1",
        "PORT": str(proxy_port),
    }
    conf = tmp / "nginx" / "nginx.conf"
    subprocess.run(
        [sys.executable, "scripts/nginx_conf.py", "--listen", f"127.0.0.1:{proxy_port}",
         "--upstream", f"127.0.0.1:{direct_port}", "--client-timeout", str(CLIENT_TIMEOUT_S),
         "--access-log", "off", "--out", str(conf)],
        cwd=ROOT, env=env, check=True,
    )
    procs: list[subprocess.Popen] = []
    logs = {name: tmp / f"{name}.log" for name in ("web", "proxy")}
    try:
        with open(logs["web"], "wb") as web_log, open(logs["proxy"], "wb") as proxy_log:
            # The Procfile's own gunicorn line, so the flags tested are the ones users run.
            procs.append(subprocess.Popen(["bash", "-c", f"exec {procfile_command('web')}"], cwd=ROOT, env=env,
                                          stdout=web_log, stderr=subprocess.STDOUT, start_new_session=True))
            procs.append(subprocess.Popen([NGINX, "-p", str(conf.parent), "-c", conf.name, "-g", "daemon off;"],
                                          cwd=ROOT, env=env, stdout=proxy_log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        wait_until_up(f"http://127.0.0.1:{direct_port}/login/", procs[0], logs["web"])
        wait_until_up(f"http://127.0.0.1:{proxy_port}/login/", procs[1], logs["proxy"])
        yield Served(f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{direct_port}", proxy_port, direct_port,
                     conf)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
