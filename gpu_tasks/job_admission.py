"""Admission of GPU jobs before they are queued: what they will cost, how many a user has waiting, duplicates.

The only GPU worker is shared by everyone: a request that would hold it for hours, a user who queues job
after job, or a double-click that queues the same search twice are answered here, before a Job row exists.
"""

import math
import zlib
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from annotate.errors import DomainError, TooManyRequests
from annotate.models import DetectionStatus, Scene

from .inference.tiling import grid_shape  # numpy-free, torch-free: safe in the web process
from .models import Job, JobKind, JobStatus, PatchGrid

# Job kinds that run on the GPU queues and count against a user's pending jobs.
GPU_KINDS = (JobKind.EMBED, JobKind.SEARCH, JobKind.REFINE, JobKind.TRAIN, JobKind.PREDICT)
# Patch size used for estimates when the backbone is not loaded (DINOv2: 14; DINOv3's 16 gives fewer tiles).
ESTIMATE_PATCH_PX = 14


class JobTooLarge(DomainError):
    """A job whose estimated cost is over a configured limit."""

    code = "job_too_large"


@dataclass(frozen=True)
class JobCost:
    """What a job will cost: backbone tiles to embed and boxes to refine."""

    tiles: int = 0
    boxes: int = 0


def embed_tile_count(*, width_px: int, height_px: int, scale: float, patch_px: int = ESTIMATE_PATCH_PX) -> int:
    """Backbone tiles that embedding a scene at `scale` takes (the count of tiling.plan_tiles, without the list)."""
    tile_px = max(patch_px, settings.EMBED_TILE_PX - settings.EMBED_TILE_PX % patch_px)
    tile_cells = tile_px // patch_px
    stride = tile_cells - 2 * settings.EMBED_MARGIN_PATCHES
    grid_h, grid_w = grid_shape(width_px, height_px, patch_px / scale)

    def along(n_cells: int) -> int:
        # tiling._axis_plan: one tile when the axis fits, else tiles every `stride` cells until the edge.
        return 1 if n_cells <= tile_cells else 1 + math.ceil((n_cells - tile_cells) / stride)

    return along(grid_h) * along(grid_w)


def scene_embed_tiles(*, scene: Scene, scale: float) -> int:
    """Tiles still to embed for a scene at `scale`: none when a grid at that scale exists."""
    if PatchGrid.objects.filter(scene=scene, scale=scale).exists():
        return 0
    return embed_tile_count(width_px=scene.width or 1, height_px=scene.height or 1, scale=scale)


def job_cost_estimate(*, kind: str, scene: Scene, params: dict) -> JobCost:
    """The cost of a GPU job from its (validated, normalised) params."""
    if kind in (JobKind.EMBED, JobKind.SEARCH, JobKind.PREDICT):  # YOLO proposals embed the scene when it is not
        return JobCost(tiles=scene_embed_tiles(scene=scene, scale=float(params.get("scale", 1.0))))
    if kind == JobKind.REFINE:
        ids = params.get("detection_ids") or []
        boxes = len(ids) if ids else scene.detections.filter(status=DetectionStatus.PROPOSED).count()
        return JobCost(boxes=boxes)
    return JobCost()


def job_cost_check(*, cost: JobCost) -> None:
    """Refuse a job over JOB_MAX_TILES or JOB_MAX_REFINE_BOXES, stating the estimate and the limit."""
    if cost.tiles > settings.JOB_MAX_TILES:
        raise JobTooLarge(
            f"This job would embed about {cost.tiles:,} backbone tiles; this server runs at most "
            f"{settings.JOB_MAX_TILES:,} per job (JOB_MAX_TILES). Use a smaller scale, or ask the administrator.",
            detail={"estimate_tiles": cost.tiles, "limit_tiles": settings.JOB_MAX_TILES},
        )
    if cost.boxes > settings.JOB_MAX_REFINE_BOXES:
        raise JobTooLarge(
            f"This job would refine {cost.boxes:,} boxes; this server refines at most "
            f"{settings.JOB_MAX_REFINE_BOXES:,} per job (JOB_MAX_REFINE_BOXES). Choose detections "
            "(`detections`: ids), or review some first.",
            detail={"estimate_boxes": cost.boxes, "limit_boxes": settings.JOB_MAX_REFINE_BOXES},
        )


def _xact_lock(*parts) -> None:
    """Serialise admissions that touch the same key until the transaction ends (a no-op outside one)."""
    key = zlib.crc32(repr(parts).encode()) - 2**31
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def job_identical_pending(*, kind: str, scene: Scene, params: dict) -> Job | None:
    """A queued or live running job of the same kind, scene and params (whoever asked for it), or None."""
    live = timezone.now() - timedelta(seconds=settings.JOB_DEAD_AFTER_S)
    return (
        Job.objects.filter(kind=kind, scene=scene, params=params, cancel_requested=False)
        .filter(Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, heartbeat_at__gte=live))
        .order_by("queued_at")
        .first()
    )


def user_pending_gpu_jobs(*, user: AbstractBaseUser) -> int:
    """Queued and running GPU jobs a user started."""
    # A job whose worker died (silent for JOB_DEAD_AFTER_S) holds no worker, so it does not count.
    live = timezone.now() - timedelta(seconds=settings.JOB_DEAD_AFTER_S)
    pending = Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, heartbeat_at__gte=live)
    return Job.objects.filter(pending, created_by=user, kind__in=GPU_KINDS).count()


def user_pending_check(*, user: AbstractBaseUser | None) -> None:
    """Refuse (429) a user who already has JOB_MAX_PENDING_PER_USER GPU jobs queued or running."""
    if user is None or not user.is_authenticated:
        return
    _xact_lock("user", user.pk)
    pending = user_pending_gpu_jobs(user=user)
    if pending >= settings.JOB_MAX_PENDING_PER_USER:
        raise TooManyRequests(
            f"You have {pending} GPU jobs queued or running; at most {settings.JOB_MAX_PENDING_PER_USER} are "
            "allowed. Wait for one to finish (or cancel one) and try again.",
            detail={"pending": pending, "limit": settings.JOB_MAX_PENDING_PER_USER},
        )


def gpu_job_admit(*, kind: str, scene: Scene, user: AbstractBaseUser | None, params: dict) -> Job | None:
    """Check a GPU job before it is created: the identical pending job when there is one, else None (go ahead).

    Order: an identical job costs nothing more, so it is returned even to a user at their cap; then the cost
    limits; then the per-user cap. Call inside the transaction that creates the job.
    """
    _xact_lock("scene-jobs", scene.pk, kind)
    if (existing := job_identical_pending(kind=kind, scene=scene, params=params)) is not None:
        return existing
    job_cost_check(cost=job_cost_estimate(kind=kind, scene=scene, params=params))
    user_pending_check(user=user)
    return None


def requery_admit(*, scene: Scene, params: dict) -> Job | None:
    """The identical Update proposals job still queued (a double press), else None (go ahead).

    Only a queued one: a running update may have read the decisions already, so a press made after a new
    decision gets a job of its own (a few seconds on the CPU queue; the proposals lock orders the two). Not
    counted against the GPU jobs a user may have pending, and no cost limit: it embeds nothing.
    """
    _xact_lock("scene-jobs", scene.pk, JobKind.REQUERY)
    return (
        Job.objects.filter(
            kind=JobKind.REQUERY, scene=scene, params=params, status=JobStatus.QUEUED, cancel_requested=False
        )
        .order_by("queued_at")
        .first()
    )
