"""Review's input serializers (each request validated once, here) and its output shapes."""

import json
import math

from django.contrib.gis.geos import GEOSGeometry
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.models import DetectionStatus, ObjectClass, Scene
from annotate.serializers import DetectionSerializer, Wgs84GeometryField, check_geometry_near_scene

from .models import ReviewEvent
from .selectors import QueueOrder

MAX_ID = 2**63 - 1
BULK_MAX_IDS = 5_000  # one request's worth; larger sets go by filter
VERDICTS = (DetectionStatus.ACCEPTED, DetectionStatus.REJECTED)
STATUS_OR_NONE = [("", "none"), *DetectionStatus.choices]


def _id_field(**kwargs) -> serializers.IntegerField:
    """A positive object id (bigint range)."""
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def _client_id_field() -> serializers.CharField:
    """The client's request id: a retry with the same one changes nothing and answers the first result."""
    return serializers.CharField(max_length=64, min_length=1, help_text="unique per request; resend it on retry")


def _finite(value: float, name: str) -> float:
    """Refuse NaN and infinities, which compare with nothing."""
    if not math.isfinite(value):
        raise serializers.ValidationError(f"{name} must be a finite number.")
    return value


POLYGON_SCHEMA = {
    "type": "object",
    "description": "GeoJSON Polygon in EPSG:4326, 2D [longitude, latitude]",
    "properties": {
        "type": {"type": "string", "enum": ["Polygon"]},
        "coordinates": {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {
            "type": "number"}, "minItems": 2, "maxItems": 2}}},
    },
    "required": ["type", "coordinates"],
}


@extend_schema_field(POLYGON_SCHEMA)
class SceneGeometryField(Wgs84GeometryField):
    """A valid 2D polygon in EPSG:4326 on the scene in the serializer's context (`scene`)."""

    def to_internal_value(self, value) -> GEOSGeometry:
        geometry = super().to_internal_value(value)
        if geometry.geom_type != "Polygon":
            raise serializers.ValidationError(f"Send a Polygon, not a {geometry.geom_type}.")
        if geometry.empty or not geometry.valid:
            raise serializers.ValidationError(
                f"The polygon is invalid ({geometry.valid_reason}); fix the outline (no self-crossing) and resend."
            )
        check_geometry_near_scene(geometry, self.context["scene"])
        return geometry


@extend_schema_field(OpenApiTypes.INT)
class ClassOfSceneField(serializers.Field):
    """A class id of the context scene's project; any other id answers the same "no such class"."""

    def to_internal_value(self, data) -> ObjectClass:
        class_id = _id_field().run_validation(data)
        scene: Scene = self.context["scene"]
        found = ObjectClass.objects.filter(pk=class_id, project_id=scene.project_id).first()
        if found is None:
            raise serializers.ValidationError("No such class in this project; use one of the project's class ids.")
        return found


class ClassAliasMixin:
    """`class` is the documented name of the class field (a Python keyword); `object_class` is accepted too."""

    def to_internal_value(self, data):
        if hasattr(data, "keys") and "class" in data and "object_class" not in data:
            data = {**data, "object_class": data["class"]}
        return super().to_internal_value(data)


class VersionedInputSerializer(serializers.Serializer):
    """Every change carries the version it was made on and a client id."""

    expected_version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    client_id = _client_id_field()
    comment = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class ReviewInputSerializer(ClassAliasMixin, VersionedInputSerializer):
    """POST /api/detections/{id}/review/: accept or reject, optionally fixing class and shape in the same decision."""

    verdict = serializers.ChoiceField(choices=VERDICTS)
    object_class = ClassOfSceneField(required=False, source="object_class_obj")
    geometry = SceneGeometryField(required=False)


class RelabelInputSerializer(ClassAliasMixin, VersionedInputSerializer):
    """POST /api/detections/{id}/relabel/."""

    object_class = ClassOfSceneField(source="object_class_obj")


class ReshapeInputSerializer(VersionedInputSerializer):
    """POST /api/detections/{id}/reshape/."""

    geometry = SceneGeometryField()


class ManualCreateInputSerializer(ClassAliasMixin, serializers.Serializer):
    """POST /api/scenes/{id}/detections/manual/: a missed object, saved accepted."""

    client_id = _client_id_field()
    object_class = ClassOfSceneField(source="object_class_obj")
    geometry = SceneGeometryField()
    comment = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class ManualDeleteInputSerializer(serializers.Serializer):
    """DELETE /api/detections/{id}/manual/?expected_version=&client_id=."""

    expected_version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    client_id = _client_id_field()


class UndoInputSerializer(serializers.Serializer):
    """POST /api/review/undo/: the caller's last decision (in `scene` if given), or the event named."""

    client_id = _client_id_field()
    event = _id_field(required=False)
    scene = _id_field(required=False)


class BoundedIdList(serializers.ListField):
    """A list of ids, its length checked before any item is parsed."""

    child = _id_field()

    def to_internal_value(self, data):
        if isinstance(data, list | tuple) and len(data) > BULK_MAX_IDS:
            raise serializers.ValidationError(
                f"At most {BULK_MAX_IDS} ids per request; got {len(data)}. Select by class and score instead."
            )
        return super().to_internal_value(data)


class BulkReviewInputSerializer(ClassAliasMixin, serializers.Serializer):
    """POST /api/scenes/{id}/detections/bulk-review/: by ids, or by class and a score bound (proposed only)."""

    verdict = serializers.ChoiceField(choices=VERDICTS)
    client_id = _client_id_field()
    comment = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)
    ids = BoundedIdList(required=False, allow_empty=False)
    object_class = ClassOfSceneField(required=False, source="object_class_obj")
    score_min = serializers.FloatField(required=False, min_value=0.0, max_value=1.0, help_text="score >= this")
    score_max = serializers.FloatField(required=False, min_value=0.0, max_value=1.0, help_text="score < this")

    def validate_score_min(self, value: float) -> float:
        return _finite(value, "score_min")

    def validate_score_max(self, value: float) -> float:
        return _finite(value, "score_max")

    def validate(self, attrs: dict) -> dict:
        """Ids, or a filter: never both, never neither."""
        has_filter = any(k in attrs for k in ("object_class_obj", "score_min", "score_max"))
        if ("ids" in attrs) == has_filter:
            raise serializers.ValidationError(
                "Send either `ids`, or a filter (`class` and/or `score_min` / `score_max`), not both or neither."
            )
        return attrs


class QueueQuerySerializer(serializers.Serializer):
    """GET /api/scenes/{id}/review-queue/?after=&order=&direction=&threshold=&limit=."""

    after = _id_field(required=False, help_text="a detection id; the queue continues after it")
    order = serializers.ChoiceField(choices=QueueOrder.CHOICES, default=QueueOrder.SCORE)
    direction = serializers.ChoiceField(choices=("next", "previous"), default="next")
    threshold = serializers.FloatField(default=0.5, min_value=0.0, max_value=1.0)
    limit = serializers.IntegerField(default=1, min_value=1, max_value=100)

    def validate_threshold(self, value: float) -> float:
        return _finite(value, "threshold")


class EventsQuerySerializer(serializers.Serializer):
    """GET .../events/?since=&user=&limit=."""

    since = serializers.IntegerField(default=0, min_value=0, max_value=MAX_ID, help_text="the last event id seen")
    user = _id_field(required=False)
    limit = serializers.IntegerField(default=500, min_value=1, max_value=1000)


class ReviewEventSerializer(serializers.ModelSerializer):
    """A review event as the API shows it (geometries as GeoJSON)."""

    actor_name = serializers.SerializerMethodField()
    # "" where there is no state: before a drawn object was created, after it was deleted.
    status_before = serializers.ChoiceField(choices=STATUS_OR_NONE, read_only=True)
    status_after = serializers.ChoiceField(choices=STATUS_OR_NONE, read_only=True)
    geometry_before = serializers.SerializerMethodField()
    geometry_after = serializers.SerializerMethodField()

    class Meta:
        model = ReviewEvent
        fields = [
            "id", "detection", "project", "scene", "actor", "actor_name", "created_at", "verb", "status_before",
            "status_after", "class_before", "class_after", "geometry_before", "geometry_after", "comment",
            "client_id", "batch_id", "version_after", "undoes",
        ]
        read_only_fields = fields

    def get_actor_name(self, obj) -> str | None:
        return obj.actor.get_username() if obj.actor else None

    @extend_schema_field({**POLYGON_SCHEMA, "nullable": True})
    def get_geometry_before(self, obj) -> dict | None:
        return _geojson(obj.geometry_before)

    @extend_schema_field({**POLYGON_SCHEMA, "nullable": True})
    def get_geometry_after(self, obj) -> dict | None:
        return _geojson(obj.geometry_after)


def _geojson(geometry) -> dict | None:
    """A geometry as a GeoJSON dict."""
    return json.loads(geometry.geojson) if geometry is not None else None


class DecisionOutputSerializer(serializers.Serializer):
    """What a change answers: its events and the detection now (null once deleted)."""

    events = ReviewEventSerializer(many=True)
    detection = DetectionSerializer(allow_null=True)


class UndoOutputSerializer(serializers.Serializer):
    """The undo events (several for a bulk action)."""

    events = ReviewEventSerializer(many=True)


class BulkOutputSerializer(serializers.Serializer):
    """A bulk decision: its batch id (null when nothing matched), how many and which detections."""

    batch_id = serializers.UUIDField(allow_null=True)
    count = serializers.IntegerField()
    detections = serializers.ListField(child=serializers.IntegerField())


class DetectionCollectionSerializer(serializers.Serializer):
    """Detections as a GeoJSON FeatureCollection: what `DetectionSerializer(many=True)` writes."""

    type = serializers.ChoiceField(choices=["FeatureCollection"])
    features = DetectionSerializer(many=True)


class QueueOutputSerializer(serializers.Serializer):
    """The next (or previous) proposed detections, a GeoJSON FeatureCollection."""

    order = serializers.CharField()
    detections = DetectionCollectionSerializer()


class EventsPageSerializer(serializers.Serializer):
    """Events after a cursor; ask again with `since=cursor` while `more`."""

    events = ReviewEventSerializer(many=True)
    cursor = serializers.IntegerField(allow_null=True)
    more = serializers.BooleanField()


class ClassProgressSerializer(serializers.Serializer):
    """Counts of one class per status."""

    object_class = serializers.IntegerField()
    class_name = serializers.CharField()
    proposed = serializers.IntegerField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()


class ProgressOutputSerializer(serializers.Serializer):
    """A scene's counts per status and class, and the caller's own decisions per verb."""

    scene = serializers.IntegerField()
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_class = ClassProgressSerializer(many=True)
    mine = serializers.DictField(child=serializers.IntegerField())


class ClassHistogramSerializer(serializers.Serializer):
    """One class: proposed counts per score bin (bin i is [i/bins, (i+1)/bins), the last includes 1.0)."""

    object_class = serializers.IntegerField()
    class_name = serializers.CharField()
    proposed = serializers.ListField(child=serializers.IntegerField())
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()


class ScoreHistogramSerializer(serializers.Serializer):
    """A scene's score histogram per class, for the per-class score slider (summed from a bin edge up)."""

    bins = serializers.IntegerField()
    classes = ClassHistogramSerializer(many=True)
