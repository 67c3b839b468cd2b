"""API representations of the domain core (GeoJSON for geometries)."""

import json

from django.conf import settings
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.http import Http404
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework_gis.fields import GeometryField
from rest_framework_gis.serializers import GeoFeatureModelSerializer

from . import selectors, services
from .errors import DomainError
from .models import Annotation, Detection, Membership, ObjectClass, Project, Scene
from .uploads import raster_data_bands

# GeoJSON types whose coordinates are one position, a list of them, or deeper lists.
_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}


def _positions(coordinates, depth: int) -> list:
    """The positions of GeoJSON coordinates nested `depth` lists deep; ValidationError when malformed."""
    if depth == 0:
        return [coordinates]
    if not isinstance(coordinates, list):
        raise serializers.ValidationError("Geometry coordinates are malformed: expected nested lists of positions.")
    found = []
    for part in coordinates:
        found.extend(_positions(part, depth - 1))
        if len(found) > settings.API_MAX_VERTICES:
            raise serializers.ValidationError(
                f"The geometry has more than {settings.API_MAX_VERTICES:,} vertices (API_MAX_VERTICES); "
                "simplify it first."
            )
    return found


def check_geojson_coordinates(value: dict) -> None:
    """2D positions of finite numbers within longitude [-180, 180] and latitude [-90, 90], at most API_MAX_VERTICES.

    Checked on the raw JSON, before GEOS parses it, so a huge or odd payload costs nothing below.
    """
    depth = _DEPTH.get(value.get("type"))
    if depth is None:
        raise serializers.ValidationError(f"Unsupported geometry type {value.get('type')!r}; send a Polygon.")
    for position in _positions(value["coordinates"], depth):
        if not isinstance(position, list) or len(position) < 2:
            raise serializers.ValidationError("Each position must be [longitude, latitude].")
        if len(position) > 2:
            # Refused rather than silently flattened: a height means the client sent something else than asked.
            raise serializers.ValidationError(
                "Positions must be 2D [longitude, latitude]; this geometry has a third value (height/Z). "
                "Drop it (for example `ogr2ogr -dim XY`) and send it again."
            )
        lon, lat = position
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lon, lat)):
            raise serializers.ValidationError("Coordinates must be numbers: [longitude, latitude].")
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise serializers.ValidationError(
                f"Position [{lon}, {lat}] is outside longitude -180..180 / latitude -90..90; coordinates are "
                "EPSG:4326 [longitude, latitude], in that order."
            )


def check_geometry_near_scene(geometry: GEOSGeometry, scene: Scene) -> None:
    """The geometry must touch the scene and its envelope be at most API_MAX_EXTENT_RATIO x the scene's."""
    if scene.footprint is None:
        return
    if not scene.footprint.intersects(geometry):
        raise serializers.ValidationError("The geometry lies outside the scene's footprint; draw it on the scene.")
    scene_area = Polygon.from_bbox(scene.footprint.extent).area
    if scene_area > 0 and Polygon.from_bbox(geometry.extent).area > settings.API_MAX_EXTENT_RATIO * scene_area:
        raise serializers.ValidationError(
            f"The geometry spans more than {settings.API_MAX_EXTENT_RATIO} times the scene's extent "
            "(API_MAX_EXTENT_RATIO); an example should outline one object on the scene."
        )


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
        check_geojson_coordinates(value)
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
        # The model's unique validator would say "project with this name already exists" only when someone
        # else's project has it: an oracle for names a user cannot see. validate_name answers the same always.
        extra_kwargs = {"name": {"validators": []}}

    def validate_name(self, value: str) -> str:
        """Names are unique across the server; a clash is told the same whoever holds the name."""
        taken = Project.objects.filter(name=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError(
                "This name cannot be used: it already exists or is reserved on this server. Choose another name."
            )
        return value

    def get_my_role(self, obj) -> str | None:
        """The requesting user's role."""
        user = self.context["request"].user
        return next((m.role for m in obj.memberships.all() if m.user_id == user.pk), None)


class ObjectClassSerializer(serializers.ModelSerializer):
    """A class; `index` is assigned by the server and never changes; `position` is its place in lists (0 first)."""

    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False)

    class Meta:
        model = ObjectClass
        fields = ["id", "project", "name", "color", "index", "position"]
        read_only_fields = ["project", "index", "position"]


_RINGS = {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}
# A scene's footprint: a Polygon, or a MultiPolygon when it is split at 180 degrees.
FOOTPRINT_SCHEMA = {
    "nullable": True,
    "oneOf": [
        {"type": "object", "required": ["type", "coordinates"],
         "properties": {"type": {"type": "string", "enum": ["Polygon"]}, "coordinates": _RINGS}},
        {"type": "object", "required": ["type", "coordinates"],
         "properties": {"type": {"type": "string", "enum": ["MultiPolygon"]},
                        "coordinates": {"type": "array", "items": _RINGS}}},
    ],
}


class SceneSerializer(serializers.ModelSerializer):
    """A scene with its footprint (GeoJSON, EPSG:4326) and metadata."""

    footprint = serializers.SerializerMethodField()
    tile_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Scene
        fields = [
            "id", "project", "name", "original_name", "status", "error", "footprint", "crs", "geotransform",
            "width", "height", "band_count", "dtype", "gsd_m", "rgb_bands", "stretch", "nodata", "warnings", "min_zoom",
            "max_zoom", "tile_url", "thumbnail_url", "created_at", "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(FOOTPRINT_SCHEMA)
    def get_footprint(self, obj) -> dict | None:
        """Footprint as a GeoJSON geometry."""
        return json.loads(obj.footprint.geojson) if obj.footprint else None

    def get_tile_url(self, obj) -> str | None:
        """XYZ template for map clients."""
        return f"/api/scenes/{obj.pk}/tiles/{{z}}/{{x}}/{{y}}.png" if obj.status == "ready" else None

    def get_thumbnail_url(self, obj) -> str | None:
        """A small preview image."""
        return f"/api/scenes/{obj.pk}/thumbnail.png" if obj.status == "ready" else None


def check_rgb_bands(bands: list[int], data_bands: tuple[int, ...] | None) -> list[int]:
    """Three band numbers among the raster's image bands; a ValidationError stating the valid range."""
    if len(bands) != 3:
        raise serializers.ValidationError(
            f"Give exactly three band numbers for red, green and blue, for example [3, 2, 1] (got {len(bands)})."
        )
    if data_bands and any(b not in data_bands for b in bands):
        contiguous = tuple(range(1, len(data_bands) + 1)) == tuple(data_bands)
        valid = f"1 to {len(data_bands)}" if contiguous else ", ".join(map(str, data_bands))
        raise serializers.ValidationError(
            f"Bands {bands} are not all bands of this raster: it has {len(data_bands)} image band"
            f"{'s' if len(data_bands) != 1 else ''}; choose three of {valid} (repeats allowed, e.g. [1, 1, 1])."
        )
    return list(bands)


class SceneUploadSerializer(serializers.Serializer):
    """A multipart upload: the GeoTIFF, an optional name and optional RGB bands like `3,2,1`.

    Bands are checked against the file's header when it can be read, so impossible bands are refused now.
    """

    file = serializers.FileField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=255)
    bands = serializers.RegexField(
        r"^\s*\d{1,5}\s*,\s*\d{1,5}\s*,\s*\d{1,5}\s*$",
        required=False,
        allow_blank=True,
        error_messages={"invalid": "Give three band numbers for red, green and blue, like 3,2,1."},
    )

    def validate_bands(self, value: str) -> list[int] | None:
        """`3,2,1` -> [3, 2, 1] (band 0 does not exist: bands count from 1)."""
        if not value:
            return None
        bands = [int(v) for v in value.split(",")]
        if min(bands) < 1:
            raise serializers.ValidationError("Bands count from 1; band 0 does not exist.")
        return bands

    def validate(self, attrs: dict) -> dict:
        """Bands among the uploaded file's image bands (its header is read; pixels are not)."""
        if attrs.get("bands"):
            path = getattr(attrs["file"], "temporary_file_path", lambda: None)()
            try:
                check_rgb_bands(attrs["bands"], raster_data_bands(path))
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"bands": exc.detail}) from exc
        return attrs


class AnnotationInputSerializer(serializers.Serializer):
    """POST /api/annotations/: a GeoJSON Feature, properties `scene` and `object_class`; context: `request`.

    The scene and the class are looked up among the caller's projects only: another project's and a missing
    one get the same 404. The polygon must be valid, touch the scene and not dwarf it.
    """

    scene = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    object_class = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    geometry = Wgs84GeometryField()

    def to_internal_value(self, data):
        """Accept a Feature (properties beside the geometry) as the map sends it."""
        if isinstance(data, dict) and isinstance(data.get("properties"), dict):
            data = {**data["properties"], "geometry": data.get("geometry")}
        return super().to_internal_value(data)

    def validate(self, attrs: dict) -> dict:
        """Resolve scene and class within the caller's projects (404 otherwise) and check the polygon on the scene."""
        user = self.context["request"].user
        attrs["scene"] = selectors.scene_get(user=user, scene_id=attrs["scene"])
        attrs["object_class"] = selectors.class_list(user=user).filter(pk=attrs["object_class"]).first()
        if attrs["object_class"] is None:
            raise Http404
        if attrs["object_class"].project_id != attrs["scene"].project_id:
            raise serializers.ValidationError({"object_class": ["The class belongs to another of your projects."]})
        attrs["geometry"] = services.valid_polygon(attrs["geometry"])
        try:
            check_geometry_near_scene(attrs["geometry"], attrs["scene"])
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"geometry": exc.detail}) from exc
        return attrs


@extend_schema_field(
    {
        "type": "object",
        "description": "GeoJSON Polygon in EPSG:4326, 2D [longitude, latitude]",
        "properties": {"type": {"type": "string", "enum": ["Polygon"]}, "coordinates": {"type": "array"}},
        "required": ["type", "coordinates"],
    }
)
class Wgs84PolygonInputField(Wgs84GeometryField):
    """An input polygon in EPSG:4326 (documented as GeoJSON in the OpenAPI schema)."""


class AnnotationUpdateInputSerializer(serializers.Serializer):
    """PATCH /api/annotations/{id}/: a new `object_class` and/or `geometry` (a Feature's properties count too).

    Context: `annotation`. The class must be of the example's project (any other id answers the same "no such
    class"); the polygon is checked as on create.
    """

    object_class = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    geometry = Wgs84PolygonInputField(required=False)

    def to_internal_value(self, data):
        """Accept a Feature (properties beside the geometry) as the map sends it."""
        if isinstance(data, dict) and isinstance(data.get("properties"), dict):
            data = {**data["properties"], **({"geometry": data["geometry"]} if data.get("geometry") else {})}
        return super().to_internal_value(data)

    def validate_object_class(self, value: int) -> ObjectClass:
        scene = self.context["annotation"].scene
        found = ObjectClass.objects.filter(pk=value, project_id=scene.project_id).first()
        if found is None:
            raise serializers.ValidationError("No such class in this project; use one of the project's class ids.")
        return found

    def validate_geometry(self, value: GEOSGeometry) -> Polygon:
        try:
            polygon = services.valid_polygon(value)
        except DomainError as exc:
            raise serializers.ValidationError(exc.message) from exc
        check_geometry_near_scene(polygon, self.context["annotation"].scene)
        return polygon

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Send `object_class` and/or `geometry` to change.")
        return attrs


class AnnotationSerializer(GeoFeatureModelSerializer):
    """An example polygon as a GeoJSON Feature."""

    class_name = serializers.CharField(source="object_class.name", read_only=True)
    author_name = serializers.CharField(source="author.username", read_only=True, default=None, allow_null=True)
    geometry = Wgs84GeometryField()

    class Meta:
        model = Annotation
        geo_field = "geometry"
        fields = ["id", "scene", "object_class", "class_name", "author", "author_name", "created_at"]
        read_only_fields = ["author", "created_at"]


class DatabaseGeoJsonField(GeometryField):
    """A geometry the database already wrote as GeoJSON (`<field>_geojson`, from AsGeoJSON) when the queryset has it.

    GEOS -> OGR -> JSON text -> dict in Python cost about 1 ms per detection; PostGIS writes it in microseconds.
    """

    def get_attribute(self, instance):
        text = getattr(instance, f"{self.source}_geojson", None)
        return json.loads(text) if text is not None else super().get_attribute(instance)


class DetectionSerializer(GeoFeatureModelSerializer):
    """A detection as a GeoJSON Feature (geometry is the polygon; `bbox` is its box)."""

    class_name = serializers.CharField(source="object_class.name", read_only=True)
    geometry = DatabaseGeoJsonField(read_only=True)

    class Meta:
        model = Detection
        geo_field = "geometry"
        fields = [
            "id", "scene", "object_class", "class_name", "score", "source", "status", "version", "reviewer",
            "reviewed_at", "job", "model_key", "proposer", "model_version", "proposer_scores", "created_at",
        ]
        read_only_fields = fields


class MyMembershipSerializer(serializers.Serializer):
    """GET/PATCH /api/projects/{id}/me/: the caller's role and the class they last drew with (null: none)."""

    role = serializers.CharField(read_only=True)
    last_class = serializers.IntegerField(
        source="last_class_id", allow_null=True, min_value=1, max_value=2**63 - 1,
        help_text="a class id of this project, or null to forget",
    )

    def validate_last_class(self, value: int | None) -> ObjectClass | None:
        if value is None:
            return None
        found = ObjectClass.objects.filter(pk=value, project_id=self.context["membership"].project_id).first()
        if found is None:
            raise serializers.ValidationError("No such class in this project; use one of the project's class ids.")
        return found
