"""REST endpoints of the domain core: thin views over selectors and services."""

from django.contrib.gis.db.models.functions import AsGeoJSON
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from . import project_services, selectors, services
from .display_serializers import SceneDisplayInputSerializer, SceneDisplaySerializer
from .models import DetectionSource, DetectionStatus, SceneStatus
from .pagination import FeaturePagination
from .permissions import Action, require
from .project_serializers import ClassUpdateInputSerializer, ProjectCreateInputSerializer
from .serializers import (
    AnnotationInputSerializer,
    AnnotationSerializer,
    AnnotationUpdateInputSerializer,
    DetectionSerializer,
    MyMembershipSerializer,
    ObjectClassSerializer,
    ProjectSerializer,
    SceneSerializer,
)


def _int_param(request, name: str) -> int | None:
    """An optional integer query parameter; 400 when it is not one."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ValidationError({name: f"must be an integer, got {value!r}"}) from exc


def _float_param(request, name: str) -> float | None:
    """An optional float query parameter; 400 when it is not one."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise ValidationError({name: f"must be a number, got {value!r}"}) from exc


def _choice_param(request, name: str, choices) -> str | None:
    """An optional choice query parameter; 400 when it is not one of the choices."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in choices.values:
        raise ValidationError({name: f"must be one of {', '.join(choices.values)}, got {value!r}"})
    return value


def _bbox_filter(request, queryset, field: str):
    """Keep rows whose geometry intersects `?bbox=minlon,minlat,maxlon,maxlat`."""
    value = request.query_params.get("bbox")
    if not value:
        return queryset
    try:
        polygon = selectors.bbox_polygon(value)
    except ValueError as exc:
        raise ValidationError({"bbox": str(exc)}) from exc
    return queryset.filter(**{f"{field}__intersects": polygon})


BBOX_PARAM = OpenApiParameter("bbox", OpenApiTypes.STR, description="minlon,minlat,maxlon,maxlat (EPSG:4326)")


class ProjectListCreateApi(generics.ListCreateAPIView):
    """Your projects; POST creates one with you as manager and no classes, the default eight, or a copy of another's."""

    serializer_class = ProjectSerializer

    def get_queryset(self):
        return selectors.project_list(user=self.request.user).prefetch_related("memberships__user")

    @extend_schema(request=ProjectCreateInputSerializer, responses={201: ProjectSerializer})
    def post(self, request, *args, **kwargs):
        form = ProjectCreateInputSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        project = project_services.project_create(user=request.user, **form.validated_data)
        project = self.get_queryset().get(pk=project.pk)
        return Response(self.get_serializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(generics.RetrieveUpdateAPIView):
    """One of your projects; managers may rename it."""

    serializer_class = ProjectSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.project_list(user=self.request.user).prefetch_related("memberships__user")

    def perform_update(self, serializer):
        require(selectors.role_of(user=self.request.user, project=serializer.instance), Action.EDIT_PROJECT)
        serializer.save()


class ClassListCreateApi(generics.ListCreateAPIView):
    """A project's classes in list order; managers may add one (at the end, with the next stable index)."""

    serializer_class = ObjectClassSerializer
    pagination_class = None

    def get_queryset(self):
        project = selectors.project_get(user=self.request.user, project_id=self.kwargs["project_id"])
        return project.classes.order_by("position", "index")

    def create(self, request, *args, **kwargs):
        project = selectors.project_get(user=request.user, project_id=self.kwargs["project_id"])
        require(selectors.role_of(user=request.user, project=project), Action.EDIT_CLASSES)  # before the body
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer):
        project = selectors.project_get(user=self.request.user, project_id=self.kwargs["project_id"])
        serializer.instance = project_services.object_class_add(
            project=project, role=selectors.role_of(user=self.request.user, project=project),
            name=serializer.validated_data["name"], color=serializer.validated_data.get("color", "#ff0000"),
        )


class ClassDetailApi(generics.RetrieveDestroyAPIView):
    """One class; managers may rename, recolour or move it (its index never changes), or delete it while unused."""

    serializer_class = ObjectClassSerializer

    def get_queryset(self):
        return selectors.class_list(user=self.request.user).select_related("project")

    @extend_schema(request=ClassUpdateInputSerializer, responses=ObjectClassSerializer)
    def patch(self, request, *args, **kwargs):
        object_class = self.get_object()
        role = selectors.role_of(user=request.user, project=object_class.project)
        require(role, Action.EDIT_CLASSES)  # a role that may not edit is told so, whatever it sent
        form = ClassUpdateInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        object_class = project_services.object_class_update(object_class=object_class, role=role, **form.validated_data)
        return Response(self.get_serializer(object_class).data)

    def perform_destroy(self, instance):
        project_services.object_class_delete(
            object_class=instance, role=selectors.role_of(user=self.request.user, project=instance.project)
        )


class SceneListApi(generics.ListAPIView):
    """Scenes you can see; `?project=ID` and `?status=` filter."""

    serializer_class = SceneSerializer

    @extend_schema(parameters=[OpenApiParameter("project", int), OpenApiParameter("status", str)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.scene_list(user=self.request.user)
        if "project_id" in self.kwargs:
            # /projects/{id}/scenes/ of a project the caller is not in is 404, as the project itself is.
            qs = qs.filter(project=selectors.project_get(user=self.request.user, project_id=self.kwargs["project_id"]))
        elif (project_id := _int_param(self.request, "project")) is not None:
            qs = qs.filter(project_id=project_id)
        if status_ := _choice_param(self.request, "status", SceneStatus):
            qs = qs.filter(status=status_)
        return qs


class SceneDetailApi(generics.RetrieveDestroyAPIView):
    """One scene with footprint and metadata; managers may delete it."""

    serializer_class = SceneSerializer

    def get_queryset(self):
        return selectors.scene_list(user=self.request.user)

    def perform_destroy(self, instance):
        services.scene_delete(scene=instance, role=selectors.role_of(user=self.request.user, project=instance.project))


class ProjectMeApi(APIView):
    """The caller in a project: their role and the class they last drew with (any member may set their own)."""

    @extend_schema(responses=MyMembershipSerializer)
    def get(self, request, project_id: int):
        membership = selectors.membership_get(user=request.user, project_id=project_id)
        return Response(MyMembershipSerializer(membership).data)

    @extend_schema(request=MyMembershipSerializer, responses=MyMembershipSerializer)
    def patch(self, request, project_id: int):
        membership = selectors.membership_get(user=request.user, project_id=project_id)
        form = MyMembershipSerializer(data=request.data, context={"membership": membership})
        form.is_valid(raise_exception=True)
        membership = services.membership_last_class_set(
            membership=membership, object_class=form.validated_data["last_class_id"]
        )
        return Response(MyMembershipSerializer(membership).data)


class AnnotationListCreateApi(generics.ListCreateAPIView):
    """Example polygons as a FeatureCollection; filters: scene, class, bbox. POST a Feature to add one."""

    serializer_class = AnnotationSerializer
    pagination_class = FeaturePagination

    @extend_schema(parameters=[OpenApiParameter("scene", int), OpenApiParameter("class", int), BBOX_PARAM])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.annotation_list(user=self.request.user)
        if (scene_id := _int_param(self.request, "scene")) is not None:
            qs = qs.filter(scene_id=scene_id)
        if (class_id := _int_param(self.request, "class")) is not None:
            qs = qs.filter(object_class_id=class_id)
        return _bbox_filter(self.request, qs, "geometry")

    @extend_schema(request=AnnotationSerializer, responses={201: AnnotationSerializer})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        form = AnnotationInputSerializer(data=request.data, context={"request": request})
        form.is_valid(raise_exception=True)
        scene = form.validated_data["scene"]
        annotation = services.annotation_create(
            scene=scene,
            object_class=form.validated_data["object_class"],
            geometry=form.validated_data["geometry"],
            author=request.user,
            role=selectors.role_of(user=request.user, project=scene.project),
        )
        return Response(self.get_serializer(annotation).data, status=status.HTTP_201_CREATED)


class AnnotationDetailApi(generics.RetrieveDestroyAPIView):
    """One example polygon; its author or a manager may change its class or outline (PATCH) or delete it."""

    serializer_class = AnnotationSerializer

    def get_queryset(self):
        return selectors.annotation_list(user=self.request.user).select_related("scene")

    @extend_schema(request=AnnotationUpdateInputSerializer, responses=AnnotationSerializer)
    def patch(self, request, *args, **kwargs):
        annotation = self.get_object()
        form = AnnotationUpdateInputSerializer(data=request.data, context={"annotation": annotation})
        form.is_valid(raise_exception=True)
        annotation = services.annotation_update(
            annotation=annotation, actor=request.user,
            role=selectors.role_of(user=request.user, project=annotation.scene.project), **form.validated_data,
        )
        return Response(self.get_serializer(annotation).data)

    def perform_destroy(self, instance):
        role = selectors.role_of(user=self.request.user, project=instance.scene.project)
        require(role, Action.ANNOTATE)  # a member demoted to viewer no longer changes examples, even their own
        if instance.author_id != self.request.user.pk:
            require(role, Action.EDIT_PROJECT)
        instance.delete()


class DetectionListApi(generics.ListAPIView):
    """Detections as a FeatureCollection, best score first; filters: scene, class, status, source, score, bbox."""

    serializer_class = DetectionSerializer
    pagination_class = FeaturePagination

    @extend_schema(
        parameters=[
            OpenApiParameter("scene", int), OpenApiParameter("class", int),
            OpenApiParameter("status", str, enum=DetectionStatus.values),
            OpenApiParameter("source", str, enum=DetectionSource.values),
            OpenApiParameter("score_min", float), OpenApiParameter("score_max", float), BBOX_PARAM,
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        request = self.request
        qs = selectors.detection_list(user=request.user)
        if (scene_id := _int_param(request, "scene")) is not None:
            qs = qs.filter(scene_id=scene_id)
        if (class_id := _int_param(request, "class")) is not None:
            qs = qs.filter(object_class_id=class_id)
        if status_ := _choice_param(request, "status", DetectionStatus):
            qs = qs.filter(status=status_)
        if source := _choice_param(request, "source", DetectionSource):
            qs = qs.filter(source=source)
        if (score_min := _float_param(request, "score_min")) is not None:
            qs = qs.filter(score__gte=score_min)
        if (score_max := _float_param(request, "score_max")) is not None:
            qs = qs.filter(score__lte=score_max)
        # The page's GeoJSON written by PostGIS; the geometries themselves are never loaded into Python.
        qs = qs.select_related("object_class").defer("geometry", "bbox", "prompt_box", "geometry_3857")
        qs = qs.annotate(geometry_geojson=AsGeoJSON("geometry", precision=15))
        return _bbox_filter(request, qs, "geometry")


class DetectionDetailApi(generics.RetrieveAPIView):
    """One detection."""

    serializer_class = DetectionSerializer

    def get_queryset(self):
        return selectors.detection_list(user=self.request.user)


class SceneDisplayApi(APIView):
    """A scene's display: fill value, stretch, warnings and real extent. Managers change them with PATCH."""

    @extend_schema(responses=SceneDisplaySerializer)
    def get(self, request, scene_id: int):
        scene = selectors.scene_get(user=request.user, scene_id=scene_id)
        return Response(SceneDisplaySerializer(scene).data)

    @extend_schema(request=SceneDisplayInputSerializer, responses=SceneDisplaySerializer)
    def patch(self, request, scene_id: int):
        scene = selectors.scene_get(user=request.user, scene_id=scene_id)
        body = SceneDisplayInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        scene = services.scene_display_update(
            scene=scene, role=selectors.role_of(user=request.user, project=scene.project), **body.validated_data
        )
        return Response(SceneDisplaySerializer(scene).data)
