"""Endpoints that start jobs (scene upload and re-ingest) and read jobs."""

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate import services as annotate_services
from annotate.errors import DomainError, UploadTooLarge
from annotate.permissions import Action, require
from annotate.serializers import SceneSerializer, SceneUploadSerializer

from . import selectors, services
from .serializers import JobSerializer


def _parse_bands(value: str | None) -> list[int] | None:
    """`3,2,1` -> [3, 2, 1]."""
    return [int(v) for v in value.split(",")] if value else None


def _too_large_message() -> str:
    limit_gib = settings.UPLOAD_MAX_BYTES / 1024**3
    return (
        f"The upload is larger than this server accepts ({limit_gib:.2f} GiB). Split the scene, or ask the "
        "administrator to raise UPLOAD_MAX_BYTES; a local file can also be ingested with "
        "`manage.py ingest_scene PATH --project NAME`."
    )


SceneJobSerializer = inline_serializer("SceneJob", {"scene": SceneSerializer(), "job": JobSerializer()})


class SceneUploadApi(APIView):
    """POST a GeoTIFF (multipart `file`, optional `name`, `bands` like `3,2,1`): a scene and its ingest job."""

    parser_classes = [MultiPartParser]

    @extend_schema(request=SceneUploadSerializer, responses={202: SceneJobSerializer})
    def post(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        role = annotate_selectors.role_of(user=request.user, project=project)
        require(role, Action.UPLOAD_SCENE)
        # Refuse before a byte of the body is read when the declared size is already over the limit.
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.UPLOAD_MAX_BYTES + 1024 * 1024:
            raise UploadTooLarge(_too_large_message())
        form = SceneUploadSerializer(data=request.data)
        if getattr(request._request, "upload_too_large", False):
            raise UploadTooLarge(_too_large_message())
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            scene = annotate_services.scene_create_from_upload(
                project=project, user=request.user, role=role, uploaded=form.validated_data["file"],
                name=form.validated_data.get("name", ""),
            )
            job = services.ingest_job_start(
                scene=scene, user=request.user, rgb_bands=_parse_bands(form.validated_data.get("bands"))
            )
        return Response(
            {"scene": SceneSerializer(scene).data, "job": JobSerializer(job).data}, status=status.HTTP_202_ACCEPTED
        )


class SceneIngestApi(APIView):
    """POST to run a scene's ingest again (for example with other RGB bands: `{"bands": [4, 3, 2]}`)."""

    @extend_schema(
        request=inline_serializer("IngestRequest", {"bands": serializers.ListField(child=serializers.IntegerField(),
                                                                                  required=False)}),
        responses={202: JobSerializer},
    )
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        require(annotate_selectors.role_of(user=request.user, project=scene.project), Action.UPLOAD_SCENE)
        bands = request.data.get("bands")
        if bands is not None and (not isinstance(bands, list) or not all(isinstance(b, int) for b in bands)):
            raise DomainError("bands must be a list of three band numbers, for example [4, 3, 2].")
        with transaction.atomic():
            job = services.ingest_job_start(scene=scene, user=request.user, rgb_bands=bands)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobListApi(generics.ListAPIView):
    """Jobs of your projects, newest first; filters: project, scene, kind, status."""

    serializer_class = JobSerializer

    @extend_schema(parameters=[OpenApiParameter(n, str) for n in ("project", "scene", "kind", "status")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.job_list(user=self.request.user)
        for param, field in (("project", "project_id"), ("scene", "scene_id"), ("kind", "kind"), ("status", "status")):
            if value := self.request.query_params.get(param):
                qs = qs.filter(**{field: value})
        return qs


class JobDetailApi(generics.RetrieveAPIView):
    """One job: status, progress 0..1, message, error."""

    serializer_class = JobSerializer

    def get_queryset(self):
        return selectors.job_list(user=self.request.user)
