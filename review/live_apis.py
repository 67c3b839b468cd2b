"""The live-update poll: GET /api/scenes/{id}/live/?since=&x=&y=&cell=&detection= (events, presence, cells)."""

import time

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors

from .live import Whereabouts, live_poll
from .models import ReviewVerb
from .serializers import MAX_ID, STATUS_OR_NONE


class LiveQuerySerializer(serializers.Serializer):
    """?since=<last event id seen>&x=<lon>&y=<lat>&cell=<id>&detection=<id>; all optional, x and y together."""

    since = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_ID,
        help_text="the cursor of the last answer; without it only the current cursor comes back (no history)",
    )
    x = serializers.FloatField(required=False, min_value=-180, max_value=180, help_text="the map's centre, longitude")
    y = serializers.FloatField(required=False, min_value=-90, max_value=90, help_text="the map's centre, latitude")
    cell = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="the work cell in hand")
    detection = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="the detection selected"
    )

    def validate(self, attrs):
        if ("x" in attrs) != ("y" in attrs):
            raise serializers.ValidationError({"x": "Send x and y together (the map's centre as lon and lat)."})
        return attrs


class LiveEventSerializer(serializers.Serializer):
    """One review event, compact: what a page needs to restyle a detection and say who changed it."""

    id = serializers.IntegerField()
    detection = serializers.IntegerField()
    verb = serializers.ChoiceField(choices=ReviewVerb.choices)
    status_after = serializers.ChoiceField(choices=STATUS_OR_NONE, help_text='"" after a drawn object was deleted')
    class_after = serializers.IntegerField(allow_null=True)
    version_after = serializers.IntegerField()
    actor = serializers.IntegerField(allow_null=True)
    actor_name = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    geometry_changed = serializers.BooleanField(help_text="the shape changed, or the object was drawn or deleted")


class PresenceSerializer(serializers.Serializer):
    """Another reviewer with this scene open."""

    user = serializers.IntegerField()
    name = serializers.CharField()
    cell = serializers.CharField(allow_null=True, help_text="the label of the work cell at their map's centre")
    x = serializers.FloatField(allow_null=True)
    y = serializers.FloatField(allow_null=True)
    detection = serializers.IntegerField(allow_null=True)
    seen_at = serializers.DateTimeField()


class LiveOutputSerializer(serializers.Serializer):
    """One poll's answer."""

    events = LiveEventSerializer(many=True)
    cursor = serializers.IntegerField(help_text="send it as `since` next time")
    more = serializers.BooleanField(help_text="more events are waiting: poll again at once")
    you = serializers.IntegerField(help_text="the caller's user id (their own events are in `events` too)")
    presence = PresenceSerializer(many=True)
    cells_revision = serializers.CharField(help_text="changes whenever the scene's work cells change")


class SceneLiveApi(APIView):
    """Events since a cursor, the others working on the scene now, and the cells' revision; records the caller."""

    @extend_schema(parameters=[LiveQuerySerializer], responses=LiveOutputSerializer)
    def get(self, request, scene_id: int):
        started = time.perf_counter()
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        query = LiveQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        q = query.validated_data
        where = Whereabouts(x=q.get("x"), y=q.get("y"), cell=q.get("cell"), detection=q.get("detection"))
        # Rows go out as the selector built them: a serializer per event would cost more than the query.
        response = Response(live_poll(scene=scene, user=request.user, since=q.get("since"), where=where))
        # The view's own time (scope, events, presence, cells), for benchmarks/review_team.py and browsers' tools.
        response["Server-Timing"] = f"live;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response
