"""GET /api/models/: whether search and refinement can run here (model files on disk), and what installs them."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from .model_status import FETCH_COMMAND, ModelState, model_status


class ModelStateSerializer(serializers.Serializer):
    """One configured model as the server sees it."""

    setting = serializers.CharField(help_text="DINO_MODEL or SAM2_MODEL")
    model = serializers.CharField()
    needed_for = serializers.CharField(help_text="search or refinement")
    installed = serializers.BooleanField()
    fetchable = serializers.BooleanField(help_text="a hub id that `manage.py fetch_models` downloads")
    hint = serializers.CharField(help_text="what installs it; empty when installed")


class ModelStatusSerializer(serializers.Serializer):
    """Both models, a sentence for people, and the install command."""

    ready = serializers.BooleanField(help_text="both models are installed")
    search_ready = serializers.BooleanField(help_text="the backbone is installed")
    refine_ready = serializers.BooleanField(help_text="SAM2 is installed")
    backbone = ModelStateSerializer()
    sam2 = ModelStateSerializer()
    message = serializers.CharField(help_text="what is missing and how to install it; empty when ready")
    fetch_command = serializers.CharField()


class ModelStatusApi(APIView):
    """Model availability for any signed-in user: the scene page warns before Search instead of failing a job."""

    @extend_schema(responses=ModelStatusSerializer)
    def get(self, request):
        status = model_status()

        def state(m: ModelState) -> dict:
            hint = "" if m.installed else m.install_hint()
            fields = ("setting", "model", "needed_for", "installed", "fetchable")
            return {**{k: getattr(m, k) for k in fields}, "hint": hint}

        data = {
            "ready": not status.missing,
            "search_ready": status.backbone.installed,
            "refine_ready": status.sam2.installed,
            "backbone": state(status.backbone),
            "sam2": state(status.sam2),
            "message": status.message(),
            "fetch_command": FETCH_COMMAND,
        }
        return Response(ModelStatusSerializer(data).data)
