"""The review analytics page in Chromium (issue 10 §4): a manager opens it from the project page after decisions by
two reviewers, reads the charts, filters by scene, and downloads the events as CSV."""

import csv
import datetime as dt

import pytest
from django.db import connection

from annotate.models import Detection, DetectionSource, DetectionStatus, Role, Scene, SceneStatus
from annotate.services import membership_set
from review import services
from review.models import ReviewEvent
from tests.conftest import ARTIFACTS, make_user
from tests.e2e.test_browser import log_in
from tests.review.conftest import box

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
ACCEPTED, REJECTED = DetectionStatus.ACCEPTED, DetectionStatus.REJECTED


def decide(detection, actor, verdict, minutes: float) -> ReviewEvent:
    """A decision through the review service, dated T0 + minutes (raw SQL: the trail is append-only)."""
    detection.refresh_from_db()
    event = services.detection_review(
        detection=detection, actor=actor, verdict=verdict, expected_version=detection.version
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE review_reviewevent SET created_at = %s WHERE id = %s",
            [T0 + dt.timedelta(minutes=minutes), event.pk],
        )
    return event


@pytest.fixture
def decided(project, manager):
    """Two scenes; rita reviews North at 09:xx and 10:xx, the manager reverses two of hers and decides in South."""
    rita = make_user("rita")
    membership_set(project=project, user=rita, role=Role.REVIEWER)
    kiln, other = project.classes.order_by("index")[:2]
    north, south = (
        Scene.objects.create(project=project, name=name, status=SceneStatus.UPLOADED, footprint=box(10, 50, 10.1, 50.1))
        for name in ("North", "South")
    )

    def proposal(scene, cls, source=DetectionSource.SEARCH, n=0):
        x = 10.0 + 0.001 * n
        return Detection.objects.create(
            scene=scene, object_class=cls, geometry=box(x, 50, x + 0.0005, 50.0005),
            bbox=box(x, 50, x + 0.0005, 50.0005), score=0.7, source=source,
        )

    n = [proposal(north, kiln, n=i) for i in range(4)] + [proposal(north, other, DetectionSource.YOLO, 9)]
    s = [proposal(south, kiln, n=i) for i in range(2)]
    decide(n[0], rita, ACCEPTED, 0)
    decide(n[1], rita, ACCEPTED, 0.5)
    decide(n[2], rita, REJECTED, 1)
    decide(n[3], rita, ACCEPTED, 1.5)
    decide(n[4], rita, REJECTED, 62)  # 10:02
    decide(n[0], manager, REJECTED, 65)  # reverses rita
    decide(n[2], manager, ACCEPTED, 66)  # reverses rita
    decide(s[0], manager, ACCEPTED, 70)
    decide(s[1], manager, REJECTED, 70.25)
    return {"north": north, "south": south, "kiln": kiln, "other": other}


def shot(page, name: str) -> None:
    """The whole page (the charts run below the fold)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def bars(page, chart: str) -> int:
    return page.locator(f"#{chart} svg rect.bar").count()


def wait_loaded(page, query: str = "") -> None:
    page.wait_for_selector(f"#analytics-page[data-ready='1'][data-query='{query}']")


def test_a_manager_reads_the_analytics_filters_by_scene_and_downloads_the_csv(page, live_server, project, decided):
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.get_by_role("link", name="Review analytics").click()
    page.wait_for_url(f"{live_server.url}/projects/{project.pk}/analytics/")
    page.console_errors.clear()
    wait_loaded(page)

    assert page.locator("#analytics-totals").inner_text().startswith("9 decisions by 2 reviewers")
    # Hours 09 and 10: rita in both, the manager in 10 only -> three stacked parts.
    activity = page.locator("#chart-activity")
    assert activity.get_by_role("heading").inner_text() == "Decisions per reviewer per hour"
    assert bars(page, "chart-activity") == 3
    parts = activity.locator("rect.bar")
    assert sorted(
        (parts.nth(i).get_attribute("data-series"), parts.nth(i).get_attribute("data-bucket"),
         parts.nth(i).get_attribute("data-value"))
        for i in range(3)
    ) == [("manager", "10:00", "4"), ("rita", "10:00", "1"), ("rita", "30 Nov 09:00", "4")]
    assert "Decisions" in activity.locator("svg").inner_html() and "Hour (UTC)" in activity.inner_text()
    assert "rita: 5 decisions" in activity.locator(".chart-legend").inner_text()
    # Time per decision: rita's gaps 30, 30, 30 s (10:02 came after a break); the manager's 60 s and 15 s in North
    # and South are separate scenes: 60 s in North, 15 s in South.
    assert bars(page, "chart-pace") == 2
    pace = page.locator("#chart-pace")
    assert "over 10 minutes are breaks" in pace.inner_text()
    pace.get_by_text("Show the numbers as a table").click()
    rows = pace.locator("tbody tr")
    assert [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())] == [
        ["manager", "38 s", "56 s", "2", "0"],
        ["rita", "30 s", "30 s", "3", "1"],
    ]
    # Accept rates: two classes and two of the four sources have decisions.
    assert bars(page, "chart-class-rate") == 2
    assert bars(page, "chart-source-rate") == 2
    class_rate = page.locator("#chart-class-rate")
    assert class_rate.locator("svg").get_attribute("aria-label").startswith(
        f"Accept rate per class: {decided['kiln'].name} 67% · 4 of 6"
    )
    # Disagreements: the manager reversed rita twice.
    disagreements = page.locator("#disagreements")
    assert disagreements.locator("table.pairs tbody tr").all_inner_texts() == ["rita\tmanager\t2"]
    assert disagreements.locator("table.latest tbody tr").count() == 2
    link = disagreements.locator("table.latest tbody tr").first.get_by_role("link").nth(1)
    assert link.get_attribute("href").startswith(f"/scenes/{decided['north'].pk}/?detection=")
    shot(page, "analytics-all.png")

    # One scene: only the manager's two decisions in South.
    page.get_by_label("Scene").select_option(label="South")
    wait_loaded(page, f"scene={decided['south'].pk}")
    assert page.locator("#analytics-totals").inner_text().startswith("2 decisions by 1 reviewer")
    assert bars(page, "chart-activity") == 1
    assert page.locator("#disagreements").get_by_text("No disagreements in this selection.").is_visible()
    assert f"scene={decided['south'].pk}" in page.url
    shot(page, "analytics-scene.png")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download events (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.startswith("kilns-south-events-")
    with open(download.path(), newline="") as f:
        rows = list(csv.DictReader(f))
    expected = ReviewEvent.objects.filter(scene=decided["south"]).order_by("id")
    assert [(int(r["event_id"]), r["actor"], r["verb"], r["status_after"], r["class_after"]) for r in rows] == [
        (e.pk, "manager", e.verb, e.status_after, decided["kiln"].name) for e in expected
    ]
    assert [r["time_utc"] for r in rows] == ["2026-11-30T10:10:00Z", "2026-11-30T10:10:15Z"]
    assert page.console_errors == []


def test_a_date_range_and_a_reviewer_without_the_csv(page, live_server, project, decided):
    log_in(page, live_server.url, username="rita", password="pw-rita")
    page.goto(f"{live_server.url}/projects/{project.pk}/analytics/?since=2026-12-01")
    wait_loaded(page, "since=2026-12-01")
    assert page.get_by_label("From (UTC)").input_value() == "2026-12-01"
    assert page.locator("#chart-activity").get_by_text("No review events in this selection.").is_visible()
    # Reviewers read the figures but are not offered the event CSV.
    assert page.get_by_role("link", name="Download events (CSV)").count() == 0
    page.get_by_label("From (UTC)").fill("2026-11-30")
    page.get_by_label("To (UTC, inclusive)").fill("2026-11-30")
    page.get_by_role("button", name="Apply").click()
    wait_loaded(page, "since=2026-11-30&until=2026-12-01")
    assert bars(page, "chart-activity") == 3
    assert page.console_errors == []


def test_a_disagreement_links_to_its_detection_selected_on_the_scene_page(
    page, live_server, project, manager, tmp_path, ingested
):
    from tests.e2e.test_review_keys import wait_selected
    from tests.e2e.test_scene_search import add_detection
    from tests.gpu_tasks.support import planted_scene

    scene = ingested(planted_scene(tmp_path / "planted.tif"))
    rita = make_user("rita")
    membership_set(project=project, user=rita, role=Role.REVIEWER)
    target = add_detection(scene, "red_b", DetectionStatus.PROPOSED, 0.9)
    decide(target, rita, ACCEPTED, 0)
    decide(target, manager, REJECTED, 5)

    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/projects/{project.pk}/analytics/")
    wait_loaded(page)
    page.locator("#disagreements table.latest").get_by_role("link", name=f"#{target.pk}").click()
    page.wait_for_url(f"{live_server.url}/scenes/{scene.pk}/?detection={target.pk}")
    wait_selected(page, target.pk)
    card = page.locator(f"#detection-card[data-detection-id='{target.pk}']")
    card.wait_for()
    assert card.get_attribute("data-status") == "rejected"
    shot(page, "analytics-linked-detection.png")
