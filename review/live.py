"""Live updates and presence: a scene's review events after a cursor, and who else has the scene open, in one poll.

Conditional polling (docs/ARCHITECTURE.md, "Decisions"): the database is the source of truth for events (one
indexed range read on review_event (scene_id, id)), and presence lives in one Redis hash per scene, so any web
worker answers any poll and nothing is held open between polls.
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.geos import Point
from django.core.cache import cache
from django.db import connection

from annotate.models import Scene

from .cells import cells_revision
from .cells_models import WorkCell

EVENTS_LIMIT = 500
# A poll comes every second (5 s from a hidden tab): a reviewer not heard from for PRESENCE_SHOWN_S has left.
PRESENCE_SHOWN_S = 10.0
# The scene's hash lives this long after its last poll; fields older than it are pruned.
PRESENCE_TTL_S = 15

# Raw SQL, not the ORM: a poll answers up to 500 compact rows and should cost a few ms, with no model instances,
# no geometries sent to Python (the change test runs in PostGIS) and a LEFT JOIN that keeps deleted actors' events.
_EVENTS_SQL = """
SELECT e.id, e.detection_id, e.verb, e.status_after, e.class_after, e.version_after, e.actor_id, u.username,
       e.created_at, (e.geometry_before IS DISTINCT FROM e.geometry_after) AS geometry_changed
FROM review_reviewevent e LEFT JOIN auth_user u ON u.id = e.actor_id
WHERE e.scene_id = %s AND e.id > %s
ORDER BY e.id
LIMIT %s
"""
_LAST_EVENT_SQL = "SELECT max(id) FROM review_reviewevent WHERE scene_id = %s"
_EVENT_FIELDS = (
    "id", "detection", "verb", "status_after", "class_after", "version_after", "actor", "actor_name", "created_at",
    "geometry_changed",
)


@dataclass(frozen=True)
class Whereabouts:
    """Where a reviewer's page is: the map's centre (lon/lat), and optionally the cell and detection in hand."""

    x: float | None = None
    y: float | None = None
    cell: int | None = None
    detection: int | None = None


def events_after(*, scene: Scene, since: int, limit: int = EVENTS_LIMIT) -> tuple[list[dict], int, bool]:
    """The scene's events after `since` in id order (compact dicts), the new cursor, and whether more are waiting."""
    with connection.cursor() as cursor:
        cursor.execute(_EVENTS_SQL, [scene.pk, since, limit + 1])
        rows = cursor.fetchall()
    more = len(rows) > limit
    events = [dict(zip(_EVENT_FIELDS, row, strict=True)) for row in rows[:limit]]
    for e in events:
        e["created_at"] = e["created_at"].isoformat()
    return events, events[-1]["id"] if events else since, more


def last_event_id(*, scene: Scene) -> int:
    """The scene's newest event id (0 when none): where a page that just opened starts from."""
    with connection.cursor() as cursor:
        cursor.execute(_LAST_EVENT_SQL, [scene.pk])
        (last,) = cursor.fetchone()
    return last or 0


def _presence_key(scene_id: int) -> str:
    return cache.make_and_validate_key(f"live:presence:{scene_id}")


def _redis():
    # Django's RedisCache has no hash operations; its own client (same server, DB and key prefix) has. One hash per
    # scene means one HGETALL reads everyone, and each reviewer's HSET never overwrites another's field.
    return cache._cache.get_client(write=True)


def _cell_label(*, scene: Scene, where: Whereabouts) -> str | None:
    """The label of the named cell of this scene, or of the cell under the map's centre; None if no cell."""
    cells = WorkCell.objects.filter(scene_id=scene.pk)
    if where.cell is not None:
        return cells.filter(pk=where.cell).values_list("label", flat=True).first()
    if where.x is None or where.y is None:
        return None
    point = Point(where.x, where.y, srid=4326)
    return cells.filter(geometry__covers=point).order_by("row", "col").values_list("label", flat=True).first()


def presence_record(*, scene: Scene, user: AbstractBaseUser, where: Whereabouts, revision: str) -> list[dict]:
    """Record where `user` is now; answer the others seen in the last PRESENCE_SHOWN_S seconds, newest first."""
    client, key, now = _redis(), _presence_key(scene.pk), time.time()
    everyone = {int(k): json.loads(v) for k, v in client.hgetall(key).items()}
    mine = everyone.get(user.pk)
    # The cell lookup is a GiST probe; a reviewer who has not moved and whose cells did not change keeps their label.
    same_place = mine and (mine["x"], mine["y"], mine["cell_id"], mine["revision"]) == (
        where.x, where.y, where.cell, revision)
    label = mine["cell"] if same_place else _cell_label(scene=scene, where=where)
    record = {
        "user": user.pk, "name": user.get_username(), "x": where.x, "y": where.y, "cell_id": where.cell,
        "cell": label, "detection": where.detection, "seen_at": now, "revision": revision,
    }
    stale = [str(k) for k, v in everyone.items() if now - v["seen_at"] > PRESENCE_TTL_S]
    with client.pipeline() as pipe:
        pipe.hset(key, str(user.pk), json.dumps(record))
        if stale:
            pipe.hdel(key, *stale)
        pipe.expire(key, PRESENCE_TTL_S)
        pipe.execute()
    others = [v for k, v in everyone.items() if k != user.pk and now - v["seen_at"] <= PRESENCE_SHOWN_S]
    others.sort(key=lambda v: -v["seen_at"])
    return [
        {"user": v["user"], "name": v["name"], "cell": v["cell"], "x": v["x"], "y": v["y"],
         "detection": v["detection"], "seen_at": datetime.fromtimestamp(v["seen_at"], UTC).isoformat()}
        for v in others
    ]


def live_poll(*, scene: Scene, user: AbstractBaseUser, since: int | None, where: Whereabouts) -> dict:
    """One poll: events after `since` (none without it: only the cursor to start from), presence, cells' revision."""
    if since is None:
        events, cursor, more = [], last_event_id(scene=scene), False
    else:
        events, cursor, more = events_after(scene=scene, since=since)
    revision = cells_revision(scene)
    return {
        "events": events,
        "cursor": cursor,
        "more": more,
        "you": user.pk,
        "presence": presence_record(scene=scene, user=user, where=where, revision=revision),
        "cells_revision": revision,
    }
