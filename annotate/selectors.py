"""Reads, always scoped by project membership: what a user cannot see does not exist (404)."""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.gis.geos import Polygon
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.shortcuts import get_object_or_404

from . import storage
from .models import Annotation, Detection, Membership, ObjectClass, Project, Role, Scene
from .uploads import raster_data_bands


def project_list(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """Projects the user is a member of."""
    return Project.objects.filter(memberships__user=user)


def project_get(*, user: AbstractBaseUser, project_id: int) -> Project:
    """One of the user's projects, or 404."""
    return get_object_or_404(project_list(user=user), pk=project_id)


def role_of(*, user: AbstractBaseUser, project: Project) -> str | None:
    """The user's role in a project (None when not a member)."""
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


def membership_get(*, user: AbstractBaseUser, project_id: int) -> Membership:
    """The user's membership of a project, or 404 (a project they are not in does not exist for them)."""
    return get_object_or_404(Membership.objects.select_related("project"), user=user, project_id=project_id)


def class_list(*, user: AbstractBaseUser) -> QuerySet[ObjectClass]:
    """Classes of the user's projects."""
    return ObjectClass.objects.filter(project__memberships__user=user)


@dataclass(frozen=True)
class ClassUsage:
    """How many examples and detections use a class."""

    examples: int
    detections: int

    def sentence(self) -> str:
        """`12 examples and 340 detections`, leaving out a zero."""
        parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                 ((self.examples, "example"), (self.detections, "detection")) if n]
        return " and ".join(parts) or "nothing"


def class_usage(*, object_class: ObjectClass) -> ClassUsage:
    """How many examples and detections (of every scene of the project) use the class."""
    return ClassUsage(
        examples=Annotation.objects.filter(object_class=object_class).count(),
        detections=Detection.objects.filter(object_class=object_class).count(),
    )


def member_list(*, project: Project) -> QuerySet[Membership]:
    """A project's members, managers first, then by user name."""
    role_rank = Case(*(When(role=r, then=Value(i)) for i, r in enumerate(Role.values)), output_field=IntegerField())
    return (
        Membership.objects.filter(project=project).select_related("user")
        .order_by(role_rank, "user__username")
    )


def member_get(*, project: Project, user_id: int) -> Membership:
    """One member of a project, or 404."""
    return get_object_or_404(Membership.objects.select_related("user", "project"), project=project, user_id=user_id)


def scene_list(*, user: AbstractBaseUser) -> QuerySet[Scene]:
    """Scenes of the user's projects."""
    return Scene.objects.filter(project__memberships__user=user).select_related("project")


def scene_get(*, user: AbstractBaseUser, scene_id: int) -> Scene:
    """One scene the user may see, or 404."""
    return get_object_or_404(scene_list(user=user), pk=scene_id)


def annotation_list(*, user: AbstractBaseUser) -> QuerySet[Annotation]:
    """Example polygons in the user's projects."""
    return Annotation.objects.filter(scene__project__memberships__user=user).select_related("object_class")


def detection_list(*, user: AbstractBaseUser) -> QuerySet[Detection]:
    """Detections in the user's projects."""
    return Detection.objects.filter(scene__project__memberships__user=user).select_related("object_class")


def bbox_polygon(value: str) -> Polygon:
    """Parse `minlon,minlat,maxlon,maxlat` into an EPSG:4326 polygon; ValueError with a clear message."""
    try:
        minx, miny, maxx, maxy = (float(v) for v in value.split(","))
    except ValueError as exc:
        raise ValueError("bbox must be four numbers: minlon,minlat,maxlon,maxlat") from exc
    if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
        raise ValueError("bbox must satisfy -180 <= minlon < maxlon <= 180 and -90 <= minlat < maxlat <= 90")
    return Polygon.from_bbox((minx, miny, maxx, maxy))


def scene_data_bands(*, scene: Scene) -> tuple[int, ...] | None:
    """The image bands a re-ingest may map to RGB: from the kept upload's header, else the stored band count."""
    try:
        from_header = raster_data_bands(storage.absolute(scene.upload_path)) if scene.upload_path else None
    except ValueError:  # a stored path outside DATA_DIR: not ours to read
        from_header = None
    if from_header:
        return from_header
    return tuple(range(1, scene.band_count + 1)) if scene.band_count else None
