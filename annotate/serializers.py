"""API representations of the domain core (GeoJSON for geometries)."""

import json

from rest_framework import serializers
from rest_framework_gis.fields import GeometryField
from rest_framework_gis.serializers import GeoFeatureModelSerializer

from .models import Annotation, Detection, Membership, ObjectClass, Project, Scene


class Wgs84GeometryField(GeometryField):
    """GeoJSON geometry in EPSG:4326; a `crs` member is dropped so no user spatial reference reaches GDAL."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise serializers.ValidationError("Geometry must be GeoJSON.") from exc
        if not isinstance(value, dict) or "type" not in value or "coordinates" not in value:
            raise serializers.ValidationError("Geometry must be a GeoJSON geometry with type and coordinates.")
        value = {"type": value["type"], "coordinates": value["coordinates"]}
        geometry = super().to_internal_value(value)
        geometry.srid = 4326
        return geometry


class MembershipSerializer(serializers.ModelSerializer):
    """A member and their role."""

    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user", "username", "role"]


class ProjectSerializer(serializers.ModelSerializer):
    """A project with its members; `my_role` is the caller's role."""

    members = MembershipSerializer(source="memberships", many=True, read_only=True)
    my_role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_at", "members", "my_role"]
        read_only_fields = ["created_at"]

    def get_my_role(self, obj) -> str | None:
        """The requesting user's role."""
        user = self.context["request"].user
        return next((m.role for m in obj.memberships.all() if m.user_id == user.pk), None)


class ObjectClassSerializer(serializers.ModelSerializer):
    """A class; `index` is assigned by the server and never changes."""

    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False)

    class Meta:
        model = ObjectClass
        fields = ["id", "project", "name", "color", "index"]
        read_only_fields = ["project", "index"]


class SceneSerializer(serializers.ModelSerializer):
    """A scene with its footprint (GeoJSON, EPSG:4326) and metadata."""

    footprint = serializers.SerializerMethodField()
    tile_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Scene
        fields = [
            "id", "project", "name", "original_name", "status", "error", "footprint", "crs", "geotransform",
            "width", "height", "band_count", "dtype", "gsd_m", "rgb_bands", "stretch", "min_zoom", "max_zoom",
            "tile_url", "thumbnail_url", "created_at", "updated_at",
        ]
        read_only_fields = fields

    def get_footprint(self, obj) -> dict | None:
        """Footprint as a GeoJSON geometry."""
        return json.loads(obj.footprint.geojson) if obj.footprint else None

    def get_tile_url(self, obj) -> str | None:
        """XYZ template for map clients."""
        return f"/api/scenes/{obj.pk}/tiles/{{z}}/{{x}}/{{y}}.png" if obj.status == "ready" else None

    def get_thumbnail_url(self, obj) -> str | None:
        """A small preview image."""
        return f"/api/scenes/{obj.pk}/thumbnail.png" if obj.status == "ready" else None


class SceneUploadSerializer(serializers.Serializer):
    """A multipart upload: the GeoTIFF, an optional name and optional RGB bands like `3,2,1`."""

    file = serializers.FileField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    bands = serializers.RegexField(r"^\s*\d+\s*,\s*\d+\s*,\s*\d+\s*$", required=False, allow_blank=True)


class AnnotationSerializer(GeoFeatureModelSerializer):
    """An example polygon as a GeoJSON Feature."""

    class_name = serializers.CharField(source="object_class.name", read_only=True)
    author_name = serializers.CharField(source="author.username", read_only=True, default=None)
    geometry = Wgs84GeometryField()

    class Meta:
        model = Annotation
        geo_field = "geometry"
        fields = ["id", "scene", "object_class", "class_name", "author", "author_name", "created_at"]
        read_only_fields = ["author", "created_at"]


class DetectionSerializer(GeoFeatureModelSerializer):
    """A detection as a GeoJSON Feature (geometry is the polygon; `bbox` is its box)."""

    class_name = serializers.CharField(source="object_class.name", read_only=True)

    class Meta:
        model = Detection
        geo_field = "geometry"
        fields = [
            "id", "scene", "object_class", "class_name", "score", "source", "status", "version", "reviewer",
            "reviewed_at", "job", "model_key", "created_at",
        ]
        read_only_fields = fields
