"""Endpoints that start jobs (scene upload and re-ingest) and read jobs."""

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate import services as annotate_services
from annotate import uploads
from annotate.errors import DomainError, InsufficientStorage, UploadTooLarge
from annotate.permissions import Action, require
from annotate.serializers import SceneSerializer, SceneUploadSerializer

from . import broker, object_index, selectors, services
from .serializers import (
    EmbedInputSerializer,
    IngestInputSerializer,
    JobFilterSerializer,
    JobSerializer,
    RefineInputSerializer,
    RequeryInputSerializer,
    SearchInputSerializer,
    SimilarObjectSerializer,
    SimilarQuerySerializer,
)


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
        uploads.upload_space_require(int(request.META.get("CONTENT_LENGTH") or 0))
        form = SceneUploadSerializer(data=request.data)
        if getattr(request._request, "upload_too_large", False):
            raise UploadTooLarge(_too_large_message())
        if getattr(request._request, "upload_no_space", False):  # the handler already deleted the partial file
            raise InsufficientStorage(uploads.upload_disk_full_message())
        form.is_valid(raise_exception=True)
        # Before the file is stored: with the queue down, nothing is kept and a re-upload is not a duplicate.
        broker.broker_check()
        with transaction.atomic():
            scene = annotate_services.scene_create_from_upload(
                project=project,
                user=request.user,
                role=role,
                uploaded=form.validated_data["file"],
                name=form.validated_data.get("name", ""),
            )
            job = services.ingest_job_start(scene=scene, user=request.user, rgb_bands=form.validated_data.get("bands"))
        return Response(
            {"scene": SceneSerializer(scene).data, "job": JobSerializer(job).data}, status=status.HTTP_202_ACCEPTED
        )


class SceneIngestApi(APIView):
    """POST to run a scene's ingest again (for example with other RGB bands: `{"bands": [4, 3, 2]}`)."""

    @extend_schema(request=IngestInputSerializer, responses={202: JobSerializer})
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        require(annotate_selectors.role_of(user=request.user, project=scene.project), Action.UPLOAD_SCENE)
        form = IngestInputSerializer(
            data=_json_body(request), context={"data_bands": annotate_selectors.scene_data_bands(scene=scene)}
        )
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            job = services.ingest_job_start(scene=scene, user=request.user, rgb_bands=form.validated_data.get("bands"))
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobListApi(generics.ListAPIView):
    """Jobs of your projects, newest first; filters: project, scene, kind, status."""

    serializer_class = JobSerializer

    @extend_schema(parameters=[JobFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        services.jobs_reconcile_throttled()  # a dead worker's job is shown re-queued, not running, within seconds
        query = JobFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        return selectors.job_list(
            user=self.request.user,
            project_id=data.get("project"),
            scene_id=data.get("scene"),
            kind=data.get("kind"),
            status=data.get("status"),
        )


class JobDetailApi(generics.RetrieveAPIView):
    """One job: status, progress 0..1, message, error."""

    serializer_class = JobSerializer

    def get_queryset(self):
        services.jobs_reconcile_throttled()
        return selectors.job_list(user=self.request.user)


# ------------------------------------------------------------------------------------------ GPU jobs
def _scene_and_role(request, scene_id: int):
    scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
    return scene, annotate_selectors.role_of(user=request.user, project=scene.project)


def _json_body(request) -> dict:
    if not isinstance(request.data, dict):
        raise DomainError("Send a JSON object.")
    return request.data


def _job_response(start: services.JobStart) -> Response:
    """202 with a new job; 200 with the identical job that was already queued or running."""
    return Response(
        JobSerializer(start.job).data, status=status.HTTP_202_ACCEPTED if start.created else status.HTTP_200_OK
    )


JOB_RESPONSES = {202: JobSerializer, 200: JobSerializer}


class SceneEmbedApi(APIView):
    """POST: compute the scene's patch embeddings (a job on the gpu queue; nothing to do when they exist)."""

    @extend_schema(request=EmbedInputSerializer, responses=JOB_RESPONSES)
    def post(self, request, scene_id: int):
        scene, role = _scene_and_role(request, scene_id)
        form = EmbedInputSerializer(data=_json_body(request))
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            start = services.embed_job_submit(
                scene=scene, user=request.user, role=role, scale=form.validated_data["scale"]
            )
        return _job_response(start)


class SceneSearchApi(APIView):
    """POST: search the scene for objects like the project's examples (a job on the gpu queue)."""

    @extend_schema(request=SearchInputSerializer, responses=JOB_RESPONSES)
    def post(self, request, scene_id: int):
        scene, role = _scene_and_role(request, scene_id)
        form = SearchInputSerializer(data=_json_body(request), context={"scene": scene})
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            start = services.search_job_submit(
                scene=scene, user=request.user, role=role, params=form.search_request()
            )
        return _job_response(start)


class SceneUpdateProposalsApi(APIView):
    """POST: "Update proposals": score the scene's cached grid again with the current examples and decisions.

    Replaces the unreviewed proposals without running the backbone (a job on the CPU queue, never behind an
    embedding); optional body: search fields that replace the last search's (`{"classes": [...]}`). 409 when
    the scene has no patch embeddings yet (run a search first). An identical update still queued is returned.
    """

    @extend_schema(request=RequeryInputSerializer, responses=JOB_RESPONSES)
    def post(self, request, scene_id: int):
        scene, role = _scene_and_role(request, scene_id)
        form = RequeryInputSerializer(data=_json_body(request), context={"scene": scene})
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            start = services.requery_job_submit(scene=scene, user=request.user, role=role, overrides=form.overrides())
        return _job_response(start)


class SceneRefineApi(APIView):
    """POST: turn detections' boxes into SAM2 polygons (chosen ones, or every proposed one)."""

    @extend_schema(request=RefineInputSerializer, responses=JOB_RESPONSES)
    def post(self, request, scene_id: int):
        scene, role = _scene_and_role(request, scene_id)
        form = RefineInputSerializer(data=_json_body(request))
        form.is_valid(raise_exception=True)
        with transaction.atomic():
            start = services.refine_job_submit(
                scene=scene,
                user=request.user,
                role=role,
                detection_ids=form.validated_data.get("detections") or [],
                reverify=form.validated_data["reverify"],
            )
        return _job_response(start)


class DetectionRefineApi(APIView):
    """POST: refine this one detection ("refine this" in the review page); poll the returned job."""

    @extend_schema(request=None, responses=JOB_RESPONSES)
    def post(self, request, pk: int):
        detection = generics.get_object_or_404(annotate_selectors.detection_list(user=request.user), pk=pk)
        scene, role = _scene_and_role(request, detection.scene_id)
        with transaction.atomic():
            start = services.refine_job_submit(
                scene=scene, user=request.user, role=role, detection_ids=[detection.pk], interactive=True
            )
        return _job_response(start)


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
            job = services.job_requeue(job=job, role=role, user=request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class SimilarObjectsApi(APIView):
    """GET: the project's objects most like one example or detection, in its vector space, nearest first.

    `?annotation=ID` or `?detection=ID`; optional `k` (default 20, at most 200), `scene`, and
    `bbox=minlon,minlat,maxlon,maxlat` (the spatial filter and the vector ranking run as one query).
    """

    @extend_schema(parameters=[SimilarQuerySerializer], responses={200: SimilarObjectSerializer(many=True)})
    def get(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        query = SimilarQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        source = selectors.object_embedding_get(
            project=project, annotation_id=q.get("annotation"), detection_id=q.get("detection")
        )
        found = object_index.objects_similar(
            project=project, source=source, k=q["k"], bbox=q.get("bbox"), scene_id=q.get("scene")
        )
        return Response(SimilarObjectSerializer(found, many=True).data)
