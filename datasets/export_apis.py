"""Export API: the project's exports (list, start), saved definitions (run again, delete), the zip download."""

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate.permissions import Action, require
from gpu_tasks.models import Job, JobKind

from . import export_services
from .export_options import ExportRequestSerializer
from .export_serializers import ExportDefinitionSerializer, ExportListSerializer, ExportStartedSerializer
from .export_types import CHIP_FORMATS, FORMATS
from .models import ExportDefinition


def _last_jobs(definitions) -> dict:
    """Each definition's latest run (one query)."""
    ids = [d.pk for d in definitions]
    jobs = {}
    for job in Job.objects.filter(kind=JobKind.EXPORT, params__definition_id__in=ids).order_by("queued_at"):
        jobs[job.params.get("definition_id")] = job
    return jobs


def _started(job, definition) -> Response:
    data = {"job": job, "definition": definition}
    context = {"last_jobs": {definition.pk: job}} if definition else {}
    return Response(ExportStartedSerializer(data, context=context).data, status=status.HTTP_202_ACCEPTED)


class ExportListApi(APIView):
    """GET the formats, saved exports and recent export jobs; POST an export request (flat JSON): its job (202)."""

    @extend_schema(responses={200: ExportListSerializer})
    def get(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        definitions = list(ExportDefinition.objects.filter(project=project).select_related("created_by"))
        data = {
            "formats": [{"key": k, "label": v, "chips": k in CHIP_FORMATS} for k, v in FORMATS.items()],
            "definitions": definitions,
            "exports": list(export_services.recent_exports(project)),
        }
        return Response(ExportListSerializer(data, context={"last_jobs": _last_jobs(definitions)}).data)

    @extend_schema(request=ExportRequestSerializer, responses={202: ExportStartedSerializer})
    def post(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        role = annotate_selectors.role_of(user=request.user, project=project)
        require(role, Action.EXPORT_DATASET)  # who may not export is told so before the input is judged
        job, definition = export_services.export_submit(project=project, user=request.user, role=role,
                                                        data=request.data)
        return _started(job, definition)


def _definition(request, definition_id: int) -> tuple[ExportDefinition, str | None]:
    definition = get_object_or_404(ExportDefinition.objects.select_related("project"), pk=definition_id)
    annotate_selectors.project_get(user=request.user, project_id=definition.project_id)  # 404 to non-members
    return definition, annotate_selectors.role_of(user=request.user, project=definition.project)


class ExportDefinitionApi(APIView):
    """GET a saved export; DELETE it (its creator or a manager)."""

    @extend_schema(responses={200: ExportDefinitionSerializer})
    def get(self, request, definition_id: int):
        definition, _role = _definition(request, definition_id)
        return Response(ExportDefinitionSerializer(definition, context={"last_jobs": _last_jobs([definition])}).data)

    @extend_schema(responses={204: None})
    def delete(self, request, definition_id: int):
        definition, role = _definition(request, definition_id)
        export_services.definition_delete(definition=definition, user=request.user, role=role)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ExportDefinitionRunApi(APIView):
    """POST: run a saved export again (202, its job)."""

    @extend_schema(request=None, responses={202: ExportStartedSerializer})
    def post(self, request, definition_id: int):
        definition, role = _definition(request, definition_id)
        job = export_services.definition_run(definition=definition, user=request.user, role=role)
        return _started(job, definition)


class ExportDownloadApi(APIView):
    """GET a finished export's zip (any member of its project)."""

    @extend_schema(responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request, job_id: int):
        job = get_object_or_404(Job.objects.select_related("project"), pk=job_id)
        project = annotate_selectors.project_get(user=request.user, project_id=job.project_id)
        path = export_services.export_file(job=job)
        # FileResponse closes the file when the response is done.
        return FileResponse(open(path, "rb"), as_attachment=True,  # noqa: SIM115
                            filename=export_services.download_name(project, job), content_type="application/zip")
