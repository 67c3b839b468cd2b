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

from . import object_index, selectors, services
from .serializers import JobSerializer, SimilarObjectSerializer


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
                project=project,
                user=request.user,
                role=role,
                uploaded=form.validated_data["file"],
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
        request=inline_serializer(
            "IngestRequest", {"bands": serializers.ListField(child=serializers.IntegerField(), required=False)}
        ),
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


# ------------------------------------------------------------------------------------------ GPU jobs
def _scene_and_role(request, scene_id: int):
    scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
    return scene, annotate_selectors.role_of(user=request.user, project=scene.project)


EmbedRequest = inline_serializer("EmbedRequest", {"scale": serializers.FloatField(required=False, default=1.0)})
SearchRequestSerializer = inline_serializer(
    "SearchRequest",
    {
        "classes": serializers.ListField(
            child=serializers.IntegerField(), required=False, help_text="class ids; empty = every class with examples"
        ),
        "thresholds": serializers.DictField(
            child=serializers.FloatField(), required=False, help_text="class id -> minimum score (cosine similarity)"
        ),
        "default_threshold": serializers.FloatField(required=False, default=0.5),
        "scale": serializers.FloatField(required=False, default=1.0, help_text="2 = enlarge twice for small objects"),
        "negative_weight": serializers.FloatField(required=False, default=0.5),
        "margin": serializers.FloatField(required=False, default=0.02),
        "max_candidates": serializers.IntegerField(required=False, allow_null=True),
        "use_accepted": serializers.BooleanField(required=False, default=True),
    },
)
RefineRequest = inline_serializer(
    "RefineRequest",
    {
        "detections": serializers.ListField(
            child=serializers.IntegerField(),
            required=False,
            help_text="detection ids; empty = every proposed detection",
        ),
        "reverify": serializers.BooleanField(required=False, default=True),
    },
)


def _json_body(request) -> dict:
    if not isinstance(request.data, dict):
        raise DomainError("Send a JSON object.")
    return request.data


class SceneEmbedApi(APIView):
    """POST: compute the scene's patch embeddings (a job on the gpu queue; nothing to do when they exist)."""

    @extend_schema(request=EmbedRequest, responses={202: JobSerializer})
    def post(self, request, scene_id: int):
        scene, role = _scene_and_role(request, scene_id)
        try:
            scale = float(_json_body(request).get("scale", 1.0))
        except (TypeError, ValueError) as exc:
            raise DomainError("scale must be a number, for example 1 or 2.") from exc
        with transaction.atomic():
            job = services.embed_job_start(scene=scene, user=request.user, role=role, scale=scale)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class SceneSearchApi(APIView):
    """POST: search the scene for objects like the project's examples (a job on the gpu queue)."""

    @extend_schema(request=SearchRequestSerializer, responses={202: JobSerializer})
    def post(self, request, scene_id: int):
        scene, role = _scene_and_role(request, scene_id)
        with transaction.atomic():
            job = services.search_job_start(scene=scene, user=request.user, role=role, params=_json_body(request))
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class SceneRefineApi(APIView):
    """POST: turn detections' boxes into SAM2 polygons (chosen ones, or every proposed one)."""

    @extend_schema(request=RefineRequest, responses={202: JobSerializer})
    def post(self, request, scene_id: int):
        scene, role = _scene_and_role(request, scene_id)
        body = _json_body(request)
        ids = body.get("detections") or []
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise DomainError("detections must be a list of detection ids.")
        with transaction.atomic():
            job = services.refine_job_start(
                scene=scene, user=request.user, role=role, detection_ids=ids, reverify=bool(body.get("reverify", True))
            )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class DetectionRefineApi(APIView):
    """POST: refine this one detection ("refine this" in the review page); poll the returned job."""

    @extend_schema(request=None, responses={202: JobSerializer})
    def post(self, request, pk: int):
        detection = generics.get_object_or_404(annotate_selectors.detection_list(user=request.user), pk=pk)
        scene, role = _scene_and_role(request, detection.scene_id)
        with transaction.atomic():
            job = services.refine_job_start(
                scene=scene, user=request.user, role=role, detection_ids=[detection.pk], interactive=True
            )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobCancelApi(APIView):
    """POST: stop a job (a queued one at once, a running one at its next batch)."""

    @extend_schema(request=None, responses={200: JobSerializer})
    def post(self, request, pk: int):
        job = generics.get_object_or_404(selectors.job_list(user=request.user), pk=pk)
        role = annotate_selectors.role_of(user=request.user, project=job.project)
        return Response(JobSerializer(services.job_cancel(job=job, role=role)).data)


class JobRetryApi(APIView):
    """POST: run a failed, cancelled or stalled job again with the same parameters (its output is replaced)."""

    @extend_schema(request=None, responses={202: JobSerializer})
    def post(self, request, pk: int):
        job = generics.get_object_or_404(selectors.job_list(user=request.user), pk=pk)
        role = annotate_selectors.role_of(user=request.user, project=job.project)
        with transaction.atomic():
            job = services.job_requeue(job=job, role=role)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class SimilarObjectsApi(APIView):
    """GET: the project's objects most like one example or detection, in its vector space, nearest first.

    `?annotation=ID` or `?detection=ID`; optional `k` (default 20, at most 200), `scene`, and
    `bbox=minlon,minlat,maxlon,maxlat` (the spatial filter and the vector ranking run as one query).
    """

    @extend_schema(
        parameters=[OpenApiParameter(n, int) for n in ("annotation", "detection", "k", "scene")]
        + [OpenApiParameter("bbox", str)],
        responses={200: SimilarObjectSerializer(many=True)},
    )
    def get(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        params = request.query_params
        try:
            annotation_id = int(params["annotation"]) if params.get("annotation") else None
            detection_id = int(params["detection"]) if params.get("detection") else None
            k = min(max(int(params.get("k", 20)), 1), 200)
            scene_id = int(params["scene"]) if params.get("scene") else None
            bbox = annotate_selectors.bbox_polygon(params["bbox"]) if params.get("bbox") else None
        except ValueError as exc:
            raise DomainError(f"Bad query parameter: {exc}") from exc
        if (annotation_id is None) == (detection_id is None):
            raise DomainError("Give exactly one of annotation=ID or detection=ID.")
        source = selectors.object_embedding_get(project=project, annotation_id=annotation_id, detection_id=detection_id)
        found = object_index.objects_similar(project=project, source=source, k=k, bbox=bbox, scene_id=scene_id)
        return Response(SimilarObjectSerializer(found, many=True).data)
