"""Work cells and the leased queue at scale: 50,000 proposed detections, 400 cells, 20 reviewers. The queries'
EXPLAIN ANALYZE times are printed (run with -s) and held to budgets with room for a loaded machine."""

import json
import random
import time

import pytest
from django.db import connection

from annotate.models import Detection, DetectionSource, Role
from annotate.services import membership_set
from review import cell_selectors, queue_leases
from review.cells import cells_assign_round_robin, cells_guard_decision, cells_split
from review.models import QueueLease, WorkCell
from tests.conftest import make_user
from tests.review.conftest import FOOTPRINT, box, make_scene

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

N = 50_000


def explain_ms(sql: str, params) -> float:
    """The execution time EXPLAIN ANALYZE reports for one query."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return plan[0]["Execution Time"]


def timed(fn, repeat: int = 5) -> float:
    """Median wall time of `fn` in ms."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[len(times) // 2]


def test_queue_and_progress_stay_fast_at_50k_detections_400_cells_20_reviewers(project, manager, classes):
    scene = make_scene(project)
    rng = random.Random(7)
    x0, y0, x1, y1 = FOOTPRINT
    rows = []
    for _ in range(N):
        x, y = rng.uniform(x0, x1 - 0.0003), rng.uniform(y0, y1 - 0.0003)
        g = box(x, y, x + 0.0002, y + 0.0002)
        rows.append(Detection(scene=scene, object_class=classes[0], geometry=g, bbox=g, score=rng.random(),
                              source=DetectionSource.SEARCH))
    Detection.objects.bulk_create(rows, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_detection")
    reviewers = [make_user(f"rev{i:02d}") for i in range(20)]
    for u in reviewers:
        membership_set(project=project, user=u, role=Role.REVIEWER)
    cells = cells_split(scene=scene, actor=manager, size_m=450)
    assert 380 <= len(cells) <= 420
    cells_assign_round_robin(scene=scene, actor=manager, user_ids=[u.pk for u in reviewers])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE review_workcell")

    report = {}
    report["progress (all cells, one query)"] = explain_ms(cell_selectors._PROGRESS_SQL, {"scene": scene.pk})
    counts = cell_selectors.cells_progress(scene=scene)
    assert sum(sum(c.values()) for c in counts.values()) >= N  # every centroid in a cell (edges count twice)

    # Every reviewer holds a page of 16, as the page's look-ahead asks.
    for u in reviewers:
        assert len(queue_leases.review_queue_served(user=u, scene=scene, order="score", limit=16)) == 16
    assert QueueLease.objects.count() == 20 * 16
    me = reviewers[0]
    params = {"scene": scene.pk, "user": me.pk, "limit": 16}
    own = ("SELECT id FROM annotate_detection WHERE scene_id = %(scene)s AND status = 'proposed' "  # noqa: S608
           + cell_selectors.OWN_TIER_SQL + cell_selectors.NOT_LEASED_SQL
           + " ORDER BY (COALESCE(score, 0.0) * -1), id LIMIT %(limit)s FOR NO KEY UPDATE SKIP LOCKED")
    free = own.replace(cell_selectors.OWN_TIER_SQL, cell_selectors.FREE_TIER_SQL)
    spatial = own.replace("(COALESCE(score, 0.0) * -1)", "spatial_key")
    report["queue own tier, score"] = explain_ms(own, params)
    report["queue own tier, spatial"] = explain_ms(spatial, params)
    report["queue free tier (all cells assigned: empty)"] = explain_ms(free, params)
    for order in ("score", "uncertainty", "spatial"):
        report[f"queue request (serve + lease 16), {order}"] = timed(
            lambda order=order: queue_leases.review_queue_served(user=me, scene=scene, order=order, limit=16)
        )
    detection = Detection.objects.filter(scene=scene).first()
    report["done-cell guard, one decision"] = timed(
        lambda: cells_guard_decision(scene_id=scene.pk, detection_ids=[detection.pk])
    )
    ids = list(Detection.objects.filter(scene=scene).values_list("pk", flat=True)[:20000])
    report["done-cell guard, bulk of 20,000"] = timed(
        lambda: cells_guard_decision(scene_id=scene.pk, detection_ids=ids), repeat=3
    )
    # Half the cells unassigned: the free tier is big, the walk finds its page at once.
    WorkCell.objects.filter(scene=scene, row__gte=12).update(assignee=None)
    report["queue free tier (half the cells unassigned), collected"] = explain_ms(free, params)
    free_walk = own.replace(cell_selectors.OWN_TIER_SQL, cell_selectors.FREE_TIER_WALK_SQL)
    assert cell_selectors.queue_tier_sql(scene=scene, user=me)[1] == cell_selectors.FREE_TIER_WALK_SQL
    report["queue free tier (half the cells unassigned), walked"] = explain_ms(free_walk, params)
    # One reviewer with every cell: the own tier is walked.
    WorkCell.objects.filter(scene=scene).update(assignee=me)
    assert cell_selectors.queue_tier_sql(scene=scene, user=me)[0] == cell_selectors.OWN_TIER_WALK_SQL
    report["queue own tier (all 400 cells one reviewer's), walked"] = explain_ms(
        own.replace(cell_selectors.OWN_TIER_SQL, cell_selectors.OWN_TIER_WALK_SQL), params
    )
    report["queue request (serve + lease 16), one reviewer's 400 cells"] = timed(
        lambda: queue_leases.review_queue_served(user=me, scene=scene, order="score", limit=16)
    )
    WorkCell.objects.filter(scene=scene).delete()
    report["queue without cells, score"] = explain_ms(
        "SELECT id FROM annotate_detection WHERE scene_id = %(scene)s AND status = 'proposed' "  # noqa: S608
        + cell_selectors.NOT_LEASED_SQL
        + " ORDER BY (COALESCE(score, 0.0) * -1), id LIMIT %(limit)s FOR NO KEY UPDATE SKIP LOCKED", params,
    )
    print()
    for name, ms in report.items():
        print(f"  {name:55s} {ms:8.1f} ms")
    # The collected free tier is measured to show why it is walked there; it has no budget of its own.
    budgets = {"progress": 1000, "queue free tier (half the cells unassigned), collected": 5000, "queue": 150,
               "done-cell guard, one": 20, "done-cell guard, bulk": 500}
    for name, ms in report.items():
        budget = next(b for prefix, b in budgets.items() if name.startswith(prefix))
        assert ms < budget, (name, ms)
