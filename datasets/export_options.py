"""Validation of an export request (the API, the command and a saved definition all pass through here)."""

from rest_framework import serializers

from annotate.models import DetectionSource, DetectionStatus

from .export_types import CHIP_FORMATS, FORMATS, ChipOptions

GPKG_LAYOUTS = ("per_scene", "single")
# Fields that are the chip options (ChipOptions) rather than the selection.
CHIP_FIELDS = ("chip_size", "overlap", "min_visible", "negatives", "block_chips", "val_fraction", "test_fraction",
               "seed", "gsd_m")


class ExportRequestSerializer(serializers.Serializer):
    """What to export (scenes, classes, statuses, sources) and how (format and its options); flat JSON."""

    format = serializers.ChoiceField(choices=sorted(FORMATS))
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    save = serializers.BooleanField(required=False, default=True)
    scene_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list,
                                     help_text="empty: every ready scene of the project")
    class_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list,
                                     help_text="empty: every class")
    statuses = serializers.ListField(child=serializers.ChoiceField(choices=DetectionStatus.values), required=False,
                                     default=lambda: [DetectionStatus.ACCEPTED], allow_empty=False)
    sources = serializers.ListField(child=serializers.ChoiceField(choices=DetectionSource.values), required=False,
                                    default=list, help_text="empty: every source")
    include_examples = serializers.BooleanField(required=False, default=False,
                                                help_text="also export the example polygons (source 'example')")
    chip_size = serializers.IntegerField(required=False, default=640, min_value=32, max_value=4096)
    overlap = serializers.FloatField(required=False, default=0.2, min_value=0.0, max_value=0.9)
    min_visible = serializers.FloatField(required=False, default=0.3, min_value=0.0, max_value=1.0)
    negatives = serializers.FloatField(required=False, default=0.1, min_value=0.0, max_value=10.0,
                                       help_text="empty chips kept, as a share of the chips holding objects")
    block_chips = serializers.IntegerField(required=False, default=4, min_value=1, max_value=64)
    val_fraction = serializers.FloatField(required=False, default=0.2, min_value=0.0, max_value=0.9)
    test_fraction = serializers.FloatField(required=False, default=0.0, min_value=0.0, max_value=0.9)
    seed = serializers.IntegerField(required=False, default=0, min_value=0)
    gsd_m = serializers.FloatField(required=False, default=None, allow_null=True, min_value=0.01, max_value=1000.0,
                                   help_text="resample chips to this ground resolution (metres per pixel)")
    gpkg_layout = serializers.ChoiceField(choices=GPKG_LAYOUTS, required=False, default="per_scene")

    def validate(self, attrs):
        if attrs["val_fraction"] + attrs["test_fraction"] >= 1.0:
            raise serializers.ValidationError(
                {"val_fraction": "val_fraction + test_fraction must leave something to train on (below 1)."}
            )
        if attrs["save"] and not attrs["name"].strip():
            raise serializers.ValidationError({"name": "Give the export a name to save it (or untick save)."})
        attrs["name"] = attrs["name"].strip()
        attrs["scene_ids"] = sorted(set(attrs["scene_ids"]))
        attrs["class_ids"] = sorted(set(attrs["class_ids"]))
        attrs["statuses"] = sorted(set(attrs["statuses"]))
        attrs["sources"] = sorted(set(attrs["sources"]))
        return attrs


def export_params(data: dict) -> dict:
    """Validated, complete export parameters (defaults filled) from a request or a saved definition; 400 if bad."""
    form = ExportRequestSerializer(data=data)
    form.is_valid(raise_exception=True)
    params = dict(form.validated_data)
    params.pop("save", None)
    return params


def chip_options(params: dict) -> ChipOptions:
    """The chip options of validated params."""
    return ChipOptions(**{k: params[k] for k in CHIP_FIELDS})


def is_chip_format(fmt: str) -> bool:
    """Whether the format cuts image chips (YOLO, COCO) rather than writing map vectors."""
    return fmt in CHIP_FORMATS
