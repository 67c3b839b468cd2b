"""The review events of a project as CSV rows, streamed from a server-side cursor (never all in memory)."""

import csv
from collections.abc import Iterator

from annotate.models import ObjectClass

from .analytics import AnalyticsFilter
from .models import ReviewEvent

CSV_HEADER = [
    "event_id", "time_utc", "scene_id", "scene", "detection_id", "actor", "verb", "status_before", "status_after",
    "class_before", "class_after", "comment", "batch_id", "version_after", "undoes_event_id",
]
CHUNK_SIZE = 2000
# A spreadsheet runs a cell that starts with one of these as a formula: a comment is text, so it gets a quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """A file-like object whose write returns the line, so csv.writer can feed a generator."""

    def write(self, value: str) -> str:
        return value


def _text(value: str) -> str:
    """A free-text cell that a spreadsheet will not evaluate."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def event_rows(*, filters: AnalyticsFilter) -> Iterator[list]:
    """One row per event of the filter, oldest first, read in chunks of CHUNK_SIZE."""
    events = ReviewEvent.objects.filter(project=filters.project)
    if filters.scene is not None:
        events = events.filter(scene=filters.scene)
    if filters.since is not None:
        events = events.filter(created_at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(created_at__lt=filters.until)
    # Class ids are not foreign keys (the trail outlives a deleted class); a project has a handful of classes.
    classes = dict(ObjectClass.objects.filter(project=filters.project).values_list("pk", "name"))
    values = events.order_by("id").values_list(
        "id", "created_at", "scene_id", "scene__name", "detection_id", "actor__username", "verb", "status_before",
        "status_after", "class_before", "class_after", "comment", "batch_id", "version_after", "undoes_id",
    )
    for (
        pk, at, scene_id, scene_name, detection_id, actor, verb, before, after, class_before, class_after, comment,
        batch_id, version, undoes,
    ) in values.iterator(chunk_size=CHUNK_SIZE):
        yield [
            pk, at.isoformat().replace("+00:00", "Z"), scene_id, _text(scene_name), detection_id, actor or "", verb,
            before, after, _class_name(classes, class_before), _class_name(classes, class_after), _text(comment),
            batch_id or "", version, undoes or "",
        ]


def _class_name(classes: dict[int, str], class_id: int | None) -> str:
    """A class id's name; a deleted class by its id."""
    if class_id is None:
        return ""
    return _text(classes.get(class_id, f"(deleted class {class_id})"))


def csv_lines(*, filters: AnalyticsFilter) -> Iterator[str]:
    """The header and the event rows as CSV text lines."""
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_HEADER)
    for row in event_rows(filters=filters):
        yield writer.writerow(row)
