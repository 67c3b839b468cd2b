"""Import API: upload a label file (answered with its inspection), read it again, run the import as a job."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate import uploads
from annotate.errors import InsufficientStorage, UploadTooLarge
from annotate.permissions import Action, require
from gpu_tasks.serializers import JobSerializer

from . import import_services
from .import_serializers import ImportRunSerializer, ImportSerializer, ImportUploadSerializer


def _too_large_message() -> str:
    limit_gib = settings.UPLOAD_MAX_BYTES / 1024**3
    return (f"The label file is larger than this server accepts ({limit_gib:.2f} GiB); split it, or import it from "
            "the server with `manage.py import_labels`.")


ImportJobSerializer = inline_serializer("ImportJob", {"job": JobSerializer()})


class ImportUploadApi(APIView):
    """POST a label file (multipart `file`, optional `scene_id`): stored, inspected, answered with the inspection."""

    parser_classes = [MultiPartParser]

    @extend_schema(request=ImportUploadSerializer, responses={201: ImportSerializer})
    def post(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        role = annotate_selectors.role_of(user=request.user, project=project)
        require(role, Action.IMPORT_EXAMPLES)
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.UPLOAD_MAX_BYTES + 1024 * 1024:
            raise UploadTooLarge(_too_large_message())
        uploads.upload_space_require(length)
        form = ImportUploadSerializer(data=request.data)
        if getattr(request._request, "upload_too_large", False):
            raise UploadTooLarge(_too_large_message())
        if getattr(request._request, "upload_no_space", False):
            raise InsufficientStorage(uploads.upload_disk_full_message())
        form.is_valid(raise_exception=True)
        meta = import_services.import_upload(
            project=project, user=request.user, role=role, uploaded=form.validated_data["file"],
            scene_id=form.validated_data.get("scene_id"),
        )
        return Response(ImportSerializer(meta).data, status=status.HTTP_201_CREATED)


class ImportDetailApi(APIView):
    """GET a stored upload and its inspection."""

    @extend_schema(responses={200: ImportSerializer})
    def get(self, request, import_id: str):
        meta, _project = import_services.import_get(user=request.user, import_id=import_id)
        return Response(ImportSerializer(meta).data)


class ImportRunApi(APIView):
    """POST {target: examples | accepted, class_map: {name: class id | "new" | null}}: the import job (202)."""

    @extend_schema(request=ImportRunSerializer, responses={202: ImportJobSerializer})
    def post(self, request, import_id: str):
        _meta, project = import_services.import_get(user=request.user, import_id=import_id)
        role = annotate_selectors.role_of(user=request.user, project=project)
        require(role, Action.IMPORT_EXAMPLES)  # who may not import at all is told so before the input is judged
        form = ImportRunSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = import_services.import_job_submit(
            user=request.user, role=role, import_id=import_id, target=form.validated_data["target"],
            class_map=form.validated_data["class_map"],
        )
        return Response({"job": JobSerializer(job).data}, status=status.HTTP_202_ACCEPTED)
