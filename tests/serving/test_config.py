"""The proxy config is one template that both deployments render into a valid nginx config with the same limits."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import requests
import yaml

from scripts.nginx_conf import MULTIPART_ALLOWANCE
from tests.serving.conftest import NGINX, ROOT, free_ports

TEMPLATE = ROOT / "docker" / "nginx" / "nginx.conf.template"


def nginx_test(conf) -> subprocess.CompletedProcess:
    """`nginx -t` on a rendered config."""
    return subprocess.run([NGINX, "-t", "-p", str(conf.parent), "-c", conf.name], capture_output=True, text=True)


def dockerfile_proxy_env() -> dict[str, str]:
    """The ENV of docker/Dockerfile's `proxy` stage, as the image sets it."""
    text = (ROOT / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.split(" AS proxy", 1)[1].split("\nFROM ", 1)[0]
    env = {}
    for line in stage.splitlines():
        if line.startswith("ENV "):
            # Docker reads ENV's quotes and backslash escapes as a POSIX shell would.
            for word in shlex.split(line[4:]):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def test_compose_publishes_only_the_proxy_and_builds_it_from_the_dockerfile():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"proxy"}
    assert compose["services"]["proxy"]["build"]["target"] == "proxy"
    assert "web" in compose["services"]["proxy"]["depends_on"]
    assert dockerfile_proxy_env()["PROXY_UPSTREAM"] == "web:8000"


@pytest.mark.skipif(shutil.which("envsubst") is None, reason="envsubst (gettext-base) renders it in the image")
def test_the_image_renders_the_template_into_a_valid_config_with_djangos_body_limit(tmp_path):
    env = dockerfile_proxy_env()
    assert env["NGINX_ENVSUBST_FILTER"] == "^PROXY_" and env["NGINX_ENVSUBST_OUTPUT_DIR"] == "/etc/nginx"
    # What the image's entrypoint does: source the .envsh, then envsubst only PROXY_* names.
    max_body = subprocess.run(["sh", "-c", ". docker/nginx/limits.envsh; echo $PROXY_MAX_BODY"], cwd=ROOT,
                              env={"UPLOAD_MAX_BYTES": "5000000", "PATH": os.environ["PATH"]},
                              capture_output=True, text=True, check=True).stdout.strip()
    assert int(max_body) == 5000000 + MULTIPART_ALLOWANCE
    # Paths and hosts of the image that do not exist here, and a user that does.
    here = {"PROXY_USER": "root" if os.geteuid() == 0 else "", "PROXY_PID": str(tmp_path / "nginx.pid"),
            "PROXY_TEMP_DIR": str(tmp_path), "PROXY_STATIC_ROOT": str(tmp_path),
            "PROXY_LISTEN": f"127.0.0.1:{free_ports(1)[0]}", "PROXY_UPSTREAM": "127.0.0.1:1"}
    values = {**env, "PROXY_MAX_BODY": max_body, **here}
    names = " ".join(f"${{{name}}}" for name in values if name.startswith("PROXY_"))
    rendered = subprocess.run(["envsubst", names], input=TEMPLATE.read_text(), env=values, capture_output=True,
                              text=True, check=True).stdout
    assert "${" not in rendered, re.findall(r"\$\{\w+\}", rendered)
    assert f"client_max_body_size {max_body};" in rendered
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in rendered
    if os.geteuid() != 0:
        rendered = re.sub(r"(?m)^user .*\n", "", rendered)
    conf = tmp_path / "nginx.conf"
    conf.write_text(rendered)
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr


def test_the_demo_renders_the_template_from_the_settings(tmp_path):
    conf = tmp_path / "nginx" / "nginx.conf"
    env = {**os.environ, "UPLOAD_MAX_BYTES": "7000000", "DATA_DIR": str(tmp_path / "data")}
    subprocess.run([sys.executable, "scripts/nginx_conf.py", "--listen", f"127.0.0.1:{free_ports(1)[0]}",
                    "--client-timeout", "7", "--out", str(conf)], cwd=ROOT, env=env, check=True)
    text = conf.read_text()
    assert f"client_max_body_size {7000000 + MULTIPART_ALLOWANCE};" in text
    assert "client_body_timeout 7s;" in text and "client_header_timeout 7s;" in text and "send_timeout 7s;" in text
    assert f"client_body_temp_path {tmp_path / 'data' / 'uploads' / 'nginx'}/body" in text
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr


def test_procfile_starts_the_proxy_first_in_front_of_gunicorn_on_loopback():
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line and not line.startswith("#")]
    # honcho hands the first process $PORT: the address the demo prints.
    assert lines[0].startswith("proxy:") and "--listen ${HOST:-127.0.0.1}:${PORT:-8000}" in lines[0]
    assert "daemon off;" in lines[0]
    web = next(line for line in lines if line.startswith("web:"))
    assert "--bind 127.0.0.1:${WEB_PORT:-8001}" in web and "--threads" in web


def test_without_gunicorn_the_proxy_answers_the_apis_json_error(tmp_path):
    conf = tmp_path / "nginx" / "nginx.conf"
    listen, upstream = free_ports(2)
    subprocess.run([sys.executable, "scripts/nginx_conf.py", "--listen", f"127.0.0.1:{listen}",
                    "--upstream", f"127.0.0.1:{upstream}", "--access-log", "off", "--out", str(conf)],
                   cwd=ROOT, env={**os.environ, "DATA_DIR": str(tmp_path / "data")}, check=True)
    proc = subprocess.Popen([NGINX, "-p", str(conf.parent), "-c", conf.name, "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        response = None
        for _ in range(50):
            try:
                response = requests.get(f"http://127.0.0.1:{listen}/api/projects/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        # nginx's own status (502: nothing listens upstream) with the API's error body.
        assert response is not None and response.status_code == 502
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "unavailable"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
