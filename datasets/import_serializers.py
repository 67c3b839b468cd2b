"""Input and output shapes of the import API (the upload, the run request, the inspection)."""

from rest_framework import serializers

from .import_services import TARGETS


class ImportUploadSerializer(serializers.Serializer):
    """A multipart label file and, optionally, the scene every unmatched image or object belongs to."""

    file = serializers.FileField()
    scene_id = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class ClassMapValueField(serializers.JSONField):
    """A class id, "new" (add the class) or null (skip its objects)."""

    def to_internal_value(self, data):
        if data is None or data == "new" or (isinstance(data, int) and not isinstance(data, bool)):
            return data
        if isinstance(data, str) and data.strip().isdigit():
            return int(data)
        raise serializers.ValidationError('Give a class id, "new" or null.')


class ImportRunSerializer(serializers.Serializer):
    """What to import as and where each found class name goes."""

    target = serializers.ChoiceField(choices=TARGETS, default="examples")
    class_map = serializers.DictField(child=ClassMapValueField(allow_null=True), required=False, default=dict)


class ImportClassSerializer(serializers.Serializer):
    name = serializers.CharField()
    count = serializers.IntegerField()
    class_id = serializers.IntegerField(allow_null=True)


class ImportSceneSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    count = serializers.IntegerField()


class ImportSkippedItemSerializer(serializers.Serializer):
    item = serializers.CharField()
    reason = serializers.CharField()
    message = serializers.CharField()


class ImportSkippedSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    by_reason = serializers.DictField(child=serializers.IntegerField())
    items = ImportSkippedItemSerializer(many=True)


class ImportSplitSerializer(serializers.Serializer):
    objects = serializers.IntegerField()
    parts = serializers.IntegerField()


class ImportInspectionSerializer(serializers.Serializer):
    """What an uploaded file holds: format, counts, CRS, classes (matched or not), scenes, what would be skipped."""

    format = serializers.CharField()
    feature_count = serializers.IntegerField()
    objects = serializers.IntegerField(help_text="polygons that land on a scene (multipolygons counted per part)")
    crs = serializers.CharField(allow_null=True)
    class_field = serializers.CharField(allow_null=True)
    layers = serializers.ListField(child=serializers.CharField())
    classes = ImportClassSerializer(many=True)
    unmatched = serializers.ListField(child=serializers.CharField())
    scenes = ImportSceneSerializer(many=True)
    repaired = serializers.IntegerField()
    clipped = serializers.IntegerField()
    split = ImportSplitSerializer()
    skipped = ImportSkippedSerializer()


class ImportSerializer(serializers.Serializer):
    """A stored upload waiting to be imported, with its inspection."""

    id = serializers.CharField()
    project_id = serializers.IntegerField()
    file_name = serializers.CharField()
    scene_id = serializers.IntegerField(allow_null=True)
    uploaded_at = serializers.CharField()
    inspection = ImportInspectionSerializer()
