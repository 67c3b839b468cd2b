"""Analytics endpoints: the figures for any member, the event CSV for managers."""

from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate.permissions import Action, require

from .analytics import AnalyticsFilter, review_analytics
from .analytics_export import csv_lines
from .analytics_serializers import AnalyticsQuerySerializer, AnalyticsSerializer


def _filters(request, project_id: int) -> AnalyticsFilter:
    """The project (404 unless the caller is a member) and the validated query (400 naming what to fix)."""
    project = annotate_selectors.project_get(user=request.user, project_id=project_id)
    query = AnalyticsQuerySerializer(data=request.query_params.dict(), context={"project": project})
    query.is_valid(raise_exception=True)
    return AnalyticsFilter(project=project, **query.validated_data)


class ProjectAnalyticsApi(APIView):
    """Decisions per reviewer per hour, time per decision, accept rates per class and source, disagreements."""

    @extend_schema(parameters=[AnalyticsQuerySerializer], responses=AnalyticsSerializer)
    def get(self, request, project_id: int):
        return Response(review_analytics(filters=_filters(request, project_id)))


class ProjectEventsCsvApi(APIView):
    """Every review event of the project (and scene, and time range) as CSV, for managers."""

    # Errors answer JSON whatever the client accepts (a browser download asks for anything).
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        parameters=[AnalyticsQuerySerializer],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="one row per event")},
    )
    def get(self, request, project_id: int):
        filters = _filters(request, project_id)
        require(annotate_selectors.role_of(user=request.user, project=filters.project), Action.EXPORT_EVENTS)
        name = slugify(filters.project.name) or f"project-{filters.project.pk}"
        if filters.scene is not None:
            name += f"-{slugify(filters.scene.name) or filters.scene.pk}"
        response = StreamingHttpResponse(csv_lines(filters=filters), content_type="text/csv; charset=utf-8")
        filename = f"{name}-events-{timezone.now().date().isoformat()}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response
