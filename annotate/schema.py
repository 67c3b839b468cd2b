"""OpenAPI schema fixes for GeoJSON serializers, so the front end's types generated from it are exact."""

from drf_spectacular.contrib.rest_framework_gis import GeoFeatureModelSerializerExtension


def _require_all(schema: dict) -> None:
    """Mark every property of an object schema (and of the objects it nests) as present."""
    properties = schema.get("properties")
    if not properties:
        return
    schema["required"] = list(properties)
    for value in properties.values():
        _require_all(value)


class RequiredFeatureExtension(GeoFeatureModelSerializerExtension):
    """drf-spectacular's GeoJSON Feature with its members required.

    The stock extension drops the `required` list ("ignore this aspect for now"), which types every member of every
    Feature as optional; a Feature the API writes always has `type`, `id`, `geometry` and every property.
    """

    priority = 1  # above the stock extension, which it refines

    def map_geo_feature_model_serializer(self, serializer, base_schema):
        required = list(base_schema.get("required", []))
        schema = super().map_geo_feature_model_serializer(serializer, base_schema)
        schema["required"] = list(schema["properties"])
        _require_all(schema["properties"]["geometry"])
        schema["properties"]["properties"]["required"] = required
        return schema
