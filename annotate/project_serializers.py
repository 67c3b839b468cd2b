"""Input and output shapes of project management: project creation, class edits and order, members."""

from django.contrib.auth import get_user_model
from rest_framework import serializers

from . import selectors
from .models import Membership, Role
from .project_services import StartingClasses
from .serializers import ProjectSerializer

COLOR_FIELD_KWARGS = {"error_messages": {"invalid": "Give a colour as #rrggbb, for example #e6194b."}}


class ProjectCreateInputSerializer(ProjectSerializer):
    """POST /api/projects/: name, description, and the classes to start with; context: `request`.

    `starting_classes`: none, default (the eight default classes) or copy (names, colours and order of
    `copy_from`, a project the caller is a member of).
    """

    starting_classes = serializers.ChoiceField(
        choices=[c.value for c in StartingClasses], default=StartingClasses.DEFAULT.value, write_only=True
    )
    copy_from = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, required=False, allow_null=True, write_only=True,
        help_text="with starting_classes=copy: the id of one of your projects",
    )

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "starting_classes", "copy_from"]

    def validate(self, attrs: dict) -> dict:
        """copy needs copy_from, a project of the caller's (any other id answers the same "not one of yours")."""
        copy_from = attrs.pop("copy_from", None)
        if attrs.get("starting_classes") == StartingClasses.COPY:
            if copy_from is None:
                raise serializers.ValidationError({"copy_from": ["Choose the project whose classes to copy."]})
            source = selectors.project_list(user=self.context["request"].user).filter(pk=copy_from).first()
            if source is None:
                raise serializers.ValidationError(
                    {"copy_from": ["Not one of your projects; copy classes from a project you are a member of."]}
                )
            attrs["copy_from"] = source
        return attrs


class ClassUpdateInputSerializer(serializers.Serializer):
    """PATCH /api/classes/{id}/: any of a new name, colour and position (0 = first)."""

    name = serializers.CharField(max_length=100, required=False, trim_whitespace=True)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, **COLOR_FIELD_KWARGS)
    position = serializers.IntegerField(min_value=0, max_value=10_000, required=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Send `name`, `color` and/or `position` to change.")
        return attrs


class ClassReorderInputSerializer(serializers.Serializer):
    """POST /api/projects/{id}/classes/reorder/: every class id of the project, once each, in the new order."""

    order = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), max_length=1000, allow_empty=False
    )


class MemberSerializer(serializers.ModelSerializer):
    """A member of a project: the user's id and name and their role."""

    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user", "username", "role"]
        read_only_fields = ["user", "username", "role"]


class MemberAddInputSerializer(serializers.Serializer):
    """POST /api/projects/{id}/members/: a user name (as they sign in) and a role."""

    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)

    def validate_username(self, value: str):
        """The user with this name, or a message saying to check it (names are case-sensitive)."""
        user = get_user_model().objects.filter(username=value.strip()).first()
        if user is None:
            raise serializers.ValidationError(
                f"There is no user named {value.strip()!r}; check the spelling (user names are case-sensitive) "
                "or ask an administrator to create the account first."
            )
        return user


class MemberRoleInputSerializer(serializers.Serializer):
    """PATCH /api/projects/{id}/members/{user_id}/: the member's new role."""

    role = serializers.ChoiceField(choices=Role.choices)

