"""The review queue served with leases: each detection handed to a reviewer is held for them for REVIEW_LEASE_S
seconds (or until a decision on it), so two reviewers asking at once never get the same one. With work cells, a
reviewer is served their own open cells first, then free ones (unassigned cells, or no cell), never others'."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from annotate import selectors as annotate_selectors
from annotate.models import Detection, Scene
from annotate.permissions import Action, role_allows

from . import cell_selectors, selectors

MAX_ROUNDS = 10  # a round loses rows only to a lease committed between its read and its upsert: rare

# Take a lease where there is none, where it expired, or where it is the asker's own (then it is extended); the
# WHERE of DO UPDATE sees the latest committed lease, so of two concurrent askers only one gets each row.
_LEASE_SQL = """
INSERT INTO review_queuelease (detection_id, user_id, expires_at)
SELECT unnest(%(ids)s::bigint[]), %(user)s, now() + make_interval(secs => %(seconds)s)
ON CONFLICT (detection_id) DO UPDATE SET user_id = EXCLUDED.user_id, expires_at = EXCLUDED.expires_at
WHERE review_queuelease.user_id = EXCLUDED.user_id OR review_queuelease.expires_at <= now()
RETURNING detection_id
"""


RENEWED = 32  # two of the page's look-ahead pages (16 each)
_RENEW_SQL = """
UPDATE review_queuelease SET expires_at = now() + make_interval(secs => %(seconds)s)
WHERE id IN (SELECT id FROM review_queuelease WHERE user_id = %(user)s ORDER BY id DESC LIMIT %(keep)s)
"""


def lease_seconds() -> float:
    """How long a served detection is held for its reviewer."""
    return float(getattr(settings, "REVIEW_LEASE_S", 90))


def leases_take(*, user: AbstractBaseUser, ids: list[int]) -> set[int]:
    """Lease what can be leased of `ids` to `user` (call inside the transaction that locked the rows)."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_LEASE_SQL, {"ids": ids, "user": user.pk, "seconds": lease_seconds()})
        return {row[0] for row in cursor.fetchall()}


def leases_release(*, detection_ids) -> None:
    """Free the leases of decided detections (whoever held them)."""
    ids = [int(i) for i in detection_ids]
    if ids:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM review_queuelease WHERE detection_id = ANY(%s)", [ids])


def _tiers(scene: Scene, user: AbstractBaseUser) -> list[str]:
    """The queue's tiers in serving order: without cells, one (everything)."""
    if not cell_selectors.scene_has_cells(scene):
        return [""]
    return cell_selectors.queue_tier_sql(scene=scene, user=user)


def review_queue_served(
    *, user: AbstractBaseUser, scene: Scene, order: str, after: Detection | None = None, backwards: bool = False,
    threshold: float = 0.5, limit: int = 1,
) -> list[Detection]:
    """The next (or previous) `limit` proposed detections for `user`, tier by tier, each leased to them."""
    tiers = _tiers(scene, user)
    # Only those who may decide hold what they are shown; a viewer browsing the queue takes nothing from anyone.
    deciding = role_allows(annotate_selectors.role_of(user=user, project=scene.project), Action.REVIEW)
    start = 0 if not backwards else len(tiers) - 1
    if after is not None and len(tiers) > 1:
        tier = cell_selectors.queue_tier_of(detection_id=after.pk, user=user)
        if tier is None:  # `after` is in someone else's or a done cell now: start again from the top
            if backwards:
                return []
            after = None
        else:
            start = tier
    if deciding:
        with connection.cursor() as cursor:
            # The asker's stale leases would only grow the table; their latest ones are the page's look-ahead,
            # renewed while they keep asking so it is not served to others meanwhile. Older ones (skipped
            # proposals) are left to expire, so skipping does not hold a proposal from others for long.
            cursor.execute("DELETE FROM review_queuelease WHERE user_id = %s AND expires_at <= now()", [user.pk])
            cursor.execute(_RENEW_SQL, {"user": user.pk, "seconds": lease_seconds(), "keep": RENEWED})
    served: list[int] = []
    params = {"scene": scene.pk, "user": user.pk}
    order_of_tiers = range(start, len(tiers)) if not backwards else range(start, -1, -1)
    for t in order_of_tiers:
        tier_after = after if t == start else None
        if tier_after is None and backwards and order == selectors.QueueOrder.UNCERTAINTY:
            # Uncertainty walks back from a key; entering a tier from its end means from beyond every key (<= 1).
            tier_after = Detection(pk=2**62, score=threshold + 2.0)
        for _ in range(MAX_ROUNDS):
            need = limit - len(served)
            if need <= 0:
                break
            with transaction.atomic():
                # The queue's own walk locks its rows, skipping those another asker holds locked (being leased
                # now), so concurrent askers take different rows without waiting; the upsert settles the rest.
                ids = selectors.review_queue_ids(
                    scene=scene, order=order, after=tier_after, backwards=backwards, threshold=threshold,
                    limit=need, extra=(tiers[t] + cell_selectors.NOT_LEASED_SQL, params), lock=deciding,
                )
                got = leases_take(user=user, ids=ids) if deciding else set(ids)
            if not ids:
                break
            served += [i for i in ids if i in got]
            if len(ids) < need:
                break  # the tier has no more
            tier_after = Detection.objects.get(pk=ids[-1])
    found = Detection.objects.select_related("object_class", "reviewer").in_bulk(served)
    return [found[i] for i in served if i in found]
