"""A queued message whose Job row is gone (its scene or project deleted meanwhile) is dropped with a warning."""

import logging

import pytest

from gpu_tasks import tasks

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "task",
    [tasks.ingest_scene_task, tasks.gpu_search_task, tasks.requery_proposals_task, tasks.interactive_refine_task],
)
def test_message_for_a_deleted_job_is_dropped_not_raised(task, caplog):
    with caplog.at_level(logging.WARNING, logger="gpu_tasks.tasks"):
        result = task.apply(args=[987654321])
    assert result.successful(), result.traceback
    assert "job 987654321 no longer exists" in caplog.text
