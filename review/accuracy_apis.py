"""Accuracy endpoints: a scene's accuracy areas (list, mark, unmark) and a proposer's accuracy in a project's areas."""

import json

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate.models import DetectionSource, Proposer

from . import accuracy
from .accuracy_models import AccuracyArea


class AccuracyAreaSerializer(serializers.ModelSerializer):
    """One area: its outline (GeoJSON), the classes it is complete for ([] = all), its cell and who marked it."""

    geometry = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()
    class_ids = serializers.ListField(child=serializers.IntegerField())

    class Meta:
        model = AccuracyArea
        fields = ["id", "scene", "geometry", "class_ids", "cell", "created_by", "created_at"]

    def get_geometry(self, obj) -> dict:
        return json.loads(obj.geometry.geojson)

    def get_created_by(self, obj) -> str | None:
        return obj.created_by.get_username() if obj.created_by_id else None


class AccuracyAreaInputSerializer(serializers.Serializer):
    """A drawn polygon or work cells of the scene, and the classes every object of which in it was reviewed."""

    area = serializers.JSONField(required=False, allow_null=True, help_text="a GeoJSON Polygon")
    cell_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
    class_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list,
                                     help_text="the classes it is complete for; empty = every class")


class AccuracyQuerySerializer(serializers.Serializer):
    """Which proposer to measure."""

    source = serializers.ChoiceField(choices=DetectionSource.values, required=False,
                                     help_text="only detections of this source (refined ones have source refine)")
    proposer = serializers.ChoiceField(choices=Proposer.values, required=False,
                                       help_text="search, probe or yolo (default: search, or yolo with model_version)")
    model_version = serializers.IntegerField(required=False, min_value=1, help_text="one YOLO model version")
    job = serializers.IntegerField(required=False, min_value=1, help_text="only the detections this job proposed")
    model_key = serializers.CharField(required=False, max_length=64)
    scene = serializers.IntegerField(required=False, min_value=1, help_text="only this scene's areas")


class ClassAccuracySerializer(serializers.Serializer):
    class_id = serializers.IntegerField()
    class_name = serializers.CharField()
    truths = serializers.IntegerField(help_text="reviewed objects (accepted or drawn) in the areas")
    proposals = serializers.IntegerField()
    true_positives = serializers.IntegerField(help_text="proposals matched at IoU >= 0.5")
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    ap50 = serializers.FloatField(allow_null=True)
    ap50_95 = serializers.FloatField(allow_null=True)
    best_f1 = serializers.FloatField(allow_null=True)
    best_f1_score = serializers.FloatField(allow_null=True)
    curve = serializers.DictField(child=serializers.ListField(child=serializers.FloatField()))


class AccuracyReportSerializer(serializers.Serializer):
    proposer = serializers.DictField()
    areas = serializers.IntegerField()
    scenes = serializers.ListField(child=serializers.IntegerField())
    classes = ClassAccuracySerializer(many=True)


class SceneAccuracyAreasApi(APIView):
    """GET the scene's accuracy areas; POST marks a drawn polygon or work cells as exhaustively labelled (managers)."""

    @extend_schema(responses=AccuracyAreaSerializer(many=True))
    def get(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        areas = AccuracyArea.objects.filter(scene=scene).select_related("created_by")
        return Response(AccuracyAreaSerializer(areas, many=True).data)

    @extend_schema(request=AccuracyAreaInputSerializer, responses={201: AccuracyAreaSerializer(many=True)})
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        body = AccuracyAreaInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        made = accuracy.accuracy_areas_add(scene=scene, actor=request.user, area=body.validated_data.get("area"),
                                           cell_ids=body.validated_data["cell_ids"],
                                           class_ids=body.validated_data["class_ids"])
        return Response(AccuracyAreaSerializer(made, many=True).data, status=status.HTTP_201_CREATED)


class AccuracyAreaApi(APIView):
    """DELETE: unmark an accuracy area (managers)."""

    @extend_schema(responses={204: None})
    def delete(self, request, area_id: int):
        area = get_object_or_404(AccuracyArea.objects.select_related("scene__project"), pk=area_id)
        annotate_selectors.scene_get(user=request.user, scene_id=area.scene_id)  # 404 to non-members
        accuracy.accuracy_area_delete(area=area, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectAccuracyApi(APIView):
    """GET a proposer's per-class precision, recall, F1, AP50, AP50:95 and PR curve over the accuracy areas."""

    @extend_schema(parameters=[OpenApiParameter("source", str), OpenApiParameter("proposer", str),
                               OpenApiParameter("model_version", int), OpenApiParameter("job", int),
                               OpenApiParameter("model_key", str), OpenApiParameter("scene", int)],
                   responses=AccuracyReportSerializer)
    def get(self, request, project_id: int):
        project = annotate_selectors.project_get(user=request.user, project_id=project_id)
        query = AccuracyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        report = accuracy.proposer_accuracy(project=project, source=q.get("source"), job_id=q.get("job"),
                                            model_key=q.get("model_key"), scene_id=q.get("scene"),
                                            proposer=q.get("proposer"), model_version_id=q.get("model_version"))
        return Response(AccuracyReportSerializer(report).data)
