"""Tile and thumbnail endpoints: plain Django views (no DRF negotiation on the hot path)."""

import functools
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from . import storage, tiles, vector_tiles
from .errors import error_body
from .models import DetectionStatus, Scene, SceneStatus

_token_auth = TokenAuthentication()

# How long a worker process trusts an answer of "this caller may see this scene". A map view asks for dozens
# of tiles a second, and resolving the caller and the membership took three database round trips per tile.
# Bound: any change to who may see a scene (membership removed, token deleted, logout, user deactivated,
# scene deleted or no longer ready) and to how it is drawn (bands, stretch) is honoured within this many
# seconds. Only grants are cached, so a refusal is never held.
VISIBLE_CACHE_SECONDS = 5.0
VISIBLE_CACHE_SIZE = 4096
_clock = time.monotonic
_visible_cache: dict[tuple, tuple[float, "VisibleScene"]] = {}


@dataclass(frozen=True)
class VisibleScene:
    """What the tile endpoints need of a scene the caller may see."""

    pk: int
    path: Path
    style: tiles.TileStyle
    max_zoom: int
    version: str  # id, last change and style: the stem of the ETags

    @classmethod
    def of(cls, scene: Scene) -> "VisibleScene":
        """The render fields of a scene row."""
        style = tiles.TileStyle.for_scene(scene.rgb_bands, scene.stretch, scene.dtype, nodata=scene.nodata)
        return cls(pk=scene.pk, path=storage.absolute(scene.cog_path), style=style, max_zoom=scene.max_zoom or 0,
                   version=f"{scene.pk}-{int(scene.updated_at.timestamp())}-{style.etag_part()}")


def clear_visible_cache() -> None:
    """Forget every cached grant (tests; a process that must honour a revocation at once)."""
    _visible_cache.clear()
    _member_cache.clear()


# Grants for detection tiles: membership only (a scene's detections need no COG), same bound as above.
_member_cache: dict[tuple, float] = {}


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


def _credentials(request) -> tuple[str | None, str | None]:
    """The two request parts `_user` is decided by: the session cookie and the Authorization header."""
    return request.COOKIES.get(settings.SESSION_COOKIE_NAME), request.headers.get("Authorization")


def _visible_scene(request, scene_id: int) -> VisibleScene | None:
    """The scene's render fields if the caller may see it and it is ready, else None."""
    credentials = _credentials(request)
    if credentials == (None, None):
        return None
    # Keyed by the credentials themselves (not a user id), so a hit needs no session, token or user lookup.
    key = (credentials, scene_id)
    now = _clock()
    cached = _visible_cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    user = _user(request)
    if user is None:
        return None
    scene = (
        Scene.objects.filter(pk=scene_id, project__memberships__user=user, status=SceneStatus.READY)
        .only("id", "cog_path", "rgb_bands", "stretch", "dtype", "nodata", "max_zoom", "updated_at")
        .first()
    )
    if scene is None:
        _visible_cache.pop(key, None)
        return None
    visible = VisibleScene.of(scene)
    if len(_visible_cache) >= VISIBLE_CACHE_SIZE:
        for stale in [k for k, (expires, _) in list(_visible_cache.items()) if expires <= now]:
            _visible_cache.pop(stale, None)
        if len(_visible_cache) >= VISIBLE_CACHE_SIZE:
            _visible_cache.clear()
    _visible_cache[key] = (now + VISIBLE_CACHE_SECONDS, visible)
    return visible


def read_only(view):
    """GET and HEAD only; any other method gets a JSON 405 in the API's error shape.

    csrf_exempt so that a POST reaches this answer instead of Django's HTML CSRF page: these views never
    change anything, so there is nothing for CSRF to protect.
    """

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method not in ("GET", "HEAD"):
            response = JsonResponse(
                error_body("method_not_allowed", f"Method {request.method} is not allowed here; use GET."), status=405
            )
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    return csrf_exempt(wrapper)


def _forget(request, scene_id: int) -> None:
    """Drop a cached grant (its COG has gone)."""
    _visible_cache.pop((_credentials(request), scene_id), None)


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
    # The answer depends on who asks; a cache hit never touches the session, which used to add this.
    patch_vary_headers(response, ("Cookie",))
    return response


@read_only
def scene_tile(request, scene_id: int, z: int, x: int, y: int):
    """GET /api/scenes/{id}/tiles/{z}/{x}/{y}.png: 256 px WebMercatorQuad PNG, transparent off the data."""
    scene = _visible_scene(request, scene_id)
    if scene is None:
        return _not_found()
    if z > scene.max_zoom + settings.TILE_OVERZOOM or x >= 2**z or y >= 2**z:
        return _not_found()
    etag = f'"t{scene.version}-{z}-{x}-{y}"'
    try:
        return _cached_response(
            request, etag, lambda: tiles.render_tile(scene.path, scene.style, z, x, y) or tiles.EMPTY_PNG)
    except FileNotFoundError:  # deleted (or re-ingested) since the grant was cached
        _forget(request, scene_id)
        return _not_found()


@read_only
def scene_thumbnail(request, scene_id: int):
    """GET /api/scenes/{id}/thumbnail.png: the whole scene, at most 256 px on its longer side."""
    scene = _visible_scene(request, scene_id)
    if scene is None:
        return _not_found()
    try:
        return _cached_response(request, f'"p{scene.version}"', lambda: tiles.render_preview(scene.path, scene.style))
    except FileNotFoundError:
        _forget(request, scene_id)
        return _not_found()


def _member_of_scene(request, scene_id: int) -> bool:
    """Whether the caller is a member of the scene's project (cached like `_visible_scene`; refusals never)."""
    credentials = _credentials(request)
    if credentials == (None, None):
        return False
    key = (credentials, scene_id)
    now = _clock()
    if _member_cache.get(key, 0.0) > now:
        return True
    user = _user(request)
    if user is None or not Scene.objects.filter(pk=scene_id, project__memberships__user=user).exists():
        _member_cache.pop(key, None)
        return False
    if len(_member_cache) >= VISIBLE_CACHE_SIZE:
        _member_cache.clear()
    _member_cache[key] = now + VISIBLE_CACHE_SECONDS
    return True


def _etag_matches(request, etag: str) -> bool:
    """Whether If-None-Match names this ETag (a list, or weak as a compressing proxy marks it, counts too)."""
    sent = request.headers.get("If-None-Match", "")
    return any(tag.strip().removeprefix("W/") == etag for tag in sent.split(","))


def _bad_request(message: str, detail=None) -> JsonResponse:
    return JsonResponse(error_body("invalid", message, detail), status=400)


def _tile_filters(query) -> dict:
    """`status`, `object_class` (comma lists) and `score_min` of a detection tile request; ValueError says why."""
    filters: dict = {"statuses": None, "class_ids": None, "score_min": None}
    if status_text := query.get("status", "").strip():
        statuses = [s.strip() for s in status_text.split(",") if s.strip()]
        unknown = [s for s in statuses if s not in DetectionStatus.values]
        if unknown or not statuses:
            raise ValueError(f"status must be a comma list of {', '.join(DetectionStatus.values)}; got {status_text!r}")
        filters["statuses"] = statuses
    if class_text := query.get("object_class", "").strip():
        try:
            class_ids = [int(c) for c in class_text.split(",") if c.strip()]
        except ValueError:
            class_ids = []
        if not class_ids or any(not 0 < c < 2**63 for c in class_ids) or len(class_ids) > 1000:
            raise ValueError(f"object_class must be a comma list of class ids; got {class_text[:100]!r}")
        filters["class_ids"] = class_ids
    if score_text := query.get("score_min", "").strip():
        try:
            score_min = float(score_text)
        except ValueError:
            score_min = math.nan
        if not math.isfinite(score_min):
            raise ValueError(f"score_min must be a number; got {score_text[:100]!r}")
        filters["score_min"] = score_min
    return filters


@read_only
def detection_tile(request, scene_id: int, z: int, x: int, y: int):
    """GET /api/scenes/{id}/detections/tiles/{z}/{x}/{y}.mvt: the scene's detections as a Mapbox vector tile.

    Filters: `status` and `object_class` (comma lists), `score_min`. 204 when the tile holds none. Decisions
    change tiles at any moment, so the browser revalidates every time (no-cache) and a 304 saves the bytes.
    """
    if not _member_of_scene(request, scene_id):
        return _not_found()
    if not vector_tiles.tile_in_range(z, x, y):
        return _bad_request(
            f"No such tile {z}/{x}/{y}: zoom must be 0..{vector_tiles.MAX_ZOOM} and x, y below 2**zoom."
        )
    try:
        filters = _tile_filters(request.GET)
    except ValueError as exc:
        return _bad_request(str(exc))
    started = time.perf_counter()
    data = vector_tiles.detection_tile(scene_id, z, x, y, **filters)
    timing = f"db;dur={(time.perf_counter() - started) * 1000:.1f}"
    if not data:
        response = HttpResponse(status=204)
    else:
        etag = f'"d{hashlib.blake2s(data, digest_size=12).hexdigest()}"'
        if _etag_matches(request, etag):
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(data, content_type=vector_tiles.CONTENT_TYPE)
        response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    response["Server-Timing"] = timing
    patch_vary_headers(response, ("Cookie",))
    return response
