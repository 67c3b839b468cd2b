"""Server-rendered page shells; the TypeScript front end does the rest through the API."""

import json

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from . import selectors
from .models import Role
from .permissions import Action, role_allows
from .serializers import SceneSerializer
from .services import DEFAULT_CLASSES


@login_required
def home(request):
    """The user's projects, and a form to create one."""
    projects = selectors.project_list(user=request.user)
    return render(request, "annotate/home.html", {"projects": projects, "default_classes": DEFAULT_CLASSES})


@login_required
def project_page(request, project_id: int):
    """A project's scenes, with upload."""
    project = selectors.project_get(user=request.user, project_id=project_id)
    role = selectors.role_of(user=request.user, project=project)
    return render(
        request,
        "annotate/project.html",
        {
            "project": project, "role": role, "can_upload": role_allows(role, Action.UPLOAD_SCENE),
            "can_edit_project": role_allows(role, Action.EDIT_PROJECT),
            "can_edit_classes": role_allows(role, Action.EDIT_CLASSES),
            "can_manage_members": role_allows(role, Action.MANAGE_MEMBERS),
            "can_delete_scenes": role_allows(role, Action.DELETE_SCENE),
            "roles": Role.choices,
        },
    )


@login_required
def scene_page(request, scene_id: int):
    """A scene on the map (home of the review tools)."""
    scene = selectors.scene_get(user=request.user, scene_id=scene_id)
    data = SceneSerializer(scene).data
    membership = selectors.membership_get(user=request.user, project_id=scene.project_id)
    role = membership.role
    return render(
        request,
        "annotate/scene.html",
        {
            "scene": scene, "project": scene.project, "scene_data": json.loads(json.dumps(data, default=str)),
            "role": role, "can_annotate": role_allows(role, Action.ANNOTATE),
            "can_review": role_allows(role, Action.REVIEW),
            "can_run_jobs": role_allows(role, Action.RUN_JOBS),
            "can_refine": role_allows(role, Action.REFINE_ONE),
            "can_bulk": role_allows(role, Action.BULK_REVIEW),
            "last_class_id": membership.last_class_id,
        },
    )
