"""API representation of jobs and similar-object results, and the input serializers of every job request.

Each job kind's parameters are validated here, once, and passed on as typed values (nothing below re-parses).
"""

import json

from django.conf import settings
from rest_framework import serializers

from annotate.api_errors import validation_message
from annotate.errors import DomainError
from annotate.models import ObjectClass, Scene
from annotate.selectors import bbox_polygon
from annotate.serializers import check_rgb_bands

from .liveness import job_is_stalled
from .models import Job, JobKind, JobStatus
from .visual_search import SearchRequest

# Ids are bigint primary keys; larger numbers are refused here rather than overflow in the database.
MAX_ID = 2**63 - 1
MIN_SCALE = 0.25  # below this a patch covers 56+ native px: objects vanish; bounded so the estimate stays sane


def IdField(**kwargs) -> serializers.IntegerField:  # noqa: N802 - a field factory reads like a field class
    """A positive object id."""
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


class BoundedListField(serializers.ListField):
    """A list whose length is checked (against a setting, read per request) before any item is parsed."""

    def __init__(self, *, max_length_setting: str, **kwargs):
        self.max_length_setting = max_length_setting
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        """Refuse an over-long list at once: 50,000 bad items would otherwise make 50,000 error messages."""
        limit = getattr(settings, self.max_length_setting)
        if isinstance(data, list | tuple) and len(data) > limit:
            raise serializers.ValidationError(
                f"At most {limit} items are accepted ({self.max_length_setting}); got {len(data)}."
            )
        return super().to_internal_value(data)


class IngestInputSerializer(serializers.Serializer):
    """POST /api/scenes/{id}/ingest/: optional RGB bands, checked against the scene's image bands (context)."""

    bands = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=65535), required=False,
                                  allow_null=True, max_length=16)

    def validate_bands(self, value):
        """Three of the scene's bands (its band count is known once it has been read)."""
        return None if value is None else check_rgb_bands(value, self.context.get("data_bands"))


class EmbedInputSerializer(serializers.Serializer):
    """POST /api/scenes/{id}/embed/."""

    scale = serializers.FloatField(required=False, default=1.0, min_value=MIN_SCALE,
                                   help_text="2 = look at the scene enlarged twice (JOB_MAX_SCALE at most)")

    def validate_scale(self, value: float) -> float:
        """Bounded by JOB_MAX_SCALE (tiles grow with its square)."""
        if value > settings.JOB_MAX_SCALE:
            raise serializers.ValidationError(
                f"At most {settings.JOB_MAX_SCALE} (JOB_MAX_SCALE); the work grows with the square of the scale."
            )
        return value


class SearchInputSerializer(EmbedInputSerializer):
    """POST /api/scenes/{id}/search/; context: `scene` (class ids must be classes of its project)."""

    classes = BoundedListField(
        child=IdField(), required=False, max_length_setting="JOB_MAX_CLASSES",
        help_text="class ids of the scene's project; empty = every class with examples",
    )
    thresholds = serializers.DictField(
        child=serializers.FloatField(min_value=-1.0, max_value=1.0), required=False,
        help_text="class id -> minimum score (cosine similarity, -1..1)",
    )
    default_threshold = serializers.FloatField(required=False, default=0.5, min_value=-1.0, max_value=1.0)
    negative_weight = serializers.FloatField(required=False, default=0.5, min_value=0.0, max_value=10.0)
    margin = serializers.FloatField(required=False, default=0.02, min_value=0.0, max_value=2.0)
    max_candidates = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    use_accepted = serializers.BooleanField(required=False, default=True)

    def validate_max_candidates(self, value: int | None) -> int | None:
        """Bounded by JOB_MAX_CANDIDATES."""
        if value is not None and value > settings.JOB_MAX_CANDIDATES:
            raise serializers.ValidationError(f"At most {settings.JOB_MAX_CANDIDATES} (JOB_MAX_CANDIDATES).")
        return value

    def validate_thresholds(self, value: dict) -> dict[int, float]:
        """Keys are class ids (JSON keys are strings), at most JOB_MAX_CLASSES of them."""
        if len(value) > settings.JOB_MAX_CLASSES:
            raise serializers.ValidationError(f"At most {settings.JOB_MAX_CLASSES} classes (JOB_MAX_CLASSES).")
        try:
            parsed = {int(k): float(v) for k, v in value.items()}
        except ValueError as exc:
            raise serializers.ValidationError("Keys must be class ids, for example {\"12\": 0.6}.") from exc
        if any(not 1 <= k <= MAX_ID for k in parsed):
            raise serializers.ValidationError("Keys must be class ids, for example {\"12\": 0.6}.")
        return parsed

    def validate(self, attrs: dict) -> dict:
        """Every class id named must be a class of the scene's project (one answer for foreign and missing)."""
        scene: Scene = self.context["scene"]
        attrs["classes"] = sorted(set(attrs.get("classes") or []))
        named = set(attrs["classes"]) | set(attrs.get("thresholds") or {})
        if named:
            found = ObjectClass.objects.filter(project_id=scene.project_id, pk__in=named)
            known = set(found.values_list("pk", flat=True))
            if unknown := sorted(named - known):
                shown = ", ".join(map(str, unknown[:10])) + (", ..." if len(unknown) > 10 else "")
                raise serializers.ValidationError(
                    {"classes": [f"Not classes of this scene's project: {shown}. List them at "
                                 f"/api/projects/{scene.project_id}/classes/."]}
                )
        return attrs

    def search_request(self) -> SearchRequest:
        """The validated request as the typed value the search job takes."""
        data = self.validated_data
        return SearchRequest(
            classes=list(data["classes"]),
            thresholds=dict(data.get("thresholds") or {}),
            default_threshold=data["default_threshold"],
            scale=data["scale"],
            negative_weight=data["negative_weight"],
            margin=data["margin"],
            max_candidates=data["max_candidates"],
            use_accepted=data["use_accepted"],
        )


def search_request_from_dict(params: dict, *, scene: Scene) -> SearchRequest:
    """Validate search params given as a dict (commands, tests); DomainError naming the bad fields."""
    form = SearchInputSerializer(data=params, context={"scene": scene})
    if not form.is_valid():
        raise DomainError(validation_message(form.errors), detail=form.errors)
    return form.search_request()


class RequeryInputSerializer(SearchInputSerializer):
    """POST /api/scenes/{id}/update-proposals/ (body optional); context: `scene`.

    Every field is optional and replaces the last search's value only when given; the scale is the cached grid's.
    """

    scale = None  # the grid's own: an update never embeds
    default_threshold = serializers.FloatField(required=False, min_value=-1.0, max_value=1.0)
    negative_weight = serializers.FloatField(required=False, min_value=0.0, max_value=10.0)
    margin = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    max_candidates = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    use_accepted = serializers.BooleanField(required=False)

    def validate(self, attrs: dict) -> dict:
        """As a search's, but classes not given stay unset (the last search's are kept, not replaced by "all")."""
        if isinstance(self.initial_data, dict) and "scale" in self.initial_data:
            raise serializers.ValidationError(
                {"scale": ["An update re-uses the cached grid at its own scale; run a search for another scale."]}
            )
        given_classes = "classes" in attrs
        attrs = super().validate(attrs)
        if not given_classes:
            attrs.pop("classes")
        return attrs

    def overrides(self) -> dict:
        """The given fields, as SearchRequest field values."""
        data = dict(self.validated_data)
        if "thresholds" in data:
            data["thresholds"] = dict(data["thresholds"])
        return data


class RefineInputSerializer(serializers.Serializer):
    """POST /api/scenes/{id}/refine/."""

    detections = BoundedListField(
        child=IdField(), required=False, max_length_setting="JOB_MAX_REFINE_BOXES",
        help_text="detection ids; empty = every proposed detection",
    )
    reverify = serializers.BooleanField(required=False, default=True)


class JobFilterSerializer(serializers.Serializer):
    """GET /api/jobs/ query parameters."""

    project = IdField(required=False)
    scene = IdField(required=False)
    kind = serializers.ChoiceField(choices=JobKind.choices, required=False)
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)


class SimilarQuerySerializer(serializers.Serializer):
    """GET /api/projects/{id}/similar/ query parameters."""

    annotation = IdField(required=False)
    detection = IdField(required=False)
    k = serializers.IntegerField(required=False, default=20, min_value=1, max_value=200)
    scene = IdField(required=False)
    bbox = serializers.CharField(required=False, max_length=200, help_text="minlon,minlat,maxlon,maxlat")

    def validate_bbox(self, value: str):
        """An EPSG:4326 polygon."""
        try:
            return bbox_polygon(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs: dict) -> dict:
        """Exactly one of annotation or detection."""
        if ("annotation" in attrs) == ("detection" in attrs):
            raise serializers.ValidationError("Give exactly one of annotation=ID or detection=ID.")
        return attrs


class JobSerializer(serializers.ModelSerializer):
    """A job's status, progress and outcome; `stalled` is a running job whose worker stopped reporting."""

    stalled = serializers.SerializerMethodField()
    # JSON objects (the model's JSONFields would be typed "any value").
    params = serializers.DictField(read_only=True)
    result = serializers.DictField(read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "scene",
            "kind",
            "status",
            "stalled",
            "progress",
            "message",
            "error",
            "params",
            "result",
            "created_by",
            "queued_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "cancel_requested",
            "attempts",
        ]
        read_only_fields = fields

    def get_stalled(self, obj) -> bool:
        return job_is_stalled(obj)


class SimilarObjectSerializer(serializers.Serializer):
    """One object found by similarity: what it is, where, and how close (cosine similarity, 1 = same)."""

    kind = serializers.SerializerMethodField()
    id = serializers.SerializerMethodField()
    scene = serializers.IntegerField(source="scene_id")
    object_class = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    similarity = serializers.SerializerMethodField()
    geometry = serializers.SerializerMethodField()

    def _owner(self, obj):
        return obj.annotation or obj.detection

    def get_kind(self, obj) -> str:
        return "annotation" if obj.annotation_id else "detection"

    def get_id(self, obj) -> int:
        return obj.annotation_id or obj.detection_id

    def get_object_class(self, obj) -> int:
        return self._owner(obj).object_class_id

    def get_status(self, obj) -> str:
        return "example" if obj.annotation_id else obj.detection.status

    def get_similarity(self, obj) -> float:
        return round(1.0 - float(obj.distance), 6)

    def get_geometry(self, obj) -> dict:
        return json.loads(self._owner(obj).geometry.geojson)
