"""Job reads, scoped by project membership."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from .models import Job


def job_list(*, user: AbstractBaseUser) -> QuerySet[Job]:
    """Jobs of the user's projects."""
    return Job.objects.filter(project__memberships__user=user)
