"""Review's domain errors (HTTP status through annotate.api_errors' table, by their base class)."""

from annotate.errors import Conflict


class StaleVersion(Conflict):
    """A decision made on an older version of a detection than the current one."""

    code = "stale_version"


class NothingToUndo(Conflict):
    """An undo with no decision of the caller's left to undo, or one whose detection changed since."""

    code = "cannot_undo"
