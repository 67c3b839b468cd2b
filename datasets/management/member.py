"""The project and member a dataset command acts as (by id or name), for the commands of this app."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from annotate.models import Membership, Project


def project_member(project: str, user: str) -> tuple[Project, object, str | None]:
    """(project by id or name, user by name, their role there or None); CommandError naming what is missing."""
    found = Project.objects.filter(pk=int(project)).first() if project.isdigit() else None
    found = found or Project.objects.filter(name=project).first()
    if found is None:
        raise CommandError(f"No project {project!r}.")
    member = get_user_model().objects.filter(username=user).first()
    if member is None:
        raise CommandError(f"No user {user!r}.")
    role = Membership.objects.filter(project=found, user=member).values_list("role", flat=True).first()
    return found, member, role
