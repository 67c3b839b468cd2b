"""Work cell endpoints: a scene's cells as GeoJSON, splitting, assigning (by hand or round-robin), done, reopen."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors as annotate_selectors
from annotate.permissions import Action, role_allows

from . import cell_selectors, cells


class CellPropertiesSerializer(serializers.Serializer):
    """What the map shows of a cell."""

    label = serializers.CharField()
    row = serializers.IntegerField()
    col = serializers.IntegerField()
    size_m = serializers.FloatField()
    status = serializers.ChoiceField(choices=("open", "in_progress", "done"))
    assignee = serializers.IntegerField(allow_null=True)
    assignee_name = serializers.CharField(allow_null=True)
    done_by_name = serializers.CharField(allow_null=True)
    done_at = serializers.DateTimeField(allow_null=True)
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="detections per status")
    total = serializers.IntegerField()
    decided = serializers.IntegerField()


class CellFeatureSerializer(serializers.Serializer):
    """One cell as a GeoJSON feature."""

    type = serializers.CharField()
    id = serializers.IntegerField()
    geometry = serializers.JSONField()
    properties = CellPropertiesSerializer()


class CellCollectionSerializer(serializers.Serializer):
    """A scene's cells as a GeoJSON FeatureCollection, with the revision live updates compare."""

    type = serializers.CharField()
    features = CellFeatureSerializer(many=True)
    revision = serializers.CharField()
    me = serializers.IntegerField(help_text="the caller's user id (their cells are those assigned to it)")
    can_manage = serializers.BooleanField(help_text="whether the caller may split, assign and reopen")


class SplitInputSerializer(serializers.Serializer):
    """POST /api/scenes/{id}/cells/split/."""

    size_m = serializers.FloatField(help_text="side of each square cell in metres")
    area = serializers.JSONField(required=False, allow_null=True, help_text="a GeoJSON Polygon; the scene if absent")

    def validate_size_m(self, value: float) -> float:
        if not value > 0 or value == float("inf"):
            raise serializers.ValidationError("size_m must be a positive number of metres, like 250.")
        return value


class AssignInputSerializer(serializers.Serializer):
    """POST /api/cells/{id}/assign/: a reviewer's user id, or null to unassign."""

    user = serializers.IntegerField(allow_null=True)


class RoundRobinInputSerializer(serializers.Serializer):
    """POST /api/scenes/{id}/cells/assign-round-robin/."""

    users = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=500)


def _valid(serializer_class, data) -> dict:
    body = serializer_class(data=data)
    body.is_valid(raise_exception=True)
    return body.validated_data


def _collection(scene, user) -> Response:
    """The scene's cells, their revision, and what the caller may do with them."""
    role = annotate_selectors.role_of(user=user, project=scene.project)
    revision = cells.cells_revision(scene)
    return Response({
        **cell_selectors.cells_feature_collection(scene=scene, revision=revision),
        "revision": revision,
        "me": user.pk,
        "can_manage": role_allows(role, Action.MANAGE_CELLS),
    })


def _one(cell, user) -> Response:
    """The cell's whole scene again: the map redraws labels and progress from one answer."""
    return _collection(cell.scene, user)


class SceneCellsApi(APIView):
    """A scene's work cells with label, status, assignee and progress counts."""

    @extend_schema(responses=CellCollectionSerializer)
    def get(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        return _collection(scene, request.user)


class SceneCellsSplitApi(APIView):
    """Split a scene (or a drawn area of it) into square cells of size_m metres (managers)."""

    @extend_schema(request=SplitInputSerializer, responses=CellCollectionSerializer)
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        data = _valid(SplitInputSerializer, request.data)
        cells.cells_split(scene=scene, actor=request.user, size_m=data["size_m"], area=data.get("area"))
        return _collection(scene, request.user)


class SceneCellsRoundRobinApi(APIView):
    """Deal the scene's unassigned cells to the chosen reviewers in turn (managers)."""

    @extend_schema(request=RoundRobinInputSerializer, responses=CellCollectionSerializer)
    def post(self, request, scene_id: int):
        scene = annotate_selectors.scene_get(user=request.user, scene_id=scene_id)
        data = _valid(RoundRobinInputSerializer, request.data)
        cells.cells_assign_round_robin(scene=scene, actor=request.user, user_ids=data["users"])
        return _collection(scene, request.user)


class CellAssignApi(APIView):
    """Give a cell to a reviewer, or to nobody (managers)."""

    @extend_schema(request=AssignInputSerializer, responses=CellCollectionSerializer)
    def post(self, request, pk: int):
        cell = cell_selectors.cell_get(user=request.user, cell_id=pk)
        data = _valid(AssignInputSerializer, request.data)
        return _one(cells.cell_assign(cell=cell, actor=request.user, user_id=data["user"]), request.user)


class CellDoneApi(APIView):
    """Mark a cell done (its assignee or a manager): read-only until reopened."""

    @extend_schema(request=None, responses=CellCollectionSerializer)
    def post(self, request, pk: int):
        cell = cell_selectors.cell_get(user=request.user, cell_id=pk)
        return _one(cells.cell_mark_done(cell=cell, actor=request.user), request.user)


class CellReopenApi(APIView):
    """Reopen a done cell (managers)."""

    @extend_schema(request=None, responses=CellCollectionSerializer)
    def post(self, request, pk: int):
        cell = cell_selectors.cell_get(user=request.user, cell_id=pk)
        return _one(cells.cell_reopen(cell=cell, actor=request.user), request.user)
