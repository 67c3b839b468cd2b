"""Review analytics (reads only): decisions per reviewer over time, time per decision, accept rates per class and
source, and disagreements between reviewers. Every figure is aggregated by PostgreSQL; Python only shapes the
aggregated rows (a few per hour and reviewer), never the events themselves.

A decision is an event of one of DECISION_VERBS that no undo event reverses; undo events are counted apart.
"""

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.urls import reverse

from annotate.models import DetectionSource, ObjectClass, Project, Scene

from .models import ReviewVerb

DECISION_VERBS = (
    ReviewVerb.ACCEPT, ReviewVerb.REJECT, ReviewVerb.RELABEL, ReviewVerb.RESHAPE, ReviewVerb.CREATE_MANUAL,
    ReviewVerb.DELETE_MANUAL,
)
BREAK_SECONDS = 600  # a gap longer than this between a reviewer's events is a break, not time spent deciding
HOURLY_MAX_SPAN = dt.timedelta(days=14)  # beyond this the activity series is per day (a readable number of bars)
LATEST_DISAGREEMENTS = 50
# The sorts of 100,000 events (window functions, DISTINCT ON) spill to disk at PostgreSQL's default 4 MB and take
# twice as long; this page's few queries get more, for their transaction only.
WORK_MEM = "64MB"
DELETED_SOURCE = "deleted"  # the latest decision's detection no longer exists (a re-searched proposal)


@dataclass(frozen=True)
class AnalyticsFilter:
    """Which events: a project's, optionally of one scene and in [since, until)."""

    project: Project
    scene: Scene | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self, alias: str = "e", *, with_since: bool = True) -> tuple[str, dict]:
        """The SQL condition and its parameters."""
        parts = [f"{alias}.project_id = %(project)s"]
        params: dict = {"project": self.project.pk}
        if self.scene is not None:
            parts.append(f"{alias}.scene_id = %(scene)s")
            params["scene"] = self.scene.pk
        if self.since is not None and with_since:
            parts.append(f"{alias}.created_at >= %(since)s")
            params["since"] = self.since
        if self.until is not None:
            parts.append(f"{alias}.created_at < %(until)s")
            params["until"] = self.until
        return " AND ".join(parts), params


# The filtered events, each flagged `counted` when it is a decision no undo reverses. The undone ids are one
# hashed set per query (an anti-join), not a lookup per event.
_EVENTS_CTE = """
undone AS (
    SELECT DISTINCT undoes_id AS id FROM review_reviewevent
    WHERE project_id = %(project)s AND undoes_id IS NOT NULL
),
ev AS (
    SELECT e.id, e.created_at, e.scene_id, e.detection_id, e.actor_id, e.verb, e.status_before, e.status_after,
           e.class_after, e.batch_id,
           (e.verb = ANY(%(decision_verbs)s) AND u.id IS NULL) AS counted
    FROM review_reviewevent e LEFT JOIN undone u ON u.id = e.id
    WHERE {where}
)
"""


def _rows(sql: str, params: dict) -> list[tuple]:
    """Run one query; its rows."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _events_query(filters: AnalyticsFilter, body: str, *, with_since: bool = True) -> tuple[str, dict]:
    """`WITH undone, ev AS (...) <body>` and its parameters."""
    where, params = filters.where(with_since=with_since)
    params["decision_verbs"] = [str(v) for v in DECISION_VERBS]
    return "WITH " + _EVENTS_CTE.format(where=where) + body, params


def _usernames(ids) -> dict[int, str]:
    """User names by id (one query for the handful of reviewers in the answer)."""
    wanted = {i for i in ids if i is not None}
    users = get_user_model().objects.filter(pk__in=wanted)
    return {u.pk: u.get_username() for u in users}


def _name(names: dict[int, str], user_id: int | None) -> str:
    """A reviewer's name; a deleted account still has a row in the charts."""
    return names.get(user_id, "(deleted user)") if user_id is not None else "(deleted user)"


def _iso(value: dt.datetime) -> str:
    """An aware datetime as ISO 8601 in UTC with a Z."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# --- decisions per reviewer over time ---------------------------------------------------------------------------

_ACTIVITY_SQL = """
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AS hour, actor_id,
       count(*) FILTER (WHERE counted) AS decisions,
       count(*) FILTER (WHERE verb = 'undo') AS undos
FROM ev GROUP BY 1, 2 ORDER BY 1, 2
"""


def _activity(filters: AnalyticsFilter, names: dict[int, str]) -> dict:
    """Decisions and undos per reviewer per hour (UTC), or per day when the events span more than two weeks."""
    sql, params = _events_query(filters, _ACTIVITY_SQL)
    rows = _rows(sql, params)
    if not rows:
        return {"bucket": "hour", "starts": [], "series": []}
    first, last = rows[0][0], rows[-1][0]
    bucket = "hour" if last - first <= HOURLY_MAX_SPAN else "day"
    step = dt.timedelta(hours=1) if bucket == "hour" else dt.timedelta(days=1)
    if bucket == "day":
        first = first.replace(hour=0)
    starts = []
    at = first
    while at <= last:
        starts.append(at)
        at += step
    index = {s: i for i, s in enumerate(starts)}
    series: dict = {}
    for hour, actor_id, decisions, undos in rows:
        at = hour if bucket == "hour" else hour.replace(hour=0)
        entry = series.setdefault(actor_id, {"decisions": [0] * len(starts), "undos": [0] * len(starts)})
        entry["decisions"][index[at]] += decisions
        entry["undos"][index[at]] += undos
    names.update(_usernames(series))
    return {
        "bucket": bucket,
        "starts": [_iso(s.replace(tzinfo=dt.UTC)) for s in starts],
        "series": sorted(
            (
                {
                    "reviewer": actor_id, "username": _name(names, actor_id), "decisions": e["decisions"],
                    "undos": e["undos"], "total_decisions": sum(e["decisions"]), "total_undos": sum(e["undos"]),
                }
                for actor_id, e in series.items()
            ),
            key=lambda s: (-s["total_decisions"], s["username"]),
        ),
    }


# --- time per decision --------------------------------------------------------------------------------------------

# The gap before each decision since the same reviewer's previous event in the same scene (any event: an undo or a
# later-undone decision took their time too). A bulk action is one action: its second and later events are not
# gaps. Gaps over BREAK_SECONDS are breaks and left out of the median and p90.
_PACE_SQL = """,
gaps AS (
    SELECT actor_id, counted, batch_id,
           extract(epoch FROM created_at - lag(created_at) OVER w) AS gap,
           lag(batch_id) OVER w AS previous_batch
    FROM ev WHERE actor_id IS NOT NULL
    WINDOW w AS (PARTITION BY actor_id, scene_id ORDER BY created_at, id)
)
SELECT actor_id,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) FILTER (WHERE gap <= %(break)s) AS median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY gap) FILTER (WHERE gap <= %(break)s) AS p90,
       count(*) FILTER (WHERE gap <= %(break)s) AS timed,
       count(*) FILTER (WHERE gap > %(break)s) AS breaks
FROM gaps
WHERE counted AND gap IS NOT NULL AND (batch_id IS NULL OR previous_batch IS DISTINCT FROM batch_id)
GROUP BY actor_id
"""


def _pace(filters: AnalyticsFilter, names: dict[int, str]) -> dict:
    """Median and p90 seconds between a reviewer's consecutive events per decision, breaks left out."""
    sql, params = _events_query(filters, _PACE_SQL)
    rows = _rows(sql, params | {"break": BREAK_SECONDS})
    names.update(_usernames(r[0] for r in rows))
    reviewers = [
        {
            "reviewer": actor_id, "username": _name(names, actor_id),
            "median_seconds": round(median, 3) if median is not None else None,
            "p90_seconds": round(p90, 3) if p90 is not None else None,
            "timed_decisions": timed, "breaks": breaks,
        }
        for actor_id, median, p90, timed, breaks in rows
    ]
    reviewers.sort(key=lambda r: r["username"])
    return {"break_seconds": BREAK_SECONDS, "reviewers": reviewers}


# --- accept rate per class and source -----------------------------------------------------------------------------

# Each detection's latest decision (in the filter) decides whether it counts as accepted or rejected; its class is
# the one that decision left, its source the detection's.
_ACCEPT_SQL = """,
latest AS (
    SELECT DISTINCT ON (detection_id) detection_id, status_after, class_after
    FROM ev WHERE counted ORDER BY detection_id, id DESC
)
SELECT l.class_after, COALESCE(d.source, %(deleted)s) AS source,
       count(*) FILTER (WHERE l.status_after = 'accepted') AS accepted,
       count(*) FILTER (WHERE l.status_after = 'rejected') AS rejected
FROM latest l LEFT JOIN annotate_detection d ON d.id = l.detection_id
GROUP BY 1, 2
"""
# No WHERE on status_after above: the planner guesses such a filter keeps 1% of the rows and then probes the detection
# index once per row (120 ms at 100,000) instead of one hash join. Rows with neither count are dropped below.


def _rate(accepted: int, rejected: int) -> float | None:
    """accepted / (accepted + rejected); None when nothing was decided."""
    return round(accepted / (accepted + rejected), 4) if accepted + rejected else None


def _accept_rates(filters: AnalyticsFilter) -> dict:
    """Accepted and rejected counts and the accept rate per class and per source."""
    sql, params = _events_query(filters, _ACCEPT_SQL)
    rows = _rows(sql, params | {"deleted": DELETED_SOURCE})
    by_class: dict[int | None, list[int]] = {}
    by_source: dict[str, list[int]] = {}
    for class_id, source, accepted, rejected in rows:
        if not accepted + rejected:
            continue
        for key, table in ((class_id, by_class), (source, by_source)):
            counts = table.setdefault(key, [0, 0])
            counts[0] += accepted
            counts[1] += rejected
    classes = {c.pk: c for c in ObjectClass.objects.filter(project=filters.project)}
    class_rows = [
        {
            "object_class": class_id,
            "name": classes[class_id].name if class_id in classes else f"(deleted class {class_id})",
            "color": classes[class_id].color if class_id in classes else "#888888",
            "accepted": a, "rejected": r, "rate": _rate(a, r),
        }
        for class_id, (a, r) in by_class.items()
    ]
    order = {c.pk: c.index for c in classes.values()}
    class_rows.sort(key=lambda c: (order.get(c["object_class"], 1 << 30), c["name"]))
    labels = dict(DetectionSource.choices) | {DELETED_SOURCE: "Detection since deleted"}
    # Every source is listed (zero counts included), so the chart always shows the same four rows.
    source_rows = [
        {"source": s, "label": labels[s], "accepted": a, "rejected": r, "rate": _rate(a, r)}
        for s in [*DetectionSource.values, *(k for k in by_source if k not in DetectionSource.values)]
        for a, r in [by_source.get(s, [0, 0])]
    ]
    return {"by_class": class_rows, "by_source": source_rows}


# --- disagreements ------------------------------------------------------------------------------------------------

# Status-changing decisions per detection in order; a row whose previous one was made by someone else is a
# disagreement (alice accepted, bob rejected). History before `since` is read so the first decision in the range
# still has its predecessor.
_DISAGREE_CTE = """,
changes AS (
    SELECT id, created_at, scene_id, detection_id, actor_id, verb, status_before, status_after,
           lag(id) OVER w AS previous_id, lag(actor_id) OVER w AS previous_actor,
           lag(verb) OVER w AS previous_verb, lag(created_at) OVER w AS previous_at
    FROM ev WHERE counted AND status_before IS DISTINCT FROM status_after
    WINDOW w AS (PARTITION BY detection_id ORDER BY id)
),
disagreements AS (
    SELECT * FROM changes
    WHERE previous_id IS NOT NULL AND actor_id IS DISTINCT FROM previous_actor {since}
)
"""
_PAIRS_SQL = "SELECT previous_actor, actor_id, count(*) FROM disagreements GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
_LATEST_SQL = """
SELECT id, created_at, scene_id, detection_id, actor_id, verb, status_before, status_after,
       previous_id, previous_actor, previous_verb, previous_at
FROM disagreements ORDER BY id DESC LIMIT %(limit)s
"""


def _disagreement_query(filters: AnalyticsFilter, body: str) -> tuple[str, dict]:
    """The disagreements CTE (over the whole history up to `until`) followed by `body`."""
    since = "AND created_at >= %(since)s" if filters.since is not None else ""
    sql, params = _events_query(filters, _DISAGREE_CTE.format(since=since) + body, with_since=False)
    if filters.since is not None:
        params["since"] = filters.since
    return sql, params


def _disagreements(filters: AnalyticsFilter, names: dict[int, str]) -> dict:
    """Decisions that reversed someone else's: counts per pair of reviewers and the latest ones."""
    pairs = _rows(*_disagreement_query(filters, _PAIRS_SQL))
    sql, params = _disagreement_query(filters, _LATEST_SQL)
    latest = _rows(sql, params | {"limit": LATEST_DISAGREEMENTS})
    names.update(_usernames([u for p in pairs for u in p[:2]] + [u for r in latest for u in (r[4], r[9])]))
    scenes = dict(Scene.objects.filter(pk__in={r[2] for r in latest}).values_list("pk", "name"))
    return {
        "total": sum(p[2] for p in pairs),
        "pairs": [
            {
                "first": first, "first_name": _name(names, first), "second": second,
                "second_name": _name(names, second), "count": count,
            }
            for first, second, count in pairs
        ],
        "latest": [
            {
                "event": r[0], "at": _iso(r[1]), "scene": r[2], "scene_name": scenes.get(r[2], ""),
                "detection": r[3], "reviewer": r[4], "reviewer_name": _name(names, r[4]), "verb": r[5],
                "status_before": r[6], "status_after": r[7], "previous_event": r[8], "previous_reviewer": r[9],
                "previous_reviewer_name": _name(names, r[9]), "previous_verb": r[10], "previous_at": _iso(r[11]),
                "url": f"{reverse('scene', args=[r[2]])}?detection={r[3]}",
            }
            for r in latest
        ],
    }


_TOTALS_SQL = """
SELECT count(*) FILTER (WHERE counted), count(*) FILTER (WHERE verb = 'undo'),
       count(*) FILTER (WHERE verb <> 'undo' AND NOT counted), count(DISTINCT actor_id)
FROM ev
"""


def review_analytics(*, filters: AnalyticsFilter) -> dict:
    """Every figure of the analytics page for a project (and scene, and time range)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('work_mem', %s, true)", [WORK_MEM])
        return _figures(filters)


def _figures(filters: AnalyticsFilter) -> dict:
    """The figures, each one query."""
    decisions, undos, undone, reviewers = _rows(*_events_query(filters, _TOTALS_SQL))[0]
    names: dict[int, str] = {}
    return {
        "project": filters.project.pk,
        "scene": filters.scene.pk if filters.scene else None,
        "since": _iso(filters.since) if filters.since else None,
        "until": _iso(filters.until) if filters.until else None,
        "totals": {"decisions": decisions, "undos": undos, "undone_decisions": undone, "reviewers": reviewers},
        "activity": _activity(filters, names),
        "pace": _pace(filters, names),
        "accept_rate": _accept_rates(filters),
        "disagreements": _disagreements(filters, names),
    }
