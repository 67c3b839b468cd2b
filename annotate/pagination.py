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
