"""Review's server-rendered page shells; the TypeScript front end draws them from the API."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from annotate import selectors as annotate_selectors
from annotate.permissions import Action, role_allows

from .analytics import BREAK_SECONDS


@login_required
def analytics_page(request, project_id: int):
    """A project's review analytics: charts of the analytics API, filters, and the event CSV for managers."""
    project = annotate_selectors.project_get(user=request.user, project_id=project_id)
    role = annotate_selectors.role_of(user=request.user, project=project)
    return render(
        request,
        "review/analytics.html",
        {
            "project": project, "role": role, "scenes": project.scenes.order_by("name").only("pk", "name"),
            "can_export": role_allows(role, Action.EXPORT_EVENTS), "break_minutes": BREAK_SECONDS // 60,
        },
    )
