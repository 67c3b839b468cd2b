"""Review analytics (issue 10 §4): exact figures over a hand-built sequence of decisions made through the real review
services, the analytics API's filters and errors, and the managers' event CSV."""

import csv
import datetime as dt
import io
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate.models import Detection, DetectionSource, DetectionStatus, Role
from annotate.services import membership_set
from review import services
from review.analytics import AnalyticsFilter, review_analytics
from review.models import ReviewEvent
from tests.conftest import client_for, make_user
from tests.review.conftest import box, make_scene

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
ACCEPTED, REJECTED = DetectionStatus.ACCEPTED, DetectionStatus.REJECTED


def at(events, h: int, m: int, s: int = 0) -> None:
    """Set events' time to T0's day at h:m:s. Test setup only: the trail is append-only, so this is raw SQL."""
    events = events if isinstance(events, list) else [events]
    when = T0.replace(hour=h, minute=m, second=s)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE review_reviewevent SET created_at = %s WHERE id = ANY(%s)", [when, [e.pk for e in events]]
        )


def detection(scene, object_class, source=DetectionSource.SEARCH, n=0) -> Detection:
    """A proposed detection."""
    x = 10.0 + 0.001 * n
    return Detection.objects.create(
        scene=scene, object_class=object_class, geometry=box(x, 50.0, x + 0.0005, 50.0005),
        bbox=box(x, 50.0, x + 0.0005, 50.0005), score=0.8, source=source,
    )


def decide(d: Detection, actor, verdict: str) -> ReviewEvent:
    d.refresh_from_db()
    return services.detection_review(detection=d, actor=actor, verdict=verdict, expected_version=d.version)


@pytest.fixture
def team(project):
    """alice, a reviewer, and bob, a second manager (bulk actions are managers')."""
    alice, bob = make_user("alice"), make_user("bob")
    membership_set(project=project, user=alice, role=Role.REVIEWER)
    membership_set(project=project, user=bob, role=Role.MANAGER)
    return alice, bob


@pytest.fixture
def story(project, scene, classes, team):
    """The sequence the figures below are worked out from (times on 2026-11-30, UTC; g = gap since the reviewer's
    previous event in the scene):

    09:00:00 alice accepts d1 (search, A)      10:00:00 bob rejects d1          (g -; reverses alice)
    09:00:10 alice accepts d2 (search, A) g10  10:00:20 bob rejects d2          (g20; reverses alice)
    09:00:30 alice rejects d3 (search, A) g20  10:00:50 bob accepts d3          (g30; reverses alice)
    09:01:00 alice accepts d4 (search, A) g30  10:01:00 bob draws d10 (manual, A)  (g10)
    09:01:40 alice accepts d7 (yolo, B)   g40  10:02:00 bob accepts d5 (search, A) (g60)
    09:20:00 alice rejects d8 (yolo, B)  break 10:02:30 bob rejects d4, 10:02:40 undoes it (not counted)
    09:30:00 alice accepts d12 (scene 2)       10:03:00 bob bulk-rejects d6 (search, A), d11 (refine, A) (g20, once)
    10:05:00 alice relabels d1 to B    break   10:05:30 alice accepts d9 (refine, A), 10:05:40 undoes it
    """
    alice, bob = team
    a, b = classes
    d = {i: detection(scene, a, n=i) for i in (1, 2, 3, 4, 5, 6)}
    d[7], d[8] = detection(scene, b, DetectionSource.YOLO, 7), detection(scene, b, DetectionSource.YOLO, 8)
    d[9], d[11] = detection(scene, a, DetectionSource.REFINE, 9), detection(scene, a, DetectionSource.REFINE, 11)
    other = make_scene(project)
    d[12] = detection(other, a, n=12)

    at(decide(d[1], alice, ACCEPTED), 9, 0, 0)
    at(decide(d[2], alice, ACCEPTED), 9, 0, 10)
    at(decide(d[3], alice, REJECTED), 9, 0, 30)
    at(decide(d[4], alice, ACCEPTED), 9, 1, 0)
    at(decide(d[7], alice, ACCEPTED), 9, 1, 40)
    at(decide(d[8], alice, REJECTED), 9, 20, 0)
    at(decide(d[12], alice, ACCEPTED), 9, 30, 0)
    at(decide(d[1], bob, REJECTED), 10, 0, 0)
    at(decide(d[2], bob, REJECTED), 10, 0, 20)
    at(decide(d[3], bob, ACCEPTED), 10, 0, 50)
    drawn = services.detection_create_manual(
        scene=scene, actor=bob, object_class=a, geometry=box(10.05, 50.05, 10.051, 50.051)
    )
    at(drawn, 10, 1, 0)
    d[10] = Detection.objects.get(pk=drawn.detection_id)
    at(decide(d[5], bob, ACCEPTED), 10, 2, 0)
    at(decide(d[4], bob, REJECTED), 10, 2, 30)
    at(services.decision_undo(actor=bob, scene=scene), 10, 2, 40)
    at(services.detections_bulk_review(scene=scene, actor=bob, verdict=REJECTED, detections=[d[6], d[11]]), 10, 3, 0)
    d[1].refresh_from_db()
    at(services.detection_relabel(detection=d[1], actor=alice, object_class=b, expected_version=d[1].version), 10, 5, 0)
    at(decide(d[9], alice, ACCEPTED), 10, 5, 30)
    at(services.decision_undo(actor=alice, scene=scene), 10, 5, 40)
    return {"detections": d, "other_scene": other, "alice": alice, "bob": bob, "a": a, "b": b}


def figures(project, **filters) -> dict:
    return review_analytics(filters=AnalyticsFilter(project=project, **filters))


def series_of(result: dict) -> dict[str, tuple[list[int], list[int]]]:
    return {s["username"]: (s["decisions"], s["undos"]) for s in result["activity"]["series"]}


def test_decisions_per_reviewer_per_hour_leave_undone_decisions_out_and_count_undos_apart(project, story):
    result = figures(project)
    assert result["totals"] == {"decisions": 15, "undos": 2, "undone_decisions": 2, "reviewers": 2}
    assert result["activity"]["bucket"] == "hour"
    assert result["activity"]["starts"] == ["2026-11-30T09:00:00Z", "2026-11-30T10:00:00Z"]
    # alice: 7 at 9 (one in scene 2), the relabel at 10 (her accept of d9 was undone); bob: 7 at 10 (his reject of
    # d4 was undone; the bulk action is two decisions).
    assert series_of(result) == {"alice": ([7, 1], [0, 1]), "bob": ([0, 7], [0, 1])}
    # One scene: alice's decision in the other scene is not there.
    assert series_of(figures(project, scene=story["other_scene"])) == {"alice": ([1], [0])}
    assert series_of(figures(project, scene=story["detections"][1].scene)) == {
        "alice": ([6, 1], [0, 1]), "bob": ([0, 7], [0, 1])
    }


def test_the_activity_series_fills_empty_hours_and_turns_to_days_past_two_weeks(project, scene, classes, team):
    alice, _ = team
    d1, d2, d3 = (detection(scene, classes[0], n=i) for i in range(3))
    at(decide(d1, alice, ACCEPTED), 9, 10)
    at(decide(d2, alice, ACCEPTED), 12, 59)
    result = figures(project)["activity"]
    assert [s[11:13] for s in result["starts"]] == ["09", "10", "11", "12"]
    assert series_of({"activity": result}) == {"alice": ([1, 0, 0, 1], [0, 0, 0, 0])}
    event = decide(d3, alice, REJECTED)
    later = T0 + dt.timedelta(days=20)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE review_reviewevent SET created_at = %s WHERE id = %s", [later, event.pk])
    result = figures(project)["activity"]
    assert result["bucket"] == "day"
    assert len(result["starts"]) == 21 and result["starts"][0] == "2026-11-30T00:00:00Z"
    assert result["series"][0]["decisions"][0] == 2 and result["series"][0]["decisions"][-1] == 1


def test_time_per_decision_is_the_median_and_p90_of_gaps_with_breaks_and_bulk_repeats_left_out(project, story):
    pace = figures(project)["pace"]
    assert pace["break_seconds"] == 600
    by_name = {r["username"]: r for r in pace["reviewers"]}
    # alice: gaps 10, 20, 30, 40 (09:20 and 10:05 came after breaks; d9's accept was undone; scene 2 stands alone).
    assert by_name["alice"] == {
        "reviewer": story["alice"].pk, "username": "alice", "median_seconds": 25.0, "p90_seconds": 37.0,
        "timed_decisions": 4, "breaks": 2,
    }
    # bob: 20, 30, 10, 60 and 20 for the bulk action (from his undo at 10:02:40; its second event is not a gap).
    # p90 of [10, 20, 20, 30, 60] interpolates at 3.6: 30 + 0.6 * 30 = 48.
    assert by_name["bob"] == {
        "reviewer": story["bob"].pk, "username": "bob", "median_seconds": 20.0, "p90_seconds": 48.0,
        "timed_decisions": 5, "breaks": 0,
    }


def test_accept_rate_per_class_and_source_counts_each_detections_latest_decision(project, story):
    rates = figures(project, scene=story["detections"][1].scene)["accept_rate"]
    by_class = {c["name"]: (c["accepted"], c["rejected"], c["rate"]) for c in rates["by_class"]}
    # d1 was accepted by alice, rejected by bob, then relabelled to B: it counts as a rejected B. d9's only decision
    # was undone: it does not count. d10 was drawn (accepted, manual).
    assert by_class == {story["a"].name: (4, 3, 0.5714), story["b"].name: (1, 2, 0.3333)}
    by_source = {s["source"]: (s["accepted"], s["rejected"], s["rate"]) for s in rates["by_source"]}
    # Every source is listed (imported labels and the probe too), with no rate where nothing of it was decided.
    assert by_source == {"search": (3, 3, 0.5), "refine": (0, 1, 0.0), "yolo": (1, 1, 0.5), "probe": (0, 0, None),
                         "manual": (1, 0, 1.0), "import": (0, 0, None)}
    # The whole project adds alice's accepted d12 (search, A).
    whole = figures(project)["accept_rate"]
    assert {s["source"]: s["accepted"] for s in whole["by_source"]}["search"] == 4
    assert whole["by_class"][0]["rate"] == 0.625


def test_disagreements_are_counted_per_pair_and_listed_latest_first(project, story):
    result = figures(project)["disagreements"]
    alice, bob, d = story["alice"], story["bob"], story["detections"]
    # bob reversed alice on d1, d2 and d3; his reject of d4 was undone, so it is no disagreement.
    assert result["total"] == 3
    assert result["pairs"] == [
        {"first": alice.pk, "first_name": "alice", "second": bob.pk, "second_name": "bob", "count": 3}
    ]
    latest = result["latest"]
    assert [r["detection"] for r in latest] == [d[3].pk, d[2].pk, d[1].pk]
    first = latest[0]
    assert (first["reviewer_name"], first["verb"], first["status_before"], first["status_after"]) == (
        "bob", "accept", "rejected", "accepted"
    )
    assert (first["previous_reviewer_name"], first["previous_verb"]) == ("alice", "reject")
    assert first["at"] == "2026-11-30T10:00:50Z" and first["previous_at"] == "2026-11-30T09:00:30Z"
    assert first["url"] == f"/scenes/{d[3].scene_id}/?detection={d[3].pk}"
    # From 10:00 on: the reversals still find alice's decisions before the range.
    assert figures(project, since=T0.replace(hour=10))["disagreements"]["total"] == 3
    assert figures(project, until=T0.replace(hour=10, second=30))["disagreements"]["total"] == 2


def test_a_reversal_back_by_the_first_reviewer_is_a_disagreement_the_other_way(project, scene, classes, team):
    alice, bob = team
    d1 = detection(scene, classes[0])
    decide(d1, alice, ACCEPTED)
    decide(d1, bob, REJECTED)
    decide(d1, bob, ACCEPTED)  # bob changing his own mind: no disagreement
    decide(d1, alice, REJECTED)
    pairs = {(p["first_name"], p["second_name"]): p["count"] for p in figures(project)["disagreements"]["pairs"]}
    assert pairs == {("alice", "bob"): 1, ("bob", "alice"): 1}


def test_a_time_range_keeps_only_its_events(project, story):
    result = figures(project, since=T0.replace(hour=10), until=T0.replace(hour=11))
    assert result["activity"]["starts"] == ["2026-11-30T10:00:00Z"]
    assert series_of(result) == {"alice": ([1], [1]), "bob": ([7], [1])}
    assert result["since"] == "2026-11-30T10:00:00Z" and result["until"] == "2026-11-30T11:00:00Z"
    assert figures(project, since=T0.replace(hour=11))["totals"]["decisions"] == 0


# --- the API ---------------------------------------------------------------------------------------------------------


def test_every_member_reads_the_analytics_and_outsiders_get_404(project, story, viewer, outsider, other_project):
    answer = client_for(viewer).get(f"/api/projects/{project.pk}/analytics/?since=2026-11-30T10:00:00Z")
    assert answer.status_code == 200, answer.content
    assert answer.json()["totals"]["decisions"] == 8
    assert client_for(outsider).get(f"/api/projects/{project.pk}/analytics/").status_code == 404
    # A date means its midnight (UTC).
    assert client_for(viewer).get(f"/api/projects/{project.pk}/analytics/?since=2026-12-01").json()["totals"] == {
        "decisions": 0, "undos": 0, "undone_decisions": 0, "reviewers": 0
    }


@pytest.mark.parametrize(
    "query, field, message",
    [
        ("since=yesterday", "since", "ISO 8601"),
        ("until=2026-13-45", "until", "ISO 8601"),
        ("since=2026-12-02&until=2026-12-01", "until", "later than since"),
        ("scene=abc", "scene", "valid integer"),
    ],
)
def test_bad_filters_answer_400_saying_what_to_fix(api, project, query, field, message):
    answer = api.get(f"/api/projects/{project.pk}/analytics/?{query}")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert field in error["detail"] and message in error["message"]


def test_a_scene_of_another_project_is_refused_by_name(api, project, other_project):
    foreign = make_scene(other_project)
    for url in (f"/api/projects/{project.pk}/analytics/", f"/api/projects/{project.pk}/events.csv"):
        answer = api.get(f"{url}?scene={foreign.pk}")
        assert answer.status_code == 400
        assert "No such scene in this project" in answer.json()["error"]["message"]


# --- the event CSV ---------------------------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert response.streaming
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_event_csv_streams_one_row_per_event_with_class_names(api, project, story):
    response = api.get(f"/api/projects/{project.pk}/events.csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert response["Content-Disposition"] == f'attachment; filename="kilns-events-{today}.csv"'
    rows = read_csv(response)
    assert rows[0] == [
        "event_id", "time_utc", "scene_id", "scene", "detection_id", "actor", "verb", "status_before", "status_after",
        "class_before", "class_after", "comment", "batch_id", "version_after", "undoes_event_id",
    ]
    events = list(ReviewEvent.objects.filter(project=project).order_by("id"))
    assert [int(r[0]) for r in rows[1:]] == [e.pk for e in events]
    d1 = story["detections"][1]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first == {
        "event_id": str(events[0].pk), "time_utc": "2026-11-30T09:00:00Z", "scene_id": str(d1.scene_id), "scene": "s",
        "detection_id": str(d1.pk), "actor": "alice", "verb": "accept", "status_before": "proposed",
        "status_after": "accepted", "class_before": story["a"].name, "class_after": story["a"].name, "comment": "",
        "batch_id": "", "version_after": "2", "undoes_event_id": "",
    }
    relabel = next(dict(zip(rows[0], r, strict=True)) for r in rows if r[6] == "relabel")
    assert (relabel["class_before"], relabel["class_after"], relabel["status_after"]) == (
        story["a"].name, story["b"].name, "rejected"
    )
    bulk = [dict(zip(rows[0], r, strict=True)) for r in rows[1:] if r[12]]
    assert len(bulk) == 2 and bulk[0]["batch_id"] == bulk[1]["batch_id"]
    undos = [dict(zip(rows[0], r, strict=True)) for r in rows[1:] if r[6] == "undo"]
    assert [u["undoes_event_id"] for u in undos] == [str(e.undoes_id) for e in events if e.verb == "undo"]


def test_the_csv_follows_the_filters_and_names_the_scene(api, project, story):
    other = story["other_scene"]
    response = api.get(f"/api/projects/{project.pk}/events.csv?scene={other.pk}&since=2026-11-30")
    rows = read_csv(response)
    assert len(rows) == 2 and rows[1][5] == "alice" and rows[1][2] == str(other.pk)
    assert 'filename="kilns-s-events-' in response["Content-Disposition"]
    rows = read_csv(api.get(f"/api/projects/{project.pk}/events.csv?since=2026-11-30T10:05:00Z"))
    assert [r[6] for r in rows[1:]] == ["relabel", "accept", "undo"]


def test_a_comment_that_a_spreadsheet_would_run_is_quoted(api, project, scene, classes, manager):
    d1 = detection(scene, classes[0])
    services.detection_review(
        detection=d1, actor=manager, verdict=ACCEPTED, expected_version=1, comment="=HYPERLINK(1)"
    )
    rows = read_csv(api.get(f"/api/projects/{project.pk}/events.csv"))
    assert rows[1][11] == "'=HYPERLINK(1)"


def test_only_managers_download_the_csv(project, story, viewer, outsider):
    reviewer = client_for(story["alice"])
    for client in (reviewer, client_for(viewer)):
        answer = client.get(f"/api/projects/{project.pk}/events.csv", HTTP_ACCEPT="text/csv")
        assert answer.status_code == 403
        assert answer["Content-Type"] == "application/json"
        assert "download the review events" in answer.json()["error"]["message"]
    assert client_for(outsider).get(f"/api/projects/{project.pk}/events.csv").status_code == 404


def test_the_csv_is_streamed_from_a_server_side_cursor_not_loaded_at_once(api, project, scene, classes, manager):
    insert_events(project, scene, classes[0], manager, 4500)
    response = api.get(f"/api/projects/{project.pk}/events.csv")
    chunks = iter(response.streaming_content)
    next(chunks)  # the header
    next(chunks)  # the first row: its chunk of rows came from a cursor held open in the database
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        assert cursor.fetchone()[0] == 1
    assert sum(1 for _ in chunks) == 4500 - 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_cursors")
        assert cursor.fetchone()[0] == 0


def insert_events(project, scene, object_class, actor, n: int, reviewers=None) -> None:
    """n accept events on n proposals in one INSERT ... SELECT (set-up for volume tests, bypassing the services)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotate_detection (scene_id, object_class_id, geometry, bbox, score, source, status, version,
                                            model_key, created_at)
            SELECT %(scene)s, %(class)s, ST_MakeEnvelope(10, 50, 10.0001, 50.0001, 4326),
                   ST_MakeEnvelope(10, 50, 10.0001, 50.0001, 4326), 0.5, 'search', 'accepted', 2, '', now()
            FROM generate_series(1, %(n)s)
            """,
            {"scene": scene.pk, "class": object_class.pk, "n": n},
        )
        cursor.execute(
            """
            INSERT INTO review_reviewevent (detection_id, project_id, scene_id, actor_id, created_at, verb,
                status_before, status_after, class_before, class_after, comment, client_id, version_after)
            SELECT d.id, %(project)s, %(scene)s,
                   (%(actors)s::bigint[])[1 + (row_number() OVER (ORDER BY d.id)) %% %(k)s],
                   %(t0)s + (row_number() OVER (ORDER BY d.id)) * interval '7 seconds',
                   CASE WHEN d.id %% 5 = 0 THEN 'reject' ELSE 'accept' END, 'proposed',
                   CASE WHEN d.id %% 5 = 0 THEN 'rejected' ELSE 'accepted' END, %(class)s, %(class)s, '', '', 2
            FROM annotate_detection d WHERE d.scene_id = %(scene)s ORDER BY d.id
            """,
            {
                "project": project.pk, "scene": scene.pk, "class": object_class.pk, "t0": T0,
                "actors": [u.pk for u in (reviewers or [actor])], "k": len(reviewers or [actor]),
            },
        )


@pytest.mark.slow
def test_the_analytics_of_100000_events_are_a_few_queries_and_fast(project, scene, classes, manager, team):
    insert_events(project, scene, classes[0], manager, 100_000, reviewers=[manager, *team])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE review_reviewevent; ANALYZE annotate_detection")
    filters = AnalyticsFilter(project=project)
    review_analytics(filters=filters)  # warm the caches
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = review_analytics(filters=filters)
        elapsed = time.perf_counter() - started
    print(f"analytics over 100,000 events: {elapsed * 1000:.0f} ms in {len(queries)} queries")
    assert result["totals"]["decisions"] == 100_000
    assert sum(s["total_decisions"] for s in result["activity"]["series"]) == 100_000
    assert sum(r["timed_decisions"] for r in result["pace"]["reviewers"]) == 100_000 - 3  # each reviewer's first
    assert result["accept_rate"]["by_class"][0]["rejected"] == 20_000
    # Aggregated in the database: the same dozen queries for 3 events or 100,000 (no per-event work in Python).
    assert len(queries) <= 12
    # 0.7-1.0 s measured on two cores shared with other test runs; the bound leaves room for a loaded CI runner.
    assert elapsed < 5.0


def test_the_analytics_page_is_for_members_and_offers_the_csv_to_managers(project, viewer, outsider, manager):
    from django.test import Client

    url = f"/projects/{project.pk}/analytics/"
    as_manager, as_viewer, as_outsider = Client(), Client(), Client()
    as_manager.force_login(manager)
    as_viewer.force_login(viewer)
    as_outsider.force_login(outsider)
    page = as_manager.get(url)
    assert page.status_code == 200
    assert b"Download events (CSV)" in page.content
    assert f"/api/projects/{project.pk}/events.csv".encode() in page.content
    page = as_viewer.get(url)
    assert page.status_code == 200 and b"Review analytics" in page.content
    assert b"Download events (CSV)" not in page.content
    assert as_outsider.get(url).status_code == 404
    # The project page links to it.
    assert url.encode() in as_viewer.get(f"/projects/{project.pk}/").content
