"""Job reads, scoped by project membership."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from annotate.errors import DomainError
from annotate.models import Annotation, Detection, Project

from .models import Job, ObjectEmbedding


def job_list(
    *,
    user: AbstractBaseUser,
    project_id: int | None = None,
    scene_id: int | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> QuerySet[Job]:
    """Jobs of the user's projects, optionally of one project, scene, kind or status (validated values)."""
    qs = Job.objects.filter(project__memberships__user=user)
    filters = {"project_id": project_id, "scene_id": scene_id, "kind": kind, "status": status}
    return qs.filter(**{field: value for field, value in filters.items() if value is not None})


def object_embedding_get(*, project: Project, annotation_id: int | None, detection_id: int | None) -> ObjectEmbedding:
    """The newest vector of a project's example or detection; 404 for objects of other projects."""
    field, model, owner_id = (
        ("annotation", Annotation, annotation_id) if annotation_id else ("detection", Detection, detection_id)
    )
    owner = get_object_or_404(model.objects.filter(scene__project=project), pk=owner_id)
    found = ObjectEmbedding.objects.filter(**{field: owner}).order_by("-created_at").first()
    if found is None:
        raise DomainError(
            "This object has no embedding yet because its scene has not been embedded: run a search on "
            f"scene {owner.scene_id} or POST /api/scenes/{owner.scene_id}/embed/ first."
        )
    return found
