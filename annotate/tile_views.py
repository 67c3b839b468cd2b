"""Tile and thumbnail endpoints: plain Django views (no DRF negotiation on the hot path)."""

import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from . import storage, tiles
from .api_errors import error_body
from .models import Scene, SceneStatus

_token_auth = TokenAuthentication()


def _user(request):
    """The session user, or the user of an `Authorization: Token ...` header, or None."""
    if request.user.is_authenticated:
        return request.user
    try:
        found = _token_auth.authenticate(request)
    except AuthenticationFailed:
        return None
    return found[0] if found else None


def _not_found() -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def _visible_scene(request, scene_id: int):
    """The scene's render fields if the caller may see it and it is ready, else None."""
    user = _user(request)
    if user is None:
        return None
    return (
        Scene.objects.filter(pk=scene_id, project__memberships__user=user, status=SceneStatus.READY)
        .only("id", "cog_path", "rgb_bands", "stretch", "dtype", "max_zoom", "updated_at")
        .first()
    )


def _cached_response(request, etag: str, render) -> HttpResponse:
    """304 when the client has this ETag, else the rendered PNG with caching headers."""
    cache_control = f"private, max-age={settings.TILE_CACHE_SECONDS}"
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponse(status=304)
    else:
        started = time.perf_counter()
        response = HttpResponse(render(), content_type="image/png")
        # Lets a browser's network panel (and benchmarks/tiles.py) separate rendering from the rest.
        response["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
    response["ETag"] = etag
    response["Cache-Control"] = cache_control
    return response


@require_GET
def scene_tile(request, scene_id: int, z: int, x: int, y: int):
    """GET /api/scenes/{id}/tiles/{z}/{x}/{y}.png: 256 px WebMercatorQuad PNG, transparent off the data."""
    scene = _visible_scene(request, scene_id)
    if scene is None:
        return _not_found()
    if z > (scene.max_zoom or 0) + settings.TILE_OVERZOOM or x >= 2**z or y >= 2**z:
        return _not_found()
    style = tiles.TileStyle.for_scene(scene.rgb_bands, scene.stretch, scene.dtype)
    etag = f'"t{scene.pk}-{int(scene.updated_at.timestamp())}-{style.etag_part()}-{z}-{x}-{y}"'
    path = storage.absolute(scene.cog_path)
    return _cached_response(request, etag, lambda: tiles.render_tile(path, style, z, x, y) or tiles.EMPTY_PNG)


@require_GET
def scene_thumbnail(request, scene_id: int):
    """GET /api/scenes/{id}/thumbnail.png: the whole scene, at most 256 px on its longer side."""
    scene = _visible_scene(request, scene_id)
    if scene is None:
        return _not_found()
    style = tiles.TileStyle.for_scene(scene.rgb_bands, scene.stretch, scene.dtype)
    etag = f'"p{scene.pk}-{int(scene.updated_at.timestamp())}-{style.etag_part()}"'
    path = storage.absolute(scene.cog_path)
    return _cached_response(request, etag, lambda: tiles.render_preview(path, style))
