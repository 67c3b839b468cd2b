"""Review's writes: every change to a detection's review state goes through here, as a compare-and-swap on
`Detection.version` that also appends a `ReviewEvent`."""

import uuid
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.geos import Polygon
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.http import Http404
from django.utils import timezone

from annotate import selectors as annotate_selectors
from annotate.errors import Conflict, DomainError
from annotate.models import Detection, DetectionSource, DetectionStatus, ObjectClass, Scene
from annotate.permissions import Action, require

from .cells import cells_guard_decision
from .errors import NothingToUndo, StaleVersion
from .models import ReviewEvent, ReviewVerb
from .queue_leases import leases_release


def _guard(*, scene_id: int, ids=(), geometries=()) -> None:
    """Every writer, in its transaction: refuse a change in a done work cell (409 cell_done), start the open cells it
    lands in, and free the queue leases of the detections it decides."""
    cells_guard_decision(scene_id=scene_id, detection_ids=ids, geometries=geometries)
    leases_release(detection_ids=ids)


def _require_review(*, actor: AbstractBaseUser, project) -> None:
    """Only reviewers and managers decide."""
    require(annotate_selectors.role_of(user=actor, project=project), Action.REVIEW)


def _replayed(*, actor: AbstractBaseUser, client_id: str) -> ReviewEvent | None:
    """The event a request with this client id already made (a retry answers it and changes nothing)."""
    if not client_id:
        return None
    return ReviewEvent.objects.filter(actor=actor, client_id=client_id).first()


def _state(detection: Detection) -> dict:
    """The review state a 409 shows: what the detection is now and who changed it last."""
    return {
        "id": detection.pk,
        "version": detection.version,
        "status": detection.status,
        "object_class": detection.object_class_id,
        "geometry": detection.geometry.geojson if detection.geometry else None,
        "reviewer": detection.reviewer_id,
        "reviewer_name": detection.reviewer.get_username() if detection.reviewer else None,
        "reviewed_at": detection.reviewed_at.isoformat() if detection.reviewed_at else None,
    }


def _stale(detection_id: int, expected_version: int) -> StaleVersion:
    """The conflict for a decision on an old version, carrying the current state."""
    current = Detection.objects.select_related("reviewer").filter(pk=detection_id).first()
    if current is None:
        raise Http404("No such detection.")
    who = current.reviewer.get_username() if current.reviewer else "another writer"
    return StaleVersion(
        f"This detection changed since you loaded it (your version {expected_version}, now {current.version}, "
        f"last changed by {who}); look at its current state and decide again.",
        detail={"current": _state(current)},
    )


def _apply(
    *,
    detection: Detection,
    actor: AbstractBaseUser,
    verb: str,
    expected_version: int,
    client_id: str = "",
    comment: str = "",
    batch_id: uuid.UUID | None = None,
    undoes: ReviewEvent | None = None,
    status: str | None = None,
    object_class: ObjectClass | None = None,
    geometry: Polygon | None = None,
) -> ReviewEvent:
    """Compare-and-swap the detection at `expected_version` and append the event; StaleVersion when it moved."""
    # Read under lock at the expected version, so the event's before-state is the state being replaced.
    before = Detection.objects.select_for_update(of=("self",)).filter(pk=detection.pk, version=expected_version).first()
    if before is None:
        raise _stale(detection.pk, expected_version)
    _guard(scene_id=before.scene_id, ids=[detection.pk], geometries=[geometry])
    changes: dict = {"reviewer": actor, "reviewed_at": timezone.now(), "version": F("version") + 1}
    if status is not None:
        changes["status"] = status
    if object_class is not None:
        changes["object_class"] = object_class
    if geometry is not None:
        changes["geometry"] = geometry
        changes["bbox"] = Polygon.from_bbox(geometry.extent)
        changes["bbox"].srid = 4326
    updated = Detection.objects.filter(pk=detection.pk, version=expected_version).update(**changes)
    if not updated:
        raise _stale(detection.pk, expected_version)
    return ReviewEvent.objects.create(
        detection_id=detection.pk,
        project_id=detection.scene.project_id,
        scene_id=before.scene_id,
        actor=actor,
        verb=verb,
        status_before=before.status,
        status_after=status or before.status,
        class_before=before.object_class_id,
        class_after=object_class.pk if object_class is not None else before.object_class_id,
        geometry_before=before.geometry,
        geometry_after=geometry if geometry is not None else before.geometry,
        comment=comment,
        client_id=client_id,
        batch_id=batch_id,
        version_after=expected_version + 1,
        undoes=undoes,
    )


def _once(actor: AbstractBaseUser, client_id: str, write) -> ReviewEvent:
    """Run `write` in a transaction unless this client id already did; a concurrent duplicate gets the first."""
    done = _replayed(actor=actor, client_id=client_id)
    if done is not None:
        return done
    try:
        with transaction.atomic():
            return write()
    except IntegrityError:
        done = _replayed(actor=actor, client_id=client_id)
        if done is None:
            raise
        return done


def _check_class(*, detection: Detection, object_class: ObjectClass | None) -> None:
    """A new class must be one of the detection's project."""
    if object_class is not None and object_class.project_id != detection.scene.project_id:
        raise Conflict("That class belongs to another project; choose one of this project's classes.")


def _verb_of(verdict: str) -> ReviewVerb:
    """The event verb of a verdict; anything but accepted/rejected is refused (a caller's bug, never a status)."""
    if verdict == DetectionStatus.ACCEPTED:
        return ReviewVerb.ACCEPT
    if verdict == DetectionStatus.REJECTED:
        return ReviewVerb.REJECT
    raise DomainError(f"Unknown verdict {verdict!r}: send 'accepted' or 'rejected'.")


def detection_review(
    *,
    detection: Detection,
    actor: AbstractBaseUser,
    verdict: str,
    expected_version: int,
    client_id: str = "",
    comment: str = "",
    object_class: ObjectClass | None = None,
    geometry: Polygon | None = None,
) -> ReviewEvent:
    """Accept or reject; with a class and/or geometry too it is one "fix and accept" decision (one event)."""
    _require_review(actor=actor, project=detection.scene.project)
    _check_class(detection=detection, object_class=object_class)
    verb = _verb_of(verdict)
    return _once(
        actor,
        client_id,
        lambda: _apply(
            detection=detection, actor=actor, verb=verb, expected_version=expected_version, client_id=client_id,
            comment=comment, status=verdict, object_class=object_class, geometry=geometry,
        ),
    )


def detection_relabel(
    *, detection: Detection, actor: AbstractBaseUser, object_class: ObjectClass, expected_version: int,
    client_id: str = "", comment: str = "",
) -> ReviewEvent:
    """Change a detection's class (its status stays)."""
    _require_review(actor=actor, project=detection.scene.project)
    _check_class(detection=detection, object_class=object_class)
    return _once(
        actor,
        client_id,
        lambda: _apply(
            detection=detection, actor=actor, verb=ReviewVerb.RELABEL, expected_version=expected_version,
            client_id=client_id, comment=comment, object_class=object_class,
        ),
    )


def detection_reshape(
    *, detection: Detection, actor: AbstractBaseUser, geometry: Polygon, expected_version: int,
    client_id: str = "", comment: str = "",
) -> ReviewEvent:
    """Replace a detection's polygon (validated by the input serializer: valid, 2D, EPSG:4326, on the scene)."""
    _require_review(actor=actor, project=detection.scene.project)
    return _once(
        actor,
        client_id,
        lambda: _apply(
            detection=detection, actor=actor, verb=ReviewVerb.RESHAPE, expected_version=expected_version,
            client_id=client_id, comment=comment, geometry=geometry,
        ),
    )


def detection_create_manual(
    *, scene: Scene, actor: AbstractBaseUser, object_class: ObjectClass, geometry: Polygon, client_id: str = "",
    comment: str = "",
) -> ReviewEvent:
    """A missed object drawn by a reviewer: saved accepted, source manual."""
    _require_review(actor=actor, project=scene.project)
    if object_class.project_id != scene.project_id:
        raise Conflict("That class belongs to another project; choose one of this project's classes.")

    def write() -> ReviewEvent:
        _guard(scene_id=scene.pk, geometries=[geometry])
        bbox = Polygon.from_bbox(geometry.extent)
        bbox.srid = 4326
        detection = Detection.objects.create(
            scene=scene, object_class=object_class, geometry=geometry, bbox=bbox, score=None,
            source=DetectionSource.MANUAL, status=DetectionStatus.ACCEPTED, reviewer=actor,
            reviewed_at=timezone.now(),
        )
        return ReviewEvent.objects.create(
            detection_id=detection.pk, project_id=scene.project_id, scene=scene, actor=actor,
            verb=ReviewVerb.CREATE_MANUAL, status_after=detection.status, class_after=object_class.pk,
            geometry_after=geometry, comment=comment, client_id=client_id, version_after=detection.version,
        )

    return _once(actor, client_id, write)


def detection_delete_manual(
    *, detection: Detection, actor: AbstractBaseUser, expected_version: int, client_id: str = ""
) -> ReviewEvent:
    """Delete a drawn detection (only manual ones; proposals are rejected instead). Its events stay."""
    _require_review(actor=actor, project=detection.scene.project)
    if detection.source != DetectionSource.MANUAL:
        raise Conflict("Only detections drawn by a reviewer can be deleted; reject a proposal instead.")

    def write() -> ReviewEvent:
        _guard(scene_id=detection.scene_id, ids=[detection.pk])
        deleted, _ = Detection.objects.filter(pk=detection.pk, version=expected_version).delete()
        if not deleted:
            raise _stale(detection.pk, expected_version)
        return ReviewEvent.objects.create(
            detection_id=detection.pk, project_id=detection.scene.project_id, scene_id=detection.scene_id,
            actor=actor, verb=ReviewVerb.DELETE_MANUAL, status_before=detection.status,
            class_before=detection.object_class_id, geometry_before=detection.geometry, client_id=client_id,
            version_after=expected_version + 1,
        )

    return _once(actor, client_id, write)


def _undo_one(*, event: ReviewEvent, actor: AbstractBaseUser, client_id: str, batch_id) -> ReviewEvent:
    """Restore the state before `event`; NothingToUndo when the detection changed after it."""
    if event.verb == ReviewVerb.DELETE_MANUAL:
        if Detection.objects.filter(pk=event.detection_id).exists():
            raise NothingToUndo("This drawn object already exists again; nothing to undo.")
        _guard(scene_id=event.scene_id, geometries=[event.geometry_before])
        bbox = Polygon.from_bbox(event.geometry_before.extent)
        bbox.srid = 4326
        # Same id, so the trail of the restored object continues where it stopped.
        Detection.objects.create(
            pk=event.detection_id, scene_id=event.scene_id, object_class_id=event.class_before,
            geometry=event.geometry_before, bbox=bbox, source=DetectionSource.MANUAL, status=event.status_before,
            version=event.version_after + 1, reviewer=actor, reviewed_at=timezone.now(),
        )
        return ReviewEvent.objects.create(
            detection_id=event.detection_id, project_id=event.project_id, scene_id=event.scene_id, actor=actor,
            verb=ReviewVerb.UNDO, status_after=event.status_before, class_after=event.class_before,
            geometry_after=event.geometry_before, client_id=client_id, batch_id=batch_id,
            version_after=event.version_after + 1, undoes=event,
        )
    detection = Detection.objects.select_related("scene").filter(pk=event.detection_id).first()
    if detection is None or detection.version != event.version_after:
        raise NothingToUndo(
            "This detection changed after that decision (or was removed), so undoing it would overwrite "
            "someone's later change; look at its current state and decide again.",
            detail={"current": _state(detection) if detection else None, "event": event.pk},
        )
    if event.verb == ReviewVerb.CREATE_MANUAL:
        _guard(scene_id=event.scene_id, ids=[detection.pk])
        Detection.objects.filter(pk=detection.pk, version=event.version_after).delete()
        return ReviewEvent.objects.create(
            detection_id=detection.pk, project_id=event.project_id, scene_id=event.scene_id, actor=actor,
            verb=ReviewVerb.UNDO, status_before=detection.status, class_before=detection.object_class_id,
            geometry_before=detection.geometry, client_id=client_id, batch_id=batch_id,
            version_after=event.version_after + 1, undoes=event,
        )
    return _apply(
        detection=detection, actor=actor, verb=ReviewVerb.UNDO, expected_version=event.version_after,
        client_id=client_id, batch_id=batch_id, undoes=event, status=event.status_before,
        object_class=ObjectClass.objects.filter(pk=event.class_before).first(), geometry=event.geometry_before,
    )


STATUS_VERBS = (ReviewVerb.ACCEPT, ReviewVerb.REJECT)


def _undo_status_group(*, group: list[ReviewEvent], actor: AbstractBaseUser, client_id: str, batch_id) -> list:
    """Undo a bulk accept/reject in one UPDATE per restored status; all or nothing if any detection moved on."""
    locked = {
        d.pk: d
        for d in Detection.objects.select_for_update(of=("self",))
        .filter(pk__in=[e.detection_id for e in group])
        .only("pk", "status", "object_class_id", "geometry", "version")
    }
    for e in group:
        current = locked.get(e.detection_id)
        if current is None or current.version != e.version_after:
            raise NothingToUndo(
                f"Detection {e.detection_id} of this group changed after the bulk decision, so undoing the group "
                "would overwrite someone's later change; undo nothing, or decide those detections one by one.",
                detail={"current": _state(current) if current else None, "event": e.pk},
            )
    _guard(scene_id=group[0].scene_id, ids=list(locked))
    now = timezone.now()
    for status in {e.status_before for e in group}:
        Detection.objects.filter(pk__in=[e.detection_id for e in group if e.status_before == status]).update(
            status=status, reviewer=actor, reviewed_at=now, version=F("version") + 1
        )
    return ReviewEvent.objects.bulk_create(
        [
            ReviewEvent(
                detection_id=e.detection_id, project_id=e.project_id, scene_id=e.scene_id, actor=actor,
                verb=ReviewVerb.UNDO, status_before=e.status_after, status_after=e.status_before,
                class_before=locked[e.detection_id].object_class_id, class_after=locked[e.detection_id].object_class_id,
                geometry_before=locked[e.detection_id].geometry, geometry_after=locked[e.detection_id].geometry,
                client_id=client_id if i == 0 else "", batch_id=batch_id, version_after=e.version_after + 1, undoes=e,
            )
            for i, e in enumerate(group)
        ],
        batch_size=1000,
    )


def decision_undo(
    *, actor: AbstractBaseUser, client_id: str = "", event: ReviewEvent | None = None, scene: Scene | None = None
) -> list[ReviewEvent]:
    """Undo `event` (or the actor's last decision not yet undone, in `scene` if given); a batch undoes as one."""
    done = _replayed(actor=actor, client_id=client_id)
    if done is not None:
        return list(ReviewEvent.objects.filter(batch_id=done.batch_id)) if done.batch_id else [done]
    if event is None:
        mine = ReviewEvent.objects.filter(actor=actor, undone_by__isnull=True).exclude(verb=ReviewVerb.UNDO)
        if scene is not None:
            mine = mine.filter(scene=scene)
        event = mine.order_by("-id").first()
        if event is None:
            raise NothingToUndo("You have no decision left to undo here.")
    _require_review(actor=actor, project=event.project)
    if event.verb == ReviewVerb.UNDO:
        raise NothingToUndo("That event is itself an undo; make the decision again instead.")
    if ReviewEvent.objects.filter(undoes=event).exists():
        raise NothingToUndo("That decision was already undone.")
    group = list(ReviewEvent.objects.filter(batch_id=event.batch_id)) if event.batch_id else [event]
    undo_batch = uuid.uuid4() if event.batch_id else None
    try:
        with transaction.atomic():
            if len(group) > 1 and all(e.verb in STATUS_VERBS for e in group):
                return _undo_status_group(group=group, actor=actor, client_id=client_id, batch_id=undo_batch)
            # The first undo event carries the client id; the others share its batch id.
            return [
                _undo_one(event=e, actor=actor, client_id=client_id if i == 0 else "", batch_id=undo_batch)
                for i, e in enumerate(group)
            ]
    except IntegrityError:
        done = _replayed(actor=actor, client_id=client_id)
        if done is None:
            raise
        return list(ReviewEvent.objects.filter(batch_id=done.batch_id)) if done.batch_id else [done]


def _ids(detections: Iterable[Detection]):
    """Primary keys of `detections`, as a list: as an IN (subquery) under FOR UPDATE the planner chose a nested loop
    that took minutes at 20,000 detections."""
    if isinstance(detections, QuerySet):
        return list(detections.values_list("pk", flat=True))
    return [d.pk for d in detections]


def detections_bulk_review(
    *, scene: Scene, actor: AbstractBaseUser, verdict: str, detections: Iterable[Detection], client_id: str = "",
    comment: str = "",
) -> list[ReviewEvent]:
    """Decide many proposed detections at once: one event each, all sharing a batch id (undone as a group)."""
    require(annotate_selectors.role_of(user=actor, project=scene.project), Action.BULK_REVIEW)  # managers only
    done = _replayed(actor=actor, client_id=client_id)
    if done is not None:
        return list(ReviewEvent.objects.filter(batch_id=done.batch_id))
    verb = _verb_of(verdict)
    batch_id = uuid.uuid4()
    events: list[ReviewEvent] = []
    try:
        with transaction.atomic():
            # Locked so a concurrent single decision either lands first (and the row is skipped) or waits.
            locked = list(
                Detection.objects.select_for_update(of=("self",))
                .filter(pk__in=_ids(detections), scene=scene, status=DetectionStatus.PROPOSED)
                .order_by("pk")
                .only("pk", "status", "object_class_id", "geometry", "version", "scene_id")
            )
            if locked:
                _guard(scene_id=scene.pk, ids=[d.pk for d in locked])
                # One UPDATE and one INSERT for the whole set: the rows are locked, so their versions hold.
                Detection.objects.filter(pk__in=[d.pk for d in locked]).update(
                    status=verdict, reviewer=actor, reviewed_at=timezone.now(), version=F("version") + 1
                )
                events = ReviewEvent.objects.bulk_create(
                    [
                        ReviewEvent(
                            detection_id=d.pk, project_id=scene.project_id, scene_id=scene.pk, actor=actor, verb=verb,
                            status_before=d.status, status_after=verdict, class_before=d.object_class_id,
                            class_after=d.object_class_id, geometry_before=d.geometry, geometry_after=d.geometry,
                            comment=comment, client_id=client_id if i == 0 else "", batch_id=batch_id,
                            version_after=d.version + 1,
                        )
                        for i, d in enumerate(locked)
                    ],
                    batch_size=1000,
                )
    except IntegrityError:
        done = _replayed(actor=actor, client_id=client_id)
        if done is None:
            raise
        return list(ReviewEvent.objects.filter(batch_id=done.batch_id))
    return events
