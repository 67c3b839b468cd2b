"""Detector-loop endpoints: a project's model versions and training, one version (rename, current, delete), YOLO and
probe proposals on a scene."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate.errors import DomainError
from datasets.models import ExportDefinition
from gpu_tasks.apis import JOB_RESPONSES
from gpu_tasks.serializers import JobSerializer
from gpu_tasks.services import JobStart

from . import probe_proposals, training, versions, yolo_proposals
from .models import ModelVersion
from .serializers import (
    ModelVersionSerializer,
    ModelVersionUpdateSerializer,
    PredictRequestSerializer,
    ProbeRequestSerializer,
    TrainRequestSerializer,
)


class DefinitionChoiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    format = serializers.CharField()


class ModelListSerializer(serializers.Serializer):
    """The project's versions, what training may start from and which saved exports it may train on."""

    versions = ModelVersionSerializer(many=True)
    base_models = serializers.ListField(child=serializers.CharField())
    definitions = DefinitionChoiceSerializer(many=True)
    trainings = JobSerializer(many=True, help_text="the project's recent training jobs, newest first")


def _json(request) -> dict:
    if not isinstance(request.data, dict):
        raise DomainError("Send a JSON object.")
    return request.data


def _job_response(start: JobStart) -> Response:
    return Response(JobSerializer(start.job).data,
                    status=status.HTTP_202_ACCEPTED if start.created else status.HTTP_200_OK)


class ProjectModelsApi(APIView):
    """GET the project's model versions (newest first) and training choices; POST starts a training job (202)."""

    @extend_schema(responses=ModelListSerializer)
    def get(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        data = {
            "versions": ModelVersion.objects.filter(project=project).select_related("created_by"),
            "base_models": training.base_models(),
            "definitions": ExportDefinition.objects.filter(project=project).order_by("name"),
            "trainings": project.jobs.filter(kind="train").order_by("-queued_at")[:10],
        }
        return Response(ModelListSerializer(data).data)

    @extend_schema(request=TrainRequestSerializer, responses={202: JobSerializer})
    def post(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        role = annotate_selectors.role_of(user=request.user, project=project)
        job = training.train_submit(project=project, user=request.user, role=role, data=_json(request))
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionApi(APIView):
    """GET one version; PATCH renames it or makes it current (managers); DELETE removes it, its weights and its
    unreviewed proposals (managers)."""

    def _version(self, request, version_id: int) -> ModelVersion:
        version = get_object_or_404(ModelVersion.objects.select_related("project", "created_by"), pk=version_id)
        annotate_selectors.project_get(user=request.user, project_id=version.project_id)  # 404 to non-members
        return version

    @extend_schema(responses=ModelVersionSerializer)
    def get(self, request, version_id: int):
        return Response(ModelVersionSerializer(self._version(request, version_id)).data)

    @extend_schema(request=ModelVersionUpdateSerializer, responses=ModelVersionSerializer)
    def patch(self, request, version_id: int):
        version = self._version(request, version_id)
        form = ModelVersionUpdateSerializer(data=_json(request))
        form.is_valid(raise_exception=True)
        version = versions.version_update(version=version, actor=request.user, **form.validated_data)
        return Response(ModelVersionSerializer(version).data)

    @extend_schema(responses={204: None})
    def delete(self, request, version_id: int):
        versions.version_delete(version=self._version(request, version_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SceneYoloProposalsApi(APIView):
    """POST: a model version (default: the current one) proposes objects on the scene (a job on the gpu queue)."""

    @extend_schema(request=PredictRequestSerializer, responses=JOB_RESPONSES)
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        role = annotate_selectors.role_of(user=request.user, project=scene.project)
        with transaction.atomic():
            start = yolo_proposals.predict_submit(scene=scene, user=request.user, role=role, data=_json(request))
        return _job_response(start)


class SceneProbeApi(APIView):
    """POST: train a probe on the project's reviewed tokens and let it propose on the scene (default queue)."""

    @extend_schema(request=ProbeRequestSerializer, responses=JOB_RESPONSES)
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        role = annotate_selectors.role_of(user=request.user, project=scene.project)
        start = probe_proposals.probe_submit(scene=scene, user=request.user, role=role, data=_json(request))
        return _job_response(start)
