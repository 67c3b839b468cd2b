#!/usr/bin/env python
"""Render docker/nginx/nginx.conf.template for a private nginx (demo, tests, benchmark) from the settings.

    .venv/bin/python scripts/nginx_conf.py --listen 127.0.0.1:8000 --upstream 127.0.0.1:8001 --out var/nginx/nginx.conf
    nginx -p var/nginx -c nginx.conf -g 'daemon off;'

Upload limit and the temporary folder for request bodies come from the settings (UPLOAD_MAX_BYTES,
DATA_DIR), so nginx refuses exactly what Django would and buffers bodies next to the uploads.
"""

import argparse
import os
import pwd
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "docker" / "nginx" / "nginx.conf.template"
# Django refuses a declared Content-Length over UPLOAD_MAX_BYTES plus this (the multipart envelope).
MULTIPART_ALLOWANCE = 1024 * 1024


def render(template: str, values: dict[str, str]) -> str:
    """Replace each ${NAME} of `values` (as envsubst does); fail on any placeholder left over."""
    text = re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)
    if left := sorted(set(re.findall(r"\$\{([A-Z_]+)\}", text))):
        raise SystemExit(f"nginx_conf: no value for {', '.join(left)}")
    if os.geteuid() != 0:
        # nginx ignores `user` with a warning unless its master runs as root.
        text = re.sub(r"(?m)^user .*\n", "", text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:8000", help="address:port (or port) nginx listens on")
    parser.add_argument("--upstream", default="127.0.0.1:8001", help="gunicorn's address:port or unix:/path")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "nginx" / "nginx.conf",
                        help="the config file; its folder is nginx's prefix (pid file)")
    parser.add_argument("--client-timeout", type=int, default=10,
                        help="seconds a client may stall while sending headers or body, or reading")
    parser.add_argument("--conn-per-client", type=int, default=256, help="open connections per client address")
    parser.add_argument("--forwarded-proto", default="$scheme",
                        help="X-Forwarded-Proto sent to Django: $scheme, or https when TLS ends in front of nginx")
    parser.add_argument("--access-log", default="/dev/stdout", help="a path, or off")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(settings.UPLOAD_TMP_DIR) / "nginx"
    temp_dir.mkdir(parents=True, exist_ok=True)
    values = {
        # Workers run as the checkout's owner, who can read static files and write the upload folder.
        "PROXY_USER": pwd.getpwuid(ROOT.stat().st_uid).pw_name,
        "PROXY_PID": str(out.parent / "nginx.pid"),
        "PROXY_ACCESS_LOG": "off" if args.access_log == "off" else f"{args.access_log} timed",
        "PROXY_CLIENT_TIMEOUT": str(args.client_timeout),
        "PROXY_CONN_PER_CLIENT": str(args.conn_per_client),
        "PROXY_MAX_BODY": str(settings.UPLOAD_MAX_BYTES + MULTIPART_ALLOWANCE),
        "PROXY_TEMP_DIR": str(temp_dir),
        "PROXY_UPSTREAM": args.upstream,
        "PROXY_LISTEN": args.listen,
        "PROXY_FORWARDED_PROTO": args.forwarded_proto,
        "PROXY_STATIC_ROOT": str(Path(settings.STATIC_ROOT).resolve()),
    }
    out.write_text(render(TEMPLATE.read_text(), values))


if __name__ == "__main__":
    main()
