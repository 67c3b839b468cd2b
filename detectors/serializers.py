"""Validation of detector-loop requests (training, YOLO proposals, probe proposals) and the model version's shape."""

from rest_framework import serializers

from .models import ModelVersion

# Architectures ultralytics builds from its own yaml (random weights): no file and no download needed.
BASE_ARCHITECTURES = ("yolov8n.yaml", "yolov8s.yaml", "yolov8m.yaml", "yolo11n.yaml", "yolo11s.yaml", "yolo11m.yaml")
PROBE_KINDS = ("logistic", "knn")


class TrainRequestSerializer(serializers.Serializer):
    """What to train on (a saved YOLO export, or the accepted set) and how."""

    definition_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None,
                                             help_text="a saved export definition; empty: every accepted object")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    base_model = serializers.CharField(required=False, default="yolov8n.yaml", max_length=200,
                                       help_text="an architecture yaml, or a checkpoint file in MODEL_DIR/yolo/")
    epochs = serializers.IntegerField(required=False, default=50, min_value=1, max_value=1000)
    imgsz = serializers.IntegerField(required=False, default=None, allow_null=True, min_value=32, max_value=2048,
                                     help_text="training image size; empty: the dataset's chip size")
    batch = serializers.IntegerField(required=False, default=16, min_value=1, max_value=256)
    patience = serializers.IntegerField(required=False, default=20, min_value=0, max_value=1000,
                                        help_text="epochs without improvement before stopping (0: never)")


class PredictRequestSerializer(serializers.Serializer):
    """Which model version proposes on the scene, and how its boxes are checked."""

    model_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None,
                                             help_text="empty: the project's current model")
    conf = serializers.FloatField(required=False, default=0.25, min_value=0.001, max_value=1.0)
    verify = serializers.BooleanField(required=False, default=True,
                                      help_text="check and relabel each box against the class prototypes")
    relabel_margin = serializers.FloatField(required=False, default=0.05, min_value=0.0, max_value=1.0)


class ProbeRequestSerializer(serializers.Serializer):
    """Which probe scores the scene's cached grid."""

    kind = serializers.ChoiceField(choices=PROBE_KINDS, default="logistic")
    threshold = serializers.FloatField(required=False, default=0.5, min_value=0.0, max_value=1.0)
    classes = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list,
                                    help_text="class ids; empty: every class with reviewed objects")
    max_candidates = serializers.IntegerField(required=False, default=5000, min_value=1, max_value=100_000)


class ModelVersionSerializer(serializers.ModelSerializer):
    """A trained model: its dataset, parameters, metrics per epoch and of its best weights."""

    created_by = serializers.SerializerMethodField()
    label = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "number", "label", "name", "job", "export_definition", "dataset", "classes", "params",
                  "metrics", "history", "gsd_m", "imgsz", "stopped_early", "is_current", "created_by", "created_at"]
        read_only_fields = fields

    def get_created_by(self, obj) -> str | None:
        return obj.created_by.get_username() if obj.created_by_id else None

    def get_label(self, obj) -> str:
        return str(obj)


class ModelVersionUpdateSerializer(serializers.Serializer):
    """Rename a version or make it the project's current model."""

    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    is_current = serializers.BooleanField(required=False)
