"""Queue leases: two reviewers asking at once (real threads, two database connections) never get the same
detection; a lease expires; a decision frees it; asking again gives a reviewer back what they hold."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotate.models import Detection, DetectionSource, Role
from annotate.services import membership_set
from review.models import QueueLease
from tests.conftest import client_for, make_user
from tests.review.conftest import box, make_scene

pytestmark = pytest.mark.django_db(transaction=True)


def make_detections(scene, cls, n: int) -> list[Detection]:
    """`n` proposed detections in a row, scores falling (so the score queue serves them in creation order)."""
    out = []
    for i in range(n):
        g = box(10.001 + i * 0.0005, 50.01, 10.0013 + i * 0.0005, 50.0103)
        out.append(Detection.objects.create(
            scene=scene, object_class=cls, geometry=g, bbox=g, score=1.0 - i / (2 * n), source=DetectionSource.SEARCH,
        ))
    return out


def queue(client, scene, limit, **params) -> list[int]:
    r = client.get(f"/api/scenes/{scene.pk}/review-queue/", {"limit": limit, **params})
    assert r.status_code == 200, r.content
    return [f["id"] for f in r.json()["detections"]["features"]]


@pytest.fixture
def two_reviewers(project):
    users = [make_user("rita"), make_user("bob")]
    for u in users:
        membership_set(project=project, user=u, role=Role.REVIEWER)
    return users


def ask_at_once(users, scene, limit) -> dict[str, list[int]]:
    """Both users ask for the head of the queue at the same moment, each in its own thread and connection."""
    barrier, results, errors = threading.Barrier(len(users)), {}, []

    def ask(user):
        try:
            client = client_for(user)
            barrier.wait()
            results[user.username] = queue(client, scene, limit)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_two_reviewers_asking_at_once_never_get_the_same_detection(project, classes, two_reviewers):
    scene = make_scene(project)
    make_detections(scene, classes[0], 200)
    clients = {u.username: client_for(u) for u in two_reviewers}
    seen: set[int] = set()
    for _round in range(12):
        got = ask_at_once(two_reviewers, scene, limit=8)
        rita, bob = got["rita"], got["bob"]
        assert len(rita) == 8 and len(bob) == 8, got
        assert not set(rita) & set(bob), got
        assert not (set(rita) | set(bob)) & seen  # decided ones are never served again
        seen |= set(rita) | set(bob)
        held = dict(QueueLease.objects.values_list("detection_id", "user__username"))
        assert held == {**dict.fromkeys(rita, "rita"), **dict.fromkeys(bob, "bob")}
        # Each decides half of what they were served; the other half stays leased to them.
        for name, ids in got.items():
            for i in ids[:4]:
                r = clients[name].post(f"/api/detections/{i}/review/",
                                       {"verdict": "accepted", "expected_version": 1, "client_id": f"{name}{i}"},
                                       format="json")
                assert r.status_code == 200
        # Asking again, each gets their own four undecided ones back first, never the other's.
        for name, ids in got.items():
            assert queue(clients[name], scene, 4) == ids[4:]
        QueueLease.objects.filter(detection_id__in=[*rita[4:], *bob[4:]]).delete()
        Detection.objects.filter(pk__in=[*rita[4:], *bob[4:]]).update(status="rejected")
    assert len(seen) == 12 * 16


def test_twenty_asking_at_once_share_nothing(project, classes):
    scene = make_scene(project)
    make_detections(scene, classes[0], 120)
    users = [make_user(f"r{i}") for i in range(20)]
    for u in users:
        membership_set(project=project, user=u, role=Role.REVIEWER)
    got = ask_at_once(users, scene, limit=5)
    served = [i for ids in got.values() for i in ids]
    assert len(served) == 100 and len(set(served)) == 100


def test_asking_again_gives_back_ones_own_leases_and_a_lease_expires(project, classes, two_reviewers):
    scene = make_scene(project)
    dets = make_detections(scene, classes[0], 6)
    rita, bob = (client_for(u) for u in two_reviewers)
    first = queue(rita, scene, 3)
    assert first == [d.pk for d in dets[:3]]
    assert queue(rita, scene, 3) == first  # her own leases come back to her
    assert queue(bob, scene, 3) == [d.pk for d in dets[3:]]
    assert queue(bob, scene, 3) == [d.pk for d in dets[3:]]
    # Rita's leases run out: bob, asking from the top, is served them.
    QueueLease.objects.filter(user__username="rita").update(expires_at="2000-01-01T00:00:00Z")
    assert queue(bob, scene, 6) == [d.pk for d in dets]
    assert set(QueueLease.objects.values_list("user__username", flat=True)) == {"bob"}


def test_a_decision_frees_its_lease(project, classes, two_reviewers, settings):
    settings.REVIEW_LEASE_S = 3600
    scene = make_scene(project)
    dets = make_detections(scene, classes[0], 3)
    rita = client_for(two_reviewers[0])
    assert queue(rita, scene, 2) == [dets[0].pk, dets[1].pk]
    lease = QueueLease.objects.get(detection_id=dets[0].pk)
    assert 3500 < (lease.expires_at - lease.expires_at.now(tz=lease.expires_at.tzinfo)).total_seconds() <= 3600
    r = rita.post(f"/api/detections/{dets[0].pk}/review/",
                  {"verdict": "accepted", "expected_version": 1, "client_id": "d1"}, format="json")
    assert r.status_code == 200
    assert not QueueLease.objects.filter(detection_id=dets[0].pk).exists()
    assert QueueLease.objects.filter(detection_id=dets[1].pk).exists()
    # Undo makes it proposed again, free for anyone: bob is served it while rita still holds dets[1].
    assert rita.post("/api/review/undo/", {"scene": scene.pk, "client_id": "d2"}, format="json").status_code == 200
    bob = client_for(two_reviewers[1])
    assert queue(bob, scene, 3) == [dets[0].pk, dets[2].pk]


def test_someone_elses_lease_is_skipped_not_waited_for(project, classes, two_reviewers):
    """A reviewer whose queue head is being leased by another (row locked) is served the next ones at once."""
    from django.db import connections, transaction

    scene = make_scene(project)
    dets = make_detections(scene, classes[0], 4)
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        try:
            with transaction.atomic():
                list(Detection.objects.select_for_update().filter(pk=dets[0].pk))
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        assert queue(client_for(two_reviewers[1]), scene, 2) == [dets[1].pk, dets[2].pk]
    finally:
        release.set()
        holder.join()


def test_a_viewer_browsing_the_queue_holds_nothing(project, classes, viewer, two_reviewers):
    scene = make_scene(project)
    dets = make_detections(scene, classes[0], 3)
    assert queue(client_for(viewer), scene, 3) == [d.pk for d in dets]
    assert not QueueLease.objects.exists()
    assert queue(client_for(two_reviewers[0]), scene, 3) == [d.pk for d in dets]
    assert QueueLease.objects.count() == 3


def test_asking_again_renews_the_askers_leases(project, classes, two_reviewers):
    """The page's look-ahead stays held while its reviewer keeps working through it."""
    scene = make_scene(project)
    dets = make_detections(scene, classes[0], 6)
    rita, bob = (client_for(u) for u in two_reviewers)
    first = queue(rita, scene, 3)
    QueueLease.objects.filter(detection_id__in=first).update(expires_at=timezone.now() + timedelta(seconds=5))
    assert queue(rita, scene, 3, after=first[-1]) == [d.pk for d in dets[3:]]
    soonest = QueueLease.objects.filter(user__username="rita").order_by("expires_at").first().expires_at
    assert soonest > timezone.now() + timedelta(seconds=60)
    assert queue(bob, scene, 3) == []
