"""The shapes every export format shares: the objects handed to a writer, its options, and what it reports back."""

from dataclasses import dataclass, field

FORMATS = {
    "yolo_detect": "YOLO detection (chips, boxes)",
    "yolo_segment": "YOLO segmentation (chips, polygons)",
    "yolo_obb": "YOLO oriented boxes (chips, minimum rotated rectangles)",
    "coco": "COCO instances (chips, polygons and boxes)",
    "geojson": "GeoJSON (RFC 7946, EPSG:4326)",
    "gpkg": "GeoPackage (each scene's CRS)",
}
CHIP_FORMATS = ("yolo_detect", "yolo_segment", "yolo_obb", "coco")
VECTOR_FORMATS = ("geojson", "gpkg")


@dataclass(frozen=True)
class ExportClass:
    """A project class as exports name it: its stable index (YOLO id; COCO category id is index + 1)."""

    index: int
    name: str
    id: int


@dataclass(frozen=True)
class ExportObject:
    """One selected object: a detection (or, with include_examples, an example polygon) and what is said of it."""

    key: str  # "detection:<id>" or "example:<id>": how a manifest or an error names it
    scene_id: int
    class_index: int
    class_name: str
    geometry: object  # shapely Polygon in EPSG:4326, holes kept
    status: str
    source: str
    score: float | None
    model_key: str
    reviewer: str
    reviewed_at: str | None  # ISO 8601


@dataclass(frozen=True)
class ChipOptions:
    """How chips are cut and split (validated by export_options.ExportOptionsSerializer)."""

    chip_size: int = 640
    overlap: float = 0.2
    min_visible: float = 0.3  # an object cut by a chip edge is dropped from that chip below this visible fraction
    negatives: float = 0.1  # empty chips kept, as a share of the chips that hold objects
    block_chips: int = 4  # the spatial split's block side, in chips: a block goes wholly to one split
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    seed: int = 0
    gsd_m: float | None = None  # resample every chip to this many metres per pixel (None: each scene's own)
    image_format: str = "png"


class ExportLoss(Exception):
    """An export that would lose or empty a label: which object, and why (the job fails with this message)."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


@dataclass
class WriteStats:
    """What a writer wrote, for the manifest: every selected object is written or accounted for by a reason."""

    objects_selected: int = 0
    objects_written: int = 0  # selected objects that appear in the output at least once
    labels_written: int = 0  # label lines / features / annotations (an object cut by chip edges counts in each)
    per_class: dict = field(default_factory=dict)  # class name -> {split or "all": labels}
    chips: dict = field(default_factory=dict)  # split -> chips written (chip formats)
    negatives: dict = field(default_factory=dict)  # split -> empty chips written
    dropped: dict = field(default_factory=dict)  # reason -> count of labels dropped on purpose (min_visible ...)
    files: list = field(default_factory=list)  # paths written, relative to the export root
    extra: dict = field(default_factory=dict)  # anything else the format wants in its manifest section
