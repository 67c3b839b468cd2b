"""Review endpoints: thin views that validate input once and call review's services and selectors."""

from django.db.models import Value
from django.db.models.functions import Coalesce
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate.models import Detection, DetectionStatus
from annotate.serializers import DetectionSerializer

from . import queue_leases, selectors, services
from .serializers import (
    BulkOutputSerializer,
    BulkReviewInputSerializer,
    DecisionOutputSerializer,
    EventsPageSerializer,
    EventsQuerySerializer,
    ManualCreateInputSerializer,
    ManualDeleteInputSerializer,
    ProgressOutputSerializer,
    QueueOutputSerializer,
    QueueQuerySerializer,
    RelabelInputSerializer,
    ReshapeInputSerializer,
    ReviewEventSerializer,
    ReviewInputSerializer,
    ScoreHistogramSerializer,
    UndoInputSerializer,
    UndoOutputSerializer,
)


def _valid(serializer_class, data, **context) -> dict:
    """The validated data of `serializer_class` over `data` (400 with the fields to fix otherwise)."""
    body = serializer_class(data=data, context=context)
    body.is_valid(raise_exception=True)
    return body.validated_data


def _decision(events, detection_id: int) -> dict:
    """What a change answers: its events and the detection as it is now (absent when deleted)."""
    events = events if isinstance(events, list) else [events]
    detection = Detection.objects.select_related("object_class").filter(pk=detection_id).first()
    return {
        "events": ReviewEventSerializer(events, many=True).data,
        "detection": DetectionSerializer(detection).data if detection else None,
    }


class DetectionReviewApi(APIView):
    """Accept or reject one detection (with a new class and/or shape: "fix and accept")."""

    @extend_schema(request=ReviewInputSerializer, responses=DecisionOutputSerializer)
    def post(self, request, pk: int):
        detection = selectors.detection_get(user=request.user, detection_id=pk)
        data = _valid(ReviewInputSerializer, request.data, scene=detection.scene)
        event = services.detection_review(
            detection=detection, actor=request.user, verdict=data["verdict"],
            expected_version=data["expected_version"], client_id=data["client_id"], comment=data["comment"],
            object_class=data.get("object_class_obj"), geometry=data.get("geometry"),
        )
        return Response(_decision(event, pk))


class DetectionRelabelApi(APIView):
    """Change one detection's class."""

    @extend_schema(request=RelabelInputSerializer, responses=DecisionOutputSerializer)
    def post(self, request, pk: int):
        detection = selectors.detection_get(user=request.user, detection_id=pk)
        data = _valid(RelabelInputSerializer, request.data, scene=detection.scene)
        event = services.detection_relabel(
            detection=detection, actor=request.user, object_class=data["object_class_obj"],
            expected_version=data["expected_version"], client_id=data["client_id"], comment=data["comment"],
        )
        return Response(_decision(event, pk))


class DetectionReshapeApi(APIView):
    """Replace one detection's polygon."""

    @extend_schema(request=ReshapeInputSerializer, responses=DecisionOutputSerializer)
    def post(self, request, pk: int):
        detection = selectors.detection_get(user=request.user, detection_id=pk)
        data = _valid(ReshapeInputSerializer, request.data, scene=detection.scene)
        event = services.detection_reshape(
            detection=detection, actor=request.user, geometry=data["geometry"],
            expected_version=data["expected_version"], client_id=data["client_id"], comment=data["comment"],
        )
        return Response(_decision(event, pk))


class ManualDetectionCreateApi(APIView):
    """Draw a missed object: saved as an accepted manual detection."""

    @extend_schema(request=ManualCreateInputSerializer, responses=DecisionOutputSerializer)
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        data = _valid(ManualCreateInputSerializer, request.data, scene=scene)
        event = services.detection_create_manual(
            scene=scene, actor=request.user, object_class=data["object_class_obj"], geometry=data["geometry"],
            client_id=data["client_id"], comment=data["comment"],
        )
        return Response(_decision(event, event.detection_id), status=status.HTTP_201_CREATED)


class ManualDetectionDeleteApi(APIView):
    """Delete a drawn detection (?expected_version=&client_id=); its history stays."""

    @extend_schema(parameters=[ManualDeleteInputSerializer], responses=DecisionOutputSerializer)
    def delete(self, request, pk: int):
        detection = selectors.detection_get(user=request.user, detection_id=pk)
        data = _valid(ManualDeleteInputSerializer, request.query_params.dict() or request.data)
        event = services.detection_delete_manual(
            detection=detection, actor=request.user, expected_version=data["expected_version"],
            client_id=data["client_id"],
        )
        return Response(_decision(event, pk))


class UndoApi(APIView):
    """Undo the caller's last decision (in a scene if given) or a named event; a bulk action undoes as a group."""

    @extend_schema(request=UndoInputSerializer, responses=UndoOutputSerializer)
    def post(self, request):
        data = _valid(UndoInputSerializer, request.data)
        event = selectors.event_get(user=request.user, event_id=data["event"]) if "event" in data else None
        scene = annotate_selectors.scene_get(user=request.user, scene_id=data["scene"]) if "scene" in data else None
        events = services.decision_undo(actor=request.user, client_id=data["client_id"], event=event, scene=scene)
        return Response({"events": ReviewEventSerializer(events, many=True).data})


class BulkReviewApi(APIView):
    """Accept or reject many proposed detections of a scene, by ids or by class and score."""

    @extend_schema(request=BulkReviewInputSerializer, responses=BulkOutputSerializer)
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        data = _valid(BulkReviewInputSerializer, request.data, scene=scene)
        chosen = Detection.objects.filter(scene=scene, status=DetectionStatus.PROPOSED)
        if "ids" in data:
            chosen = chosen.filter(pk__in=data["ids"])
        if "object_class_obj" in data:
            chosen = chosen.filter(object_class=data["object_class_obj"])
        # No score counts as 0, as in the queue and the score histogram, so a slider's count is what is decided.
        scored = chosen.annotate(score_or_0=Coalesce("score", Value(0.0)))
        if "score_min" in data:
            chosen = scored = scored.filter(score_or_0__gte=data["score_min"])
        if "score_max" in data:
            chosen = scored.filter(score_or_0__lt=data["score_max"])
        events = services.detections_bulk_review(
            scene=scene, actor=request.user, verdict=data["verdict"], detections=chosen.only("pk"),
            client_id=data["client_id"], comment=data["comment"],
        )
        return Response(
            {
                "batch_id": events[0].batch_id if events else None,
                "count": len(events),
                "detections": [e.detection_id for e in events],
            }
        )


class ReviewQueueApi(APIView):
    """The next (or previous) proposed detections of a scene, by score, by uncertainty or in spatial order."""

    @extend_schema(parameters=[QueueQuerySerializer], responses=QueueOutputSerializer)
    def get(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        query = _valid(QueueQuerySerializer, request.query_params.dict())
        after = None
        if "after" in query:
            after = selectors.detection_get(user=request.user, detection_id=query["after"])
        # Served tier by tier (own work cells, then free ones) and leased to the caller (review.queue_leases).
        items = queue_leases.review_queue_served(
            user=request.user, scene=scene, order=query["order"], after=after,
            backwards=query["direction"] == "previous", threshold=query["threshold"], limit=query["limit"],
        )
        return Response({"order": query["order"], "detections": DetectionSerializer(items, many=True).data})


def _events_response(events: list, limit: int) -> Response:
    """Events and the cursor to ask from next (`more` when the page was full)."""
    return Response(
        {
            "events": ReviewEventSerializer(events, many=True).data,
            "cursor": events[-1].pk if events else None,
            "more": len(events) == limit,
        }
    )


class SceneEventsApi(APIView):
    """A scene's review events after a cursor (?since=<event id>&user=<id>)."""

    @extend_schema(parameters=[EventsQuerySerializer], responses=EventsPageSerializer)
    def get(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        query = _valid(EventsQuerySerializer, request.query_params.dict())
        events = selectors.events_since(
            user=request.user, since=query["since"], scene=scene, actor_id=query.get("user"), limit=query["limit"]
        )
        return _events_response(events, query["limit"])


class EventsApi(APIView):
    """Review events of every project the caller belongs to, after a cursor (?since=&user=): one user's work."""

    @extend_schema(parameters=[EventsQuerySerializer], responses=EventsPageSerializer)
    def get(self, request):
        query = _valid(EventsQuerySerializer, request.query_params.dict())
        events = selectors.events_since(
            user=request.user, since=query["since"], actor_id=query.get("user"), limit=query["limit"]
        )
        return _events_response(events, query["limit"])


class DetectionEventsApi(APIView):
    """One detection's history (also after it was deleted, while its scene is visible)."""

    @extend_schema(parameters=[EventsQuerySerializer], responses=EventsPageSerializer)
    def get(self, request, pk: int):
        query = _valid(EventsQuerySerializer, request.query_params.dict())
        events = selectors.events_since(
            user=request.user, since=query["since"], detection_id=pk, actor_id=query.get("user"),
            limit=query["limit"],
        )
        if not events and not query["since"]:
            selectors.detection_get(user=request.user, detection_id=pk)  # 404 for an unknown or foreign id
        return _events_response(events, query["limit"])


class ReviewProgressApi(APIView):
    """Counts of a scene's detections per status and class, and the caller's own decisions."""

    @extend_schema(responses=ProgressOutputSerializer)
    def get(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        return Response(selectors.review_progress(scene=scene, user=request.user))


class ScoreHistogramApi(APIView):
    """Per class: proposed detections in 20 score bins and the accepted and rejected totals (the score slider)."""

    @extend_schema(responses=ScoreHistogramSerializer)
    def get(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        return Response(selectors.score_histogram(scene=scene))
