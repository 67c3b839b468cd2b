"""The demo project's content: classes that fit the sample imagery and the sample scenes (for `manage.py seed_demo`)."""

from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef

from .models import Annotation, Detection, ObjectClass, Project
from .services import DEFAULT_CLASSES

SAMPLES = Path(settings.BASE_DIR) / "data" / "samples"

# Chosen for what the sample scenes show (data/samples/PROVENANCE.md), so that a first search finds something real.
DEMO_CLASSES: tuple[tuple[str, str], ...] = (
    ("Tree crown", "#2ca02c"),  # NEON OSBS 029: 61 hand-labelled crowns of an open pine forest
    ("Bare ground", "#d4a017"),  # NEON OSBS 029: the sand between the crowns
    ("Pond", "#1f77b4"),  # NAIP North Dakota: dozens of prairie-pothole ponds, a few to tens of pixels across
    ("Fallow field", "#e377c2"),  # NAIP North Dakota: bare, tilled fields between green crops and grassland
)


@dataclass(frozen=True)
class DemoScene:
    """A sample scene of the demo project: its name in the project, the file and the bands shown as RGB."""

    name: str
    path: Path
    bands: str | None = None  # "1,2,3" for ingest_scene --bands; None: from the file


DEMO_SCENES: tuple[DemoScene, ...] = (
    # The first scene keeps its original name: existing demo databases know it by that name.
    DemoScene("NEON OSBS 029 (0.1 m)", SAMPLES / "neon_trees_OSBS_029.tif"),
    DemoScene(
        "NAIP prairie potholes, North Dakota (5 m)", SAMPLES / "naip_rgbn_m_4709963_se_14_1_20200831.tif", bands="1,2,3"
    ),
)


@dataclass
class ClassChanges:
    """What demo_classes_apply did, by class name."""

    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old, new): an unused default class reused
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # unused default classes that fit no sample scene
    kept: list[str] = field(default_factory=list)  # default classes kept because examples or detections use them

    @property
    def changed(self) -> bool:
        """True when anything was written."""
        return bool(self.renamed or self.created or self.removed)


@transaction.atomic
def demo_classes_apply(*, project: Project) -> ClassChanges:
    """Give the demo project the DEMO_CLASSES: unused default classes are renamed into them (keeping their export
    index) or removed; classes that examples or detections use, and classes a person added, are never touched."""
    changes = ClassChanges()
    classes = list(
        ObjectClass.objects.select_for_update()
        .filter(project=project)
        .annotate(
            used=Exists(Annotation.objects.filter(object_class=OuterRef("pk")))
            | Exists(Detection.objects.filter(object_class=OuterRef("pk")))
        )
        .order_by("index")
    )
    present = {c.name for c in classes}
    default_names = {name for name, _ in DEFAULT_CLASSES}
    spare = [c for c in classes if c.name in default_names and not c.used]
    changes.kept = [c.name for c in classes if c.name in default_names and c.used]
    for name, colour in DEMO_CLASSES:
        if name in present:
            continue
        if spare:
            cls = spare.pop(0)
            changes.renamed.append((cls.name, name))
            cls.name, cls.color = name, colour
            cls.save(update_fields=["name", "color"])
        else:
            agg = project.classes.aggregate(i=Max("index"), p=Max("position"))
            ObjectClass.objects.create(  # a new stable export index, at the end of the list
                project=project, name=name, color=colour, index=(agg["i"] if agg["i"] is not None else -1) + 1,
                position=(agg["p"] if agg["p"] is not None else -1) + 1,
            )
            changes.created.append(name)
    for cls in spare:
        changes.removed.append(cls.name)
        cls.delete()
    return changes
