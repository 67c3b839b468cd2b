"""`{% vite_entry "src/scene.ts" %}`: script and style tags for a Vite entry, from the build manifest."""

import json
from functools import lru_cache

from django import template
from django.conf import settings
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

register = template.Library()


@lru_cache(maxsize=1)
def _manifest() -> dict:
    """The Vite manifest (built by `npm run build`)."""
    path = settings.FRONTEND_BUILD_DIR / ".vite" / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build the front end (cd frontend && npm ci && npm run build).")
    return json.loads(path.read_text())


@register.simple_tag
def vite_entry(name: str) -> str:
    """Module script and CSS links for one entry point."""
    manifest = _manifest()
    chunk = manifest[name]
    css = list(chunk.get("css", []))
    for imported in chunk.get("imports", []):
        css.extend(manifest[imported].get("css", []))
    links = format_html_join("", '<link rel="stylesheet" href="{}">', ((static(f"frontend/{c}"),) for c in css))
    script = format_html('<script type="module" src="{}"></script>', static(f"frontend/{chunk['file']}"))
    return mark_safe(links + script)  # noqa: S308 - both parts are built with format_html
