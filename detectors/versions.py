"""Model versions: rename, make current (one per project), delete (weights too); the list a project page shows."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotate import selectors as annotate_selectors
from annotate.models import DetectionStatus
from annotate.permissions import Action, require

from .models import ModelVersion


def version_update(*, version: ModelVersion, actor: AbstractBaseUser, name: str | None = None,
                   is_current: bool | None = None) -> ModelVersion:
    """Rename a version or make it (or stop it being) the project's current model (managers)."""
    require(annotate_selectors.role_of(user=actor, project=version.project), Action.EDIT_PROJECT)
    with transaction.atomic():
        if is_current:
            ModelVersion.objects.filter(project=version.project, is_current=True).exclude(pk=version.pk).update(
                is_current=False)
        if is_current is not None:
            version.is_current = is_current
        if name is not None:
            version.name = name.strip()
        version.save(update_fields=["is_current", "name"])
    return version


def version_delete(*, version: ModelVersion, actor: AbstractBaseUser) -> None:
    """Delete a version, its weights and its unreviewed proposals (managers); reviewed ones stay, unattributed."""
    require(annotate_selectors.role_of(user=actor, project=version.project), Action.EDIT_PROJECT)
    path = Path(settings.DATA_DIR) / version.weights
    with transaction.atomic():
        version.detections.filter(status=DetectionStatus.PROPOSED).delete()
        version.delete()
    path.unlink(missing_ok=True)
