"""HTTPS settings: `check --deploy` is clean with the production environment compose really uses, and it works."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Each test starts Django in a subprocess (several seconds).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
HTTPS_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")
# What an operator's ../.env adds (compose lists it before production.env): site values only.
SITE_ENV = {"ALLOWED_HOSTS": "review.example.org", "CSRF_TRUSTED_ORIGINS": "https://review.example.org"}


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads them (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def production_env() -> dict[str, str]:
    """The web service's environment files after ../.env, read from the compose file itself."""
    web = yaml.safe_load(COMPOSE.read_text())["services"]["web"]
    files = web["env_file"] if isinstance(web["env_file"], list) else [web["env_file"]]
    assert files[0] == "../.env" and len(files) > 1, "compose must list the production policy after ../.env"
    env = {}
    for name in files[1:]:
        env.update(parse_env_file(COMPOSE.parent / name))
    return env


def run_django(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run manage.py (or python -c) with exactly this environment: no developer .env, no inherited settings."""
    base = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "GEOREVIEW_ENV_FILE": "/nonexistent/.env",
        "SECRET_KEY": secrets.token_urlsafe(50),
        # Nothing here may touch a database; an unreachable one makes sure of it.
        "DATABASE_URL": "postgis://nobody:nothing@127.0.0.1:1/none",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_production_environment():
    result = run_django({**production_env(), **SITE_ENV}, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not [code for code in HTTPS_WARNINGS if code in output], output


def test_check_deploy_fails_with_the_development_defaults():
    """The check can fail: the local HTTP demo's defaults warn about each HTTPS setting."""
    result = run_django(SITE_ENV, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert all(code in output for code in HTTPS_WARNINGS), output


PROBE = """
import json, django
django.setup()
from django.test import Client
out = {}
plain = Client().get("/login/", HTTP_HOST="review.example.org")
out["plain"] = [plain.status_code, plain.get("Location")]
secure = Client().get("/login/", HTTP_HOST="review.example.org", HTTP_X_FORWARDED_PROTO="https")
out["secure"] = [secure.status_code, secure.get("Strict-Transport-Security"), secure.cookies["csrftoken"]["secure"]]
print(json.dumps(out))
"""


def test_production_environment_redirects_plain_http_and_trusts_the_proxy_for_https():
    env = {**production_env(), **SITE_ENV, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = run_django(env, "-c", PROBE)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["plain"] == [301, "https://review.example.org/login/"]
    status, hsts, csrf_cookie_secure = out["secure"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    assert csrf_cookie_secure is True
