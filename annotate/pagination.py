"""Pagination: page numbers with a client-chosen page size (capped)."""

from rest_framework.pagination import PageNumberPagination
from rest_framework_gis.pagination import GeoJsonPagination


class PagePagination(PageNumberPagination):
    """`?page=N&page_size=M` (M at most 1000)."""

    page_size_query_param = "page_size"
    max_page_size = 1000


class FeaturePagination(GeoJsonPagination):
    """A FeatureCollection page: `?page=N&page_size=M` (M at most 5000)."""

    page_size = 500
    max_page_size = 5000

    def get_paginated_response_schema(self, schema: dict) -> dict:
        """A FeatureCollection whose `features` is the list of Features, with every member present."""
        paginated = super().get_paginated_response_schema(schema)
        # `schema` is the list serializer's FeatureCollection ("...List"); the stock schema nests it whole
        # under `features` where the page writes its Features.
        ref = schema.get("$ref", "")
        if ref.endswith("List"):
            paginated["properties"]["features"] = {"type": "array", "items": {"$ref": ref.removesuffix("List")}}
        paginated["required"] = ["type", "count", "next", "previous", "features"]
        return paginated
