"""Input and output of a scene's display settings (fill value, stretch), validated here and nowhere below."""

import math

from rest_framework import serializers

from .models import Scene
from .services import scene_extent

MAX_BANDS = 64


class FiniteFloatField(serializers.FloatField):
    """A float that is a real number: NaN and infinities are refused with a message."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            raise serializers.ValidationError("Must be a finite number (not NaN or Infinity).")
        return value


class SceneDisplayInputSerializer(serializers.Serializer):
    """PATCH body: `nodata` (a number; null: none) and `stretch` ([low, high] per COG band; null: automatic)."""

    nodata = FiniteFloatField(required=False, allow_null=True)
    stretch = serializers.ListField(
        child=serializers.ListField(child=FiniteFloatField(), min_length=2, max_length=2),
        required=False,
        allow_null=True,
        min_length=1,
        max_length=MAX_BANDS,
    )

    def validate_stretch(self, value):
        """Each band's low must be below its high."""
        if value is not None:
            for band, (low, high) in enumerate(value, start=1):
                if not low < high:
                    raise serializers.ValidationError(
                        f"Band {band}: low ({low:g}) must be below high ({high:g}); give [low, high] per band."
                    )
        return value

    def validate(self, attrs):
        """At least one setting."""
        if not attrs:
            raise serializers.ValidationError("Give `nodata`, `stretch` or both (null resets either).")
        return attrs


class SceneDisplaySerializer(serializers.ModelSerializer):
    """How a scene is drawn and what to know about it: the stretch in use, the automatic one, warnings, extent."""

    stretch_is_custom = serializers.SerializerMethodField()
    extent = serializers.SerializerMethodField()

    class Meta:
        model = Scene
        fields = ["id", "dtype", "band_count", "rgb_bands", "nodata", "stretch", "stretch_auto", "stretch_is_custom",
                  "warnings", "extent", "updated_at"]
        read_only_fields = fields

    def get_stretch_is_custom(self, obj) -> bool:
        """Whether a manager's stretch replaces the measured one."""
        return obj.stretch_auto is not None and obj.stretch != obj.stretch_auto

    def get_extent(self, obj) -> list[float] | None:
        """[west, south, east, north] in degrees; east > 180 for a scene across the antimeridian."""
        return scene_extent(obj)
