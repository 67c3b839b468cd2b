"""The analytics endpoints' query (validated once, here) and the shape of their answer."""

import datetime as dt

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotate.models import Project, Scene


@extend_schema_field(OpenApiTypes.STR)
class InstantField(serializers.Field):
    """An ISO 8601 date-time (UTC when it names no zone) or a date (its midnight, UTC)."""

    def to_internal_value(self, data) -> dt.datetime:
        text = str(data).strip()
        try:
            value = parse_datetime(text) if "T" in text or " " in text else None
            if value is None:
                day = parse_date(text)
                value = dt.datetime.combine(day, dt.time()) if day else None
        except ValueError:
            value = None
        if value is None:
            raise serializers.ValidationError(
                "Use an ISO 8601 date (2026-12-01) or date-time (2026-12-01T13:00:00Z)."
            )
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class AnalyticsQuerySerializer(serializers.Serializer):
    """?scene=&since=&until=: one scene of the project (all when absent) and the time range [since, until)."""

    scene = serializers.IntegerField(required=False, min_value=1, help_text="a scene of this project")
    since = InstantField(required=False, help_text="events at or after this instant (a date: its midnight, UTC)")
    until = InstantField(required=False, help_text="events before this instant (a date: its midnight, UTC)")

    def validate_scene(self, value: int) -> Scene:
        project: Project = self.context["project"]
        scene = Scene.objects.filter(pk=value, project=project).first()
        if scene is None:
            raise serializers.ValidationError("No such scene in this project; leave it out for all scenes.")
        return scene

    def validate(self, attrs: dict) -> dict:
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "until must be later than since."})
        return attrs


class AnalyticsActivitySeriesSerializer(serializers.Serializer):
    """One reviewer's decisions and undos per bucket (aligned with `starts`)."""

    reviewer = serializers.IntegerField(allow_null=True)
    username = serializers.CharField()
    decisions = serializers.ListField(child=serializers.IntegerField())
    undos = serializers.ListField(child=serializers.IntegerField())
    total_decisions = serializers.IntegerField()
    total_undos = serializers.IntegerField()


class AnalyticsActivitySerializer(serializers.Serializer):
    """Decisions per reviewer per hour (per day when the events span more than two weeks), UTC."""

    bucket = serializers.ChoiceField(choices=["hour", "day"])
    starts = serializers.ListField(child=serializers.DateTimeField(), help_text="each bucket's start, UTC")
    series = AnalyticsActivitySeriesSerializer(many=True)


class AnalyticsPaceReviewerSerializer(serializers.Serializer):
    """One reviewer's seconds per decision (null when no gap was timed) and the breaks left out."""

    reviewer = serializers.IntegerField(allow_null=True)
    username = serializers.CharField()
    median_seconds = serializers.FloatField(allow_null=True)
    p90_seconds = serializers.FloatField(allow_null=True)
    timed_decisions = serializers.IntegerField()
    breaks = serializers.IntegerField()


class AnalyticsPaceSerializer(serializers.Serializer):
    """Time per decision: gaps over `break_seconds` are breaks and not counted."""

    break_seconds = serializers.IntegerField()
    reviewers = AnalyticsPaceReviewerSerializer(many=True)


class AnalyticsClassRateSerializer(serializers.Serializer):
    """Accepted and rejected detections of a class (by each one's latest decision)."""

    object_class = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()
    color = serializers.CharField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)


class AnalyticsSourceRateSerializer(serializers.Serializer):
    """Accepted and rejected detections of a source (search, refine, yolo, manual)."""

    source = serializers.CharField()
    label = serializers.CharField()
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)


class AnalyticsAcceptRateSerializer(serializers.Serializer):
    """Accept rates per class and per source."""

    by_class = AnalyticsClassRateSerializer(many=True)
    by_source = AnalyticsSourceRateSerializer(many=True)


class AnalyticsPairSerializer(serializers.Serializer):
    """How often `second` reversed a status set by `first`."""

    first = serializers.IntegerField(allow_null=True)
    first_name = serializers.CharField()
    second = serializers.IntegerField(allow_null=True)
    second_name = serializers.CharField()
    count = serializers.IntegerField()


class AnalyticsDisagreementSerializer(serializers.Serializer):
    """One decision that reversed the status another reviewer had set."""

    event = serializers.IntegerField()
    at = serializers.DateTimeField()
    scene = serializers.IntegerField()
    scene_name = serializers.CharField()
    detection = serializers.IntegerField()
    reviewer = serializers.IntegerField(allow_null=True)
    reviewer_name = serializers.CharField()
    verb = serializers.CharField()
    status_before = serializers.CharField()
    status_after = serializers.CharField()
    previous_event = serializers.IntegerField()
    previous_reviewer = serializers.IntegerField(allow_null=True)
    previous_reviewer_name = serializers.CharField()
    previous_verb = serializers.CharField()
    previous_at = serializers.DateTimeField()
    url = serializers.CharField()


class AnalyticsDisagreementsSerializer(serializers.Serializer):
    """Disagreements per pair of reviewers and the latest 50."""

    total = serializers.IntegerField()
    pairs = AnalyticsPairSerializer(many=True)
    latest = AnalyticsDisagreementSerializer(many=True)


class AnalyticsTotalsSerializer(serializers.Serializer):
    """Counted decisions, undo events, decisions that were undone, and reviewers with events."""

    decisions = serializers.IntegerField()
    undos = serializers.IntegerField()
    undone_decisions = serializers.IntegerField()
    reviewers = serializers.IntegerField()


class AnalyticsSerializer(serializers.Serializer):
    """GET /api/projects/{id}/analytics/."""

    project = serializers.IntegerField()
    scene = serializers.IntegerField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField(allow_null=True)
    totals = AnalyticsTotalsSerializer()
    activity = AnalyticsActivitySerializer()
    pace = AnalyticsPaceSerializer()
    accept_rate = AnalyticsAcceptRateSerializer()
    disagreements = AnalyticsDisagreementsSerializer()
