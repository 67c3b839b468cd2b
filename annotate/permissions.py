"""What each project role may do: one table, one check."""

from enum import StrEnum

from .errors import NotAllowed
from .models import Role


class Action(StrEnum):
    """Actions that need more than membership."""

    EDIT_PROJECT = "edit the project"
    EDIT_CLASSES = "edit classes"
    UPLOAD_SCENE = "upload scenes"
    DELETE_SCENE = "delete scenes"
    ANNOTATE = "draw examples"
    REVIEW = "review detections"
    BULK_REVIEW = "accept or reject in bulk"
    RUN_JOBS = "run jobs (embed, search, refine)"
    REFINE_ONE = "refine one detection"
    MANAGE_MEMBERS = "manage members"
    MANAGE_CELLS = "split scenes into work cells and assign them"
    MARK_ACCURACY_AREAS = "mark reviewed areas as exhaustively labelled"
    REOPEN_CELLS = "reopen a done work cell"
    EXPORT_EVENTS = "download the review events"
    EXPORT_DATASET = "export datasets"
    IMPORT_EXAMPLES = "import labels as examples"
    IMPORT_ACCEPTED = "import labels as accepted objects"


# Issue 10's roles: managers do everything; reviewers decide, relabel, reshape, draw missed objects, refine the one
# detection in front of them and update proposals; annotators draw examples and run jobs; viewers read. Reviewers
# keep drawing examples: the class they draw a missed object with is picked in the same list, and an example a
# reviewer adds where the search fails is the cheapest fix for it. Bulk decisions are a manager's.
ALLOWED_ROLES: dict[Action, set[str]] = {
    Action.EDIT_PROJECT: {Role.MANAGER},
    Action.EDIT_CLASSES: {Role.MANAGER},
    Action.UPLOAD_SCENE: {Role.MANAGER, Role.ANNOTATOR},
    Action.DELETE_SCENE: {Role.MANAGER},
    Action.ANNOTATE: {Role.MANAGER, Role.ANNOTATOR, Role.REVIEWER},
    Action.REVIEW: {Role.MANAGER, Role.REVIEWER},
    Action.BULK_REVIEW: {Role.MANAGER},
    Action.RUN_JOBS: {Role.MANAGER, Role.ANNOTATOR},
    Action.REFINE_ONE: {Role.MANAGER, Role.ANNOTATOR, Role.REVIEWER},
    Action.MANAGE_MEMBERS: {Role.MANAGER},
    Action.MANAGE_CELLS: {Role.MANAGER},
    Action.MARK_ACCURACY_AREAS: {Role.MANAGER},
    Action.REOPEN_CELLS: {Role.MANAGER},
    Action.EXPORT_EVENTS: {Role.MANAGER},
    # Exports are runs of a job over reviewed objects (annotators run jobs); an import as accepted objects skips
    # review, so it is a manager's; as examples it is drawing examples in bulk.
    Action.EXPORT_DATASET: {Role.MANAGER, Role.ANNOTATOR},
    Action.IMPORT_EXAMPLES: {Role.MANAGER, Role.ANNOTATOR},
    Action.IMPORT_ACCEPTED: {Role.MANAGER},
}


def role_allows(role: str | None, action: Action) -> bool:
    """Whether a role may do an action."""
    return role in ALLOWED_ROLES[action]


def who_may(action: Action) -> str:
    """The roles that may do an action, as words: `managers and annotators`."""
    names = [f"{r.label.lower()}s" for r in Role if r in ALLOWED_ROLES[action]]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def require(role: str | None, action: Action) -> None:
    """Raise NotAllowed unless the role may do the action; the message says who may."""
    if not role_allows(role, action):
        raise NotAllowed(
            f"Your role ({role or 'none'}) may not {action.value} in this project; only {who_may(action)} may. "
            "Ask a project manager to change your role.",
            detail={"action": action.name.lower(), "allowed_roles": sorted(ALLOWED_ROLES[action])},
        )
