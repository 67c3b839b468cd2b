"""Writes a project manager makes: creating a project with its starting classes, editing, reordering and deleting
classes, and adding, changing and removing members."""

from collections.abc import Sequence
from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max

from . import selectors
from .errors import ClassInUse, Conflict, DomainError, LastManager
from .models import Membership, ObjectClass, Project, Role
from .permissions import Action, require
from .services import DEFAULT_CLASSES


class StartingClasses(StrEnum):
    """What classes a new project starts with."""

    NONE = "none"
    DEFAULT = "default"
    COPY = "copy"


# ------------------------------------------------------------------------------------------ projects
@transaction.atomic
def project_create(
    *, name: str, user: AbstractBaseUser, description: str = "", starting_classes: str = StartingClasses.DEFAULT,
    copy_from: Project | None = None,
) -> Project:
    """Create a project with its creator as manager and no classes, the default eight, or another project's."""
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name, description=description, created_by=user)
    except IntegrityError as exc:
        raise Conflict("A project with this name already exists; choose another name.") from exc
    Membership.objects.create(project=project, user=user, role=Role.MANAGER)
    if starting_classes == StartingClasses.DEFAULT:
        specs = [(n, c) for n, c in DEFAULT_CLASSES]
    elif starting_classes == StartingClasses.COPY:
        if copy_from is None:
            raise DomainError("Choose the project whose classes to copy.")
        specs = [(c.name, c.color) for c in copy_from.classes.order_by("position", "index")]
    else:
        specs = []
    # Copies get fresh export indexes 0..n-1 in the source's list order: this project's exports start clean.
    ObjectClass.objects.bulk_create(
        ObjectClass(project=project, name=n, color=c, index=i, position=i) for i, (n, c) in enumerate(specs)
    )
    return project


# ------------------------------------------------------------------------------------------ classes
def _class_name_free(*, project_id: int, name: str, exclude_id: int | None = None) -> None:
    """Conflict when another class of the project has this name (case-insensitive: "kiln" and "Kiln" confuse)."""
    taken = ObjectClass.objects.filter(project_id=project_id, name__iexact=name)
    if exclude_id is not None:
        taken = taken.exclude(pk=exclude_id)
    if taken.exists():
        raise Conflict(f"The project already has a class named {name!r}; choose another name.")


@transaction.atomic
def object_class_add(*, project: Project, role: str | None, name: str, color: str) -> ObjectClass:
    """Add a class at the end of the list, with the next free stable index."""
    require(role, Action.EDIT_CLASSES)
    Project.objects.select_for_update().filter(pk=project.pk).first()  # one class added at a time per project
    _class_name_free(project_id=project.pk, name=name)
    agg = project.classes.aggregate(i=Max("index"), p=Max("position"))
    return ObjectClass.objects.create(
        project=project, name=name, color=color, index=(agg["i"] if agg["i"] is not None else -1) + 1,
        position=(agg["p"] if agg["p"] is not None else -1) + 1,
    )


@transaction.atomic
def object_class_update(
    *, object_class: ObjectClass, role: str | None, name: str | None = None, color: str | None = None,
    position: int | None = None,
) -> ObjectClass:
    """Rename, recolour and/or move a class (its export index never changes)."""
    require(role, Action.EDIT_CLASSES)
    fields = []
    if name is not None and name != object_class.name:
        _class_name_free(project_id=object_class.project_id, name=name, exclude_id=object_class.pk)
        object_class.name = name
        fields.append("name")
    if color is not None:
        object_class.color = color.lower()
        fields.append("color")
    if fields:
        object_class.save(update_fields=fields)
    if position is not None:
        ids = [c.pk for c in _locked_classes(object_class.project_id) if c.pk != object_class.pk]
        ids.insert(min(position, len(ids)), object_class.pk)
        _positions_write(ids)
        object_class.refresh_from_db(fields=["position"])
    return object_class


def _locked_classes(project_id: int) -> list[ObjectClass]:
    """The project's classes in list order, locked so two reorders cannot interleave."""
    return list(ObjectClass.objects.select_for_update().filter(project_id=project_id).order_by("position", "index"))


def _positions_write(ids: Sequence[int]) -> None:
    """Positions 0..n-1 in the given order."""
    classes = [ObjectClass(pk=pk, position=i) for i, pk in enumerate(ids)]
    ObjectClass.objects.bulk_update(classes, ["position"])


@transaction.atomic
def object_classes_reorder(*, project: Project, role: str | None, order: Sequence[int]) -> list[ObjectClass]:
    """Put the project's classes in the given order (every class id of the project, each once)."""
    require(role, Action.EDIT_CLASSES)
    current = {c.pk for c in _locked_classes(project.pk)}
    if len(order) != len(set(order)) or set(order) != current:
        raise DomainError(
            "Send every class id of this project exactly once, in the new order "
            f"(the project has {len(current)} classes); reload the class list and try again.",
            detail={"class_ids": sorted(current)},
        )
    _positions_write(order)
    return list(project.classes.order_by("position", "index"))


@transaction.atomic
def object_class_delete(*, object_class: ObjectClass, role: str | None) -> None:
    """Delete a class that no example or detection uses; ClassInUse (with the counts) otherwise."""
    require(role, Action.EDIT_CLASSES)
    locked = ObjectClass.objects.select_for_update().filter(pk=object_class.pk).first()
    if locked is None:
        return
    usage = selectors.class_usage(object_class=locked)
    if usage.examples or usage.detections:
        raise ClassInUse(
            f"{locked.name} is used by {usage.sentence()}; relabel or delete them first.",
            detail={"examples": usage.examples, "detections": usage.detections},
        )
    locked.delete()
    _positions_write([c.pk for c in _locked_classes(locked.project_id)])


# ------------------------------------------------------------------------------------------ members
def _other_managers(*, project: Project, user_id: int) -> int:
    """How many managers the project has besides this user (their rows locked: two demotions cannot race)."""
    managers = list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.MANAGER)
        .values_list("user_id", flat=True)
    )
    return sum(1 for uid in managers if uid != user_id)


@transaction.atomic
def member_add(*, project: Project, role: str | None, user: AbstractBaseUser, member_role: str) -> Membership:
    """Make a user a member of the project with a role; Conflict if they already are one."""
    require(role, Action.MANAGE_MEMBERS)
    existing = Membership.objects.filter(project=project, user=user).first()
    if existing is not None:
        raise Conflict(
            f"{user.get_username()} is already a member (as {existing.role}); change their role instead."
        )
    return Membership.objects.create(project=project, user=user, role=member_role)


@transaction.atomic
def member_role_change(*, membership: Membership, role: str | None, member_role: str) -> Membership:
    """Change a member's role; the project's last manager cannot be demoted."""
    require(role, Action.MANAGE_MEMBERS)
    demoted = membership.role == Role.MANAGER and member_role != Role.MANAGER
    if demoted and not _other_managers(project=membership.project, user_id=membership.user_id):
        raise LastManager(
            f"{membership.user.get_username()} is the project's only manager; make someone else a manager first.",
        )
    membership.role = member_role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, role: str | None) -> None:
    """Remove a member from the project; the last manager cannot be removed."""
    require(role, Action.MANAGE_MEMBERS)
    if membership.role == Role.MANAGER and not _other_managers(
        project=membership.project, user_id=membership.user_id
    ):
        raise LastManager(
            f"{membership.user.get_username()} is the project's only manager; make someone else a manager first.",
        )
    membership.delete()
