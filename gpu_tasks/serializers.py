"""API representation of jobs and similar-object results."""

import json

from rest_framework import serializers

from .models import Job
from .services import job_is_stalled


class JobSerializer(serializers.ModelSerializer):
    """A job's status, progress and outcome; `stalled` is a running job whose worker stopped reporting."""

    stalled = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "scene",
            "kind",
            "status",
            "stalled",
            "progress",
            "message",
            "error",
            "params",
            "result",
            "created_by",
            "queued_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "cancel_requested",
            "attempts",
        ]
        read_only_fields = fields

    def get_stalled(self, obj) -> bool:
        return job_is_stalled(obj)


class SimilarObjectSerializer(serializers.Serializer):
    """One object found by similarity: what it is, where, and how close (cosine similarity, 1 = same)."""

    kind = serializers.SerializerMethodField()
    id = serializers.SerializerMethodField()
    scene = serializers.IntegerField(source="scene_id")
    object_class = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    similarity = serializers.SerializerMethodField()
    geometry = serializers.SerializerMethodField()

    def _owner(self, obj):
        return obj.annotation or obj.detection

    def get_kind(self, obj) -> str:
        return "annotation" if obj.annotation_id else "detection"

    def get_id(self, obj) -> int:
        return obj.annotation_id or obj.detection_id

    def get_object_class(self, obj) -> int:
        return self._owner(obj).object_class_id

    def get_status(self, obj) -> str:
        return "example" if obj.annotation_id else obj.detection.status

    def get_similarity(self, obj) -> float:
        return round(1.0 - float(obj.distance), 6)

    def get_geometry(self, obj) -> dict:
        return json.loads(self._owner(obj).geometry.geojson)
