"""Project management through the API: starting classes, class edits and order, refused deletions, members."""

import pytest
from django.contrib.gis.geos import Polygon

from annotate.models import Annotation, Detection, DetectionSource, Membership, ObjectClass, Project, Role
from annotate.services import DEFAULT_CLASSES, membership_set
from tests.api.support import assert_error, ready_scene
from tests.conftest import client_for, make_user

pytestmark = pytest.mark.django_db


def _box(x0, y0, size=1e-4) -> Polygon:
    polygon = Polygon.from_bbox((x0, y0, x0 + size, y0 + size))
    polygon.srid = 4326
    return polygon


def _names(api, project_id) -> list[str]:
    return [c["name"] for c in api.get(f"/api/projects/{project_id}/classes/").json()]


@pytest.mark.parametrize("starting, expected", [("none", []), ("default", [n for n, _ in DEFAULT_CLASSES])])
def test_a_new_project_starts_with_no_classes_or_the_default_eight(api, manager, starting, expected):
    response = api.post("/api/projects/", {"name": f"New {starting}", "starting_classes": starting}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["my_role"] == "manager" and body["members"] == [{"user": manager.pk, "username": "manager",
                                                                   "role": "manager"}]
    assert _names(api, body["id"]) == expected


def test_copied_classes_keep_names_colours_and_order_and_get_fresh_indexes(api, project):
    classes = list(project.classes.order_by("position"))
    order = [classes[3].pk, classes[0].pk] + [c.pk for c in classes if c.pk not in (classes[3].pk, classes[0].pk)]
    assert api.post(f"/api/projects/{project.pk}/classes/reorder/", {"order": order}, format="json").status_code == 200
    api.patch(f"/api/classes/{classes[3].pk}/", {"color": "#123abc"}, format="json")
    response = api.post("/api/projects/", {"name": "Copy", "starting_classes": "copy", "copy_from": project.pk},
                        format="json")
    assert response.status_code == 201, response.content
    copied = api.get(f"/api/projects/{response.json()['id']}/classes/").json()
    source = api.get(f"/api/projects/{project.pk}/classes/").json()
    assert [(c["name"], c["color"]) for c in copied] == [(c["name"], c["color"]) for c in source]
    assert copied[0]["name"] == classes[3].name and copied[0]["color"] == "#123abc"
    assert [c["index"] for c in copied] == list(range(len(copied)))


def test_copying_from_a_project_you_are_not_in_is_refused_like_a_missing_one(api, other_project):
    for copy_from in (other_project.pk, 999_999):
        response = api.post("/api/projects/", {"name": "Copy", "starting_classes": "copy", "copy_from": copy_from},
                            format="json")
        err = assert_error(response, 400, "invalid")
        assert "Not one of your projects" in err["message"]
    err = assert_error(api.post("/api/projects/", {"name": "Copy", "starting_classes": "copy"}, format="json"), 400)
    assert "copy_from" in err["message"]
    assert not Project.objects.filter(name="Copy").exists()


def test_rename_recolour_and_move_keep_the_export_index(api, project):
    cls = project.classes.order_by("position")[5]
    index = cls.index
    response = api.patch(f"/api/classes/{cls.pk}/", {"name": "Tank", "color": "#ABCDEF", "position": 0},
                         format="json")
    assert response.status_code == 200, response.content
    assert response.json() | {} == {"id": cls.pk, "project": project.pk, "name": "Tank", "color": "#abcdef",
                                    "index": index, "position": 0}
    assert _names(api, project.pk)[0] == "Tank"
    assert sorted(c.position for c in project.classes.all()) == list(range(8))


def test_class_names_are_unique_ignoring_case_and_colours_must_be_hex(api, project):
    cls = project.classes.order_by("position")[1]
    err = assert_error(api.patch(f"/api/classes/{cls.pk}/", {"name": "brick kiln"}, format="json"), 409, "conflict")
    assert "already has a class named" in err["message"]
    err = assert_error(api.post(f"/api/projects/{project.pk}/classes/", {"name": "STP"}, format="json"), 409)
    assert_error(api.patch(f"/api/classes/{cls.pk}/", {"color": "red"}, format="json"), 400, "invalid")
    assert_error(api.patch(f"/api/classes/{cls.pk}/", {}, format="json"), 400, "invalid")


def test_a_reorder_must_name_every_class_once(api, project):
    ids = list(project.classes.values_list("pk", flat=True))
    for order in (ids[:-1], ids + [ids[0]], ids[:-1] + [999_999]):
        err = assert_error(api.post(f"/api/projects/{project.pk}/classes/reorder/", {"order": order}, format="json"),
                           400)
        assert "every class id" in err["message"]
    assert list(project.classes.order_by("position").values_list("pk", flat=True)) == sorted(ids)


def test_a_class_in_use_is_not_deleted_and_the_message_counts_its_uses(api, project, manager):
    scene = ready_scene(project, width=400, height=400)
    kiln = project.classes.get(name="Brick Kiln")
    for i in range(2):
        Annotation.objects.create(scene=scene, object_class=kiln, geometry=_box(77.2 + i * 1e-3, 28.6), author=manager)
    for i in range(3):
        Detection.objects.create(scene=scene, object_class=kiln, geometry=_box(77.21, 28.6 + i * 1e-3),
                                 bbox=_box(77.21, 28.6 + i * 1e-3), source=DetectionSource.SEARCH, score=0.5)
    err = assert_error(api.delete(f"/api/classes/{kiln.pk}/"), 409, "class_in_use")
    assert err["message"] == "Brick Kiln is used by 2 examples and 3 detections; relabel or delete them first."
    assert err["detail"] == {"examples": 2, "detections": 3}
    assert ObjectClass.objects.filter(pk=kiln.pk).exists()
    Annotation.objects.filter(object_class=kiln).delete()
    err = assert_error(api.delete(f"/api/classes/{kiln.pk}/"), 409, "class_in_use")
    assert err["message"].startswith("Brick Kiln is used by 3 detections;")
    unused = project.classes.get(name="STP")
    assert api.delete(f"/api/classes/{unused.pk}/").status_code == 204
    assert sorted(c.position for c in project.classes.all()) == list(range(7))  # no gap left in the order


def test_members_are_added_by_user_name_and_unknown_names_are_told(api, project):
    make_user("Ravi")
    response = api.post(f"/api/projects/{project.pk}/members/", {"username": "Ravi", "role": "reviewer"},
                        format="json")
    assert response.status_code == 201, response.content
    assert response.json()["username"] == "Ravi" and response.json()["role"] == "reviewer"
    err = assert_error(api.post(f"/api/projects/{project.pk}/members/", {"username": "ravi", "role": "viewer"},
                                format="json"), 400, "invalid")
    assert "no user named 'ravi'" in err["message"] and "case-sensitive" in err["message"]
    err = assert_error(api.post(f"/api/projects/{project.pk}/members/", {"username": "Ravi", "role": "viewer"},
                                format="json"), 409, "conflict")
    assert "already a member (as reviewer)" in err["message"]
    assert_error(api.post(f"/api/projects/{project.pk}/members/", {"username": "Ravi", "role": "boss"},
                          format="json"), 400, "invalid")
    listed = api.get(f"/api/projects/{project.pk}/members/").json()
    assert [(m["username"], m["role"]) for m in listed] == [("manager", "manager"), ("Ravi", "reviewer")]


def test_a_non_manager_cannot_probe_user_names(project):
    viewer = make_user("vic")
    membership_set(project=project, user=viewer, role=Role.VIEWER)
    response = client_for(viewer).post(f"/api/projects/{project.pk}/members/", {"username": "nobody", "role": "viewer"},
                                       format="json")
    assert_error(response, 403, "forbidden")


def test_the_last_manager_can_be_neither_demoted_nor_removed(api, project, manager):
    url = f"/api/projects/{project.pk}/members/{manager.pk}/"
    err = assert_error(api.patch(url, {"role": "viewer"}, format="json"), 409, "last_manager")
    assert "only manager" in err["message"] and "make someone else a manager first" in err["message"]
    assert_error(api.delete(url), 409, "last_manager")
    assert Membership.objects.get(project=project, user=manager).role == Role.MANAGER
    second = make_user("max")
    membership_set(project=project, user=second, role=Role.MANAGER)
    assert api.patch(url, {"role": "reviewer"}, format="json").status_code == 200
    # Now max is the only manager; the first manager (a reviewer now) may no longer manage members at all.
    assert_error(api.delete(f"/api/projects/{project.pk}/members/{second.pk}/"), 403, "forbidden")
    max_api = client_for(second)
    assert_error(max_api.delete(f"/api/projects/{project.pk}/members/{second.pk}/"), 409, "last_manager")
    assert max_api.delete(url).status_code == 204
    assert not Membership.objects.filter(project=project, user=manager).exists()


def test_members_of_another_project_are_404(api, other_project, outsider):
    assert_error(api.get(f"/api/projects/{other_project.pk}/members/"), 404)
    assert_error(api.patch(f"/api/projects/{other_project.pk}/members/{outsider.pk}/", {"role": "viewer"},
                           format="json"), 404)


def test_classes_are_listed_in_their_order_everywhere(api, project):
    ids = list(project.classes.order_by("position").values_list("pk", flat=True))
    new_order = list(reversed(ids))
    response = api.post(f"/api/projects/{project.pk}/classes/reorder/", {"order": new_order}, format="json")
    assert [c["id"] for c in response.json()] == new_order
    assert [c["id"] for c in api.get(f"/api/projects/{project.pk}/classes/").json()] == new_order
    assert list(ObjectClass.objects.filter(project=project).values_list("pk", flat=True)) == new_order


def test_a_role_that_may_not_edit_is_told_so_before_its_input_is_judged(project):
    reviewer = make_user("rex")
    membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    client = client_for(reviewer)
    cls = project.classes.first()
    for response in (
        client.patch(f"/api/classes/{cls.pk}/", {"color": "red"}, format="json"),
        client.post(f"/api/projects/{project.pk}/classes/", {"name": ""}, format="json"),
        client.post(f"/api/projects/{project.pk}/classes/reorder/", {"order": "x"}, format="json"),
        client.patch(f"/api/projects/{project.pk}/members/999999/", {"role": "boss"}, format="json"),
        client.delete(f"/api/projects/{project.pk}/members/999999/"),
    ):
        assert_error(response, 403, "forbidden")


def test_the_scene_pages_score_filters_follow_the_class_order(api, project):
    scene = ready_scene(project, width=400, height=400)
    ids = list(project.classes.order_by("position").values_list("pk", flat=True))
    new_order = ids[3:] + ids[:3]
    api.post(f"/api/projects/{project.pk}/classes/reorder/", {"order": new_order}, format="json")
    histogram = api.get(f"/api/scenes/{scene.pk}/score-histogram/").json()
    assert [c["object_class"] for c in histogram["classes"]] == new_order
