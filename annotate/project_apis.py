"""Project management endpoints: class order and deletion, members. Thin views over project_services."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from . import project_services, selectors
from .permissions import Action, require
from .project_serializers import (
    ClassReorderInputSerializer,
    MemberAddInputSerializer,
    MemberRoleInputSerializer,
    MemberSerializer,
)
from .serializers import ObjectClassSerializer


def _project_and_role(request, project_id: int):
    """One of the caller's projects (404 otherwise) and their role in it."""
    project = selectors.project_get(user=request.user, project_id=project_id)
    return project, selectors.role_of(user=request.user, project=project)


class ClassReorderApi(APIView):
    """POST: put the project's classes in a new order (managers); the export indexes do not change."""

    @extend_schema(request=ClassReorderInputSerializer, responses=ObjectClassSerializer(many=True))
    def post(self, request, project_id: int):
        project, role = _project_and_role(request, project_id)
        require(role, Action.EDIT_CLASSES)  # before the body is read
        form = ClassReorderInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        classes = project_services.object_classes_reorder(
            project=project, role=role, order=form.validated_data["order"]
        )
        return Response(ObjectClassSerializer(classes, many=True).data)


class MemberListApi(APIView):
    """GET: a project's members (any member may read them). POST: add one by user name with a role (managers)."""

    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request, project_id: int):
        project, _ = _project_and_role(request, project_id)
        return Response(MemberSerializer(selectors.member_list(project=project), many=True).data)

    @extend_schema(request=MemberAddInputSerializer, responses={201: MemberSerializer})
    def post(self, request, project_id: int):
        project, role = _project_and_role(request, project_id)
        require(role, Action.MANAGE_MEMBERS)  # before the user name is looked up
        form = MemberAddInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        membership = project_services.member_add(
            project=project, role=role, user=form.validated_data["username"], member_role=form.validated_data["role"]
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    """PATCH: change a member's role; DELETE: remove them (managers; the last manager stays)."""

    @extend_schema(request=MemberRoleInputSerializer, responses=MemberSerializer)
    def patch(self, request, project_id: int, user_id: int):
        project, role = _project_and_role(request, project_id)
        require(role, Action.MANAGE_MEMBERS)  # before the member or the body is looked at
        membership = selectors.member_get(project=project, user_id=user_id)
        form = MemberRoleInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        membership = project_services.member_role_change(
            membership=membership, role=role, member_role=form.validated_data["role"]
        )
        return Response(MemberSerializer(membership).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, project_id: int, user_id: int):
        project, role = _project_and_role(request, project_id)
        require(role, Action.MANAGE_MEMBERS)
        membership = selectors.member_get(project=project, user_id=user_id)
        project_services.member_remove(membership=membership, role=role)
        return Response(status=status.HTTP_204_NO_CONTENT)

