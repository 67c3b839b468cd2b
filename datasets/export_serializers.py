"""Output shapes of the export API (the request is validated by export_options.ExportRequestSerializer)."""

from rest_framework import serializers

from gpu_tasks.serializers import JobSerializer

from .models import ExportDefinition


class ExportDefinitionSerializer(serializers.ModelSerializer):
    """A saved export and its latest run."""

    params = serializers.DictField(read_only=True)
    created_by = serializers.SerializerMethodField()
    last_job = serializers.SerializerMethodField()

    class Meta:
        model = ExportDefinition
        fields = ["id", "name", "format", "params", "created_by", "created_at", "updated_at", "last_job"]

    def get_created_by(self, obj) -> str | None:
        return obj.created_by.get_username() if obj.created_by_id else None

    def get_last_job(self, obj) -> dict | None:
        job = (self.context.get("last_jobs") or {}).get(obj.pk)
        return JobSerializer(job).data if job else None


class ExportFormatSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    chips = serializers.BooleanField()


class ExportListSerializer(serializers.Serializer):
    """The project's export formats, saved definitions and recent exports."""

    formats = ExportFormatSerializer(many=True)
    definitions = ExportDefinitionSerializer(many=True)
    exports = JobSerializer(many=True)


class ExportStartedSerializer(serializers.Serializer):
    """A started export: its job, and its saved definition when it was saved."""

    job = JobSerializer()
    definition = ExportDefinitionSerializer(allow_null=True)
