"""API representation of jobs."""

from rest_framework import serializers

from .models import Job


class JobSerializer(serializers.ModelSerializer):
    """A job's status, progress and outcome."""

    class Meta:
        model = Job
        fields = [
            "id", "project", "scene", "kind", "status", "progress", "message", "error", "params", "result",
            "created_by", "queued_at", "started_at", "finished_at",
        ]
        read_only_fields = fields
