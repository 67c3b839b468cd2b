"""Every role against every action endpoint: the exact status each gets (issue 10: roles enforced by the API).

Managers do everything; reviewers decide, relabel, reshape, draw missed objects, refine one detection, update
proposals (and keep drawing examples); annotators draw examples and run jobs (upload, embed, search, refine);
viewers read; a non-member sees nothing (404, the same as a missing object). Work cells add their own rows
(ACTIONS is a list: append to it).
"""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.gis.geos import Polygon

from annotate.models import Annotation, Detection, DetectionSource, Membership, Role
from annotate.services import membership_set
from review import services as review_services
from tests.api.support import ready_scene
from tests.conftest import NEON, client_for, make_user

pytestmark = pytest.mark.django_db

ROLES = ["manager", "reviewer", "annotator", "viewer", "outsider"]
LON, LAT = 77.2, 28.6


def _box(x0, y0, size=1e-4) -> Polygon:
    polygon = Polygon.from_bbox((x0, y0, x0 + size, y0 + size))
    polygon.srid = 4326
    return polygon


def _geojson(x0, y0, size=1e-4) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + size, y0], [x0 + size, y0 + size],
                                                [x0, y0 + size], [x0, y0]]]}


@dataclass
class World:
    """A project with one member of each role, a ready scene, a proposed detection and the actor's own things."""

    project: object
    scene: object
    classes: list
    users: dict
    actor: object
    detection: Detection
    manual: Detection | None
    example: Annotation
    spare_member: object

    def client(self):
        return client_for(self.actor)


@pytest.fixture
def world_for(project, manager, outsider):
    """Build the world as seen by one role."""

    def build(role_name: str) -> World:
        users = {"manager": manager, "outsider": outsider}
        for name, role in (("reviewer", Role.REVIEWER), ("annotator", Role.ANNOTATOR), ("viewer", Role.VIEWER)):
            users[name] = make_user(f"{name}-{uuid.uuid4().hex[:6]}")
            membership_set(project=project, user=users[name], role=role)
        spare = make_user(f"spare-{uuid.uuid4().hex[:6]}")
        membership_set(project=project, user=spare, role=Role.VIEWER)
        actor = users[role_name]
        scene = ready_scene(project, width=400, height=400, lon=LON, lat=LAT)
        classes = list(project.classes.order_by("position"))
        detection = Detection.objects.create(
            scene=scene, object_class=classes[0], geometry=_box(LON + 0.001, LAT + 0.001),
            bbox=_box(LON + 0.001, LAT + 0.001), score=0.9, source=DetectionSource.SEARCH,
        )
        # The actor's own example (others may edit only their own), the manager's for a non-member.
        author = actor if role_name != "outsider" else manager
        example = Annotation.objects.create(
            scene=scene, object_class=classes[0], geometry=_box(LON + 0.002, LAT + 0.002), author=author
        )
        manual = None
        if role_name in ("manager", "reviewer"):
            manual = review_services.detection_create_manual(
                scene=scene, actor=actor, object_class=classes[1], geometry=_box(LON + 0.003, LAT + 0.003),
                client_id="setup-manual",
            ).detection
        else:  # drawn by the manager: a role that may not review may not delete it either
            manual = review_services.detection_create_manual(
                scene=scene, actor=manager, object_class=classes[1], geometry=_box(LON + 0.003, LAT + 0.003),
                client_id="setup-manual",
            ).detection
        return World(project, scene, classes, users, actor, detection, manual, example, spare)

    return build


def _undo(w: World):
    # The actor's own last decision where they can decide; otherwise the manager's (not theirs to undo).
    decider = w.actor if w.actor in (w.users["manager"], w.users["reviewer"]) else w.users["manager"]
    event = review_services.detection_review(
        detection=w.detection, actor=decider, verdict="accepted", expected_version=w.detection.version,
        client_id="setup-undo",
    )
    return w.client().post("/api/review/undo/", {"event": event.pk, "client_id": "u1"}, format="json")


def _upload(w: World):
    with open(NEON, "rb") as fh:
        return w.client().post(f"/api/projects/{w.project.pk}/scenes/upload/", {"file": fh}, format="multipart")


# (name, request, the status each of manager, reviewer, annotator, viewer, outsider gets)
ACTIONS: list[tuple[str, Callable[[World], object], tuple[int, int, int, int, int]]] = [
    ("project read", lambda w: w.client().get(f"/api/projects/{w.project.pk}/"), (200, 200, 200, 200, 404)),
    ("project edit", lambda w: w.client().patch(f"/api/projects/{w.project.pk}/", {"description": "d"}, format="json"),
     (200, 403, 403, 403, 404)),
    ("class add", lambda w: w.client().post(f"/api/projects/{w.project.pk}/classes/", {"name": "Tank"}, format="json"),
     (201, 403, 403, 403, 404)),
    ("class rename", lambda w: w.client().patch(f"/api/classes/{w.classes[2].pk}/", {"name": "Kiln 2"}, format="json"),
     (200, 403, 403, 403, 404)),
    ("class recolour",
     lambda w: w.client().patch(f"/api/classes/{w.classes[2].pk}/", {"color": "#00aa00"}, format="json"),
     (200, 403, 403, 403, 404)),
    ("class move", lambda w: w.client().patch(f"/api/classes/{w.classes[2].pk}/", {"position": 0}, format="json"),
     (200, 403, 403, 403, 404)),
    ("class reorder", lambda w: w.client().post(
        f"/api/projects/{w.project.pk}/classes/reorder/", {"order": [c.pk for c in reversed(w.classes)]},
        format="json"),
     (200, 403, 403, 403, 404)),
    ("class delete", lambda w: w.client().delete(f"/api/classes/{w.classes[7].pk}/"), (204, 403, 403, 403, 404)),
    ("member list", lambda w: w.client().get(f"/api/projects/{w.project.pk}/members/"), (200, 200, 200, 200, 404)),
    ("member add", lambda w: w.client().post(
        f"/api/projects/{w.project.pk}/members/", {"username": make_user("newcomer").username, "role": "viewer"},
        format="json"), (201, 403, 403, 403, 404)),
    ("member change", lambda w: w.client().patch(
        f"/api/projects/{w.project.pk}/members/{w.spare_member.pk}/", {"role": "reviewer"}, format="json"),
     (200, 403, 403, 403, 404)),
    ("member remove", lambda w: w.client().delete(f"/api/projects/{w.project.pk}/members/{w.spare_member.pk}/"),
     (204, 403, 403, 403, 404)),
    ("scene delete", lambda w: w.client().delete(f"/api/scenes/{w.scene.pk}/"), (204, 403, 403, 403, 404)),
    ("upload", _upload, (202, 403, 202, 403, 404)),
    ("example create", lambda w: w.client().post("/api/annotations/", {
        "type": "Feature", "geometry": _geojson(LON + 0.004, LAT + 0.004),
        "properties": {"scene": w.scene.pk, "object_class": w.classes[0].pk}}, format="json"),
     (201, 201, 201, 403, 404)),
    ("example edit", lambda w: w.client().patch(
        f"/api/annotations/{w.example.pk}/", {"object_class": w.classes[1].pk}, format="json"),
     (200, 200, 200, 403, 404)),
    ("example delete", lambda w: w.client().delete(f"/api/annotations/{w.example.pk}/"), (204, 204, 204, 403, 404)),
    ("embed", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/embed/", {}, format="json"),
     (202, 403, 202, 403, 404)),
    ("search", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/search/", {}, format="json"),
     (202, 403, 202, 403, 404)),
    ("refine all", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/refine/", {}, format="json"),
     (202, 403, 202, 403, 404)),
    ("refine one", lambda w: w.client().post(f"/api/detections/{w.detection.pk}/refine/"),
     (202, 202, 202, 403, 404)),
    # The role check comes first: a role that may ask is told the scene has no cached grid yet (409; with a grid it
    # is a 202, tests/gpu_tasks/test_update_proposals.py), one that may not is refused (403).
    ("update proposals", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/update-proposals/", {}, format="json"),
     (409, 409, 409, 403, 404)),
    ("review", lambda w: w.client().post(f"/api/detections/{w.detection.pk}/review/", {
        "verdict": "accepted", "expected_version": w.detection.version, "client_id": "r1"}, format="json"),
     (200, 200, 403, 403, 404)),
    ("relabel", lambda w: w.client().post(f"/api/detections/{w.detection.pk}/relabel/", {
        "object_class": w.classes[1].pk, "expected_version": w.detection.version, "client_id": "r2"}, format="json"),
     (200, 200, 403, 403, 404)),
    ("reshape", lambda w: w.client().post(f"/api/detections/{w.detection.pk}/reshape/", {
        "geometry": _geojson(LON + 0.001, LAT + 0.001, 2e-4), "expected_version": w.detection.version,
        "client_id": "r3"}, format="json"),
     (200, 200, 403, 403, 404)),
    ("manual create", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/detections/manual/", {
        "object_class": w.classes[0].pk, "geometry": _geojson(LON + 0.005, LAT + 0.005), "client_id": "r4"},
        format="json"), (201, 201, 403, 403, 404)),
    ("manual delete", lambda w: w.client().delete(
        f"/api/detections/{w.manual.pk}/manual/?expected_version={w.manual.version}&client_id=r5"),
     (200, 200, 403, 403, 404)),
    ("bulk review", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/detections/bulk-review/", {
        "verdict": "rejected", "client_id": "r6", "ids": [w.detection.pk]}, format="json"),
     (200, 403, 403, 403, 404)),
    ("undo", _undo, (200, 200, 403, 403, 404)),
    ("cells read", lambda w: w.client().get(f"/api/scenes/{_cells(w)[0].scene_id}/cells/"), (200, 200, 200, 200, 404)),
    ("cells split", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/cells/split/", {"size_m": 500}, format="json"),
     (200, 403, 403, 403, 404)),
    ("cells round-robin", lambda w: w.client().post(
        f"/api/scenes/{_cells(w)[0].scene_id}/cells/assign-round-robin/", {"users": [w.users["reviewer"].pk]},
        format="json"), (200, 403, 403, 403, 404)),
    ("cell assign", lambda w: w.client().post(
        f"/api/cells/{_cells(w)[1].pk}/assign/", {"user": w.users["reviewer"].pk}, format="json"),
     (200, 403, 403, 403, 404)),
    # The cell is the reviewer's: its assignee may mark it done, as may a manager.
    ("cell done", lambda w: w.client().post(f"/api/cells/{_cells(w, mine=True)[0].pk}/done/"),
     (200, 200, 403, 403, 404)),
    ("cell reopen", lambda w: w.client().post(f"/api/cells/{_cells(w, mine=True, done=True)[0].pk}/reopen/"),
     (200, 403, 403, 403, 404)),
    ("live poll", lambda w: w.client().get(f"/api/scenes/{w.scene.pk}/live/?since=0"), (200, 200, 200, 200, 404)),
    ("analytics read", lambda w: w.client().get(f"/api/projects/{w.project.pk}/analytics/"),
     (200, 200, 200, 200, 404)),
    ("events csv", lambda w: w.client().get(f"/api/projects/{w.project.pk}/events.csv"), (200, 403, 403, 403, 404)),
    # Imports (issue 11): as examples, drawing in bulk; as accepted objects, skipping review (managers only).
    ("import upload", lambda w: _import_upload(w), (201, 403, 201, 403, 404)),
    ("import read", lambda w: w.client().get(f"/api/imports/{_import_stored(w)}/"), (200, 200, 200, 200, 404)),
    ("import examples", lambda w: w.client().post(
        f"/api/imports/{_import_stored(w)}/run/", {"target": "examples"}, format="json"), (202, 403, 202, 403, 404)),
    ("import accepted", lambda w: w.client().post(
        f"/api/imports/{_import_stored(w)}/run/", {"target": "accepted"}, format="json"), (202, 403, 403, 403, 404)),
    # Exports (issue 11): managers and annotators export; every member reads the list and downloads a finished one;
    # a saved export is deleted by its creator (here the manager) or a manager.
    ("export list", lambda w: w.client().get(f"/api/projects/{w.project.pk}/exports/"), (200, 200, 200, 200, 404)),
    ("export start", lambda w: w.client().post(f"/api/projects/{w.project.pk}/exports/", _EXPORT, format="json"),
     (202, 403, 202, 403, 404)),
    ("export run saved", lambda w: w.client().post(f"/api/export-definitions/{_export_saved(w).pk}/run/"),
     (202, 403, 202, 403, 404)),
    ("export delete saved", lambda w: w.client().delete(f"/api/export-definitions/{_export_saved(w).pk}/"),
     (204, 403, 403, 403, 404)),
    ("export download", lambda w: w.client().get(f"/api/exports/{_export_done(w)}/download/"),
     (200, 200, 200, 200, 404)),
    # Accuracy areas (issue 12): managers mark reviewed ground as exhaustively labelled; every member reads the
    # areas and each proposer's accuracy in them.
    ("accuracy areas read", lambda w: w.client().get(f"/api/scenes/{w.scene.pk}/accuracy-areas/"),
     (200, 200, 200, 200, 404)),
    ("accuracy area mark", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/accuracy-areas/",
                                                     {"area": _geojson(LON, LAT, 0.01)}, format="json"),
     (201, 403, 403, 403, 404)),
    ("accuracy area unmark", lambda w: w.client().delete(f"/api/accuracy-areas/{_accuracy_area(w)}/"),
     (204, 403, 403, 403, 404)),
    ("accuracy read", lambda w: w.client().get(f"/api/projects/{w.project.pk}/accuracy/?source=search"),
     (200, 200, 200, 200, 404)),
    # The detector loop (issue 12): managers and annotators train (on the accepted manual object) and run proposers
    # (here past the permission, refused for what the world lacks: no current model, no cached grid); every member
    # reads the versions; managers rename, make current and delete them.
    ("models read", lambda w: w.client().get(f"/api/projects/{w.project.pk}/models/"), (200, 200, 200, 200, 404)),
    ("model train", lambda w: w.client().post(f"/api/projects/{w.project.pk}/models/", {}, format="json"),
     (202, 403, 202, 403, 404)),
    ("model version read", lambda w: w.client().get(f"/api/model-versions/{_version(w)}/"),
     (200, 200, 200, 200, 404)),
    ("model version current", lambda w: w.client().patch(f"/api/model-versions/{_version(w)}/",
                                                         {"is_current": True}, format="json"),
     (200, 403, 403, 403, 404)),
    ("model version delete", lambda w: w.client().delete(f"/api/model-versions/{_version(w)}/"),
     (204, 403, 403, 403, 404)),
    ("yolo proposals", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/yolo-proposals/", {}, format="json"),
     (400, 403, 400, 403, 404)),
    ("probe proposals", lambda w: w.client().post(f"/api/scenes/{w.scene.pk}/probe/", {}, format="json"),
     (409, 403, 409, 403, 404)),
]


def _version(w: World) -> int:
    """A model version of the project (its weights need not exist to be read, renamed or deleted)."""
    from detectors.models import ModelVersion

    return ModelVersion.objects.create(project=w.project, number=1, gsd_m=1.0, imgsz=640, weights="detectors/x.pt").pk
_EXPORT = {"format": "geojson", "save": False, "statuses": ["proposed", "accepted"]}


def _accuracy_area(w: World) -> int:
    """An area the manager marked over the scene."""
    from review import accuracy

    return accuracy.accuracy_areas_add(scene=w.scene, actor=w.users["manager"], area=_geojson(LON, LAT, 0.01))[0].pk


def _export_saved(w: World):
    """A saved export of the manager's."""
    from datasets import export_services

    return export_services.definition_save(project=w.project, user=w.users["manager"],
                                           params={**_EXPORT, "name": "Everything"})


def _export_done(w: World) -> int:
    """A finished export (run in this process) of the manager's."""
    from datasets import export_services

    job, _ = export_services.export_submit(project=w.project, user=w.users["manager"], role="manager", data=_EXPORT,
                                           enqueue=False)
    return export_services.export_job_run(job_id=job.pk).pk


def _import_file():
    from django.core.files.uploadedfile import SimpleUploadedFile

    body = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"class": "STP"},
                                                       "geometry": _geojson(LON + 0.006, LAT + 0.006)}]}
    return SimpleUploadedFile("labels.geojson", json.dumps(body).encode(), content_type="application/geo+json")


def _import_upload(w: World):
    return w.client().post(f"/api/projects/{w.project.pk}/imports/", {"file": _import_file()}, format="multipart")


def _import_stored(w: World) -> str:
    """A label file the manager uploaded (its inspection matched the class STP)."""
    from datasets import import_services

    return import_services.import_upload(
        project=w.project, user=w.users["manager"], role="manager", uploaded=_import_file()
    )["id"]


def _cells(w: World, mine: bool = False, done: bool = False) -> list:
    """The scene split into cells by its manager; the first given to the role's reviewer (and marked done)."""
    from review import cells as cell_services

    made = cell_services.cells_split(scene=w.scene, actor=w.users["manager"], size_m=500)
    if mine:
        cell_services.cell_assign(cell=made[0], actor=w.users["manager"], user_id=w.users["reviewer"].pk)
        made[0].refresh_from_db()
    if done:
        cell_services.cell_mark_done(cell=made[0], actor=w.users["manager"])
    return made


@pytest.mark.parametrize("role_name", ROLES)
@pytest.mark.parametrize("action", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_role_matrix(world_for, action, role_name, django_capture_on_commit_callbacks):
    name, send, expected = action
    world = world_for(role_name)
    want = expected[ROLES.index(role_name)]
    response = send(world)
    assert response.status_code == want, (name, role_name, response.content[:400])
    if want == 403:
        error = response.json()["error"]
        assert error["code"] == "forbidden" and " may." in error["message"], error  # says who may


def test_a_refused_action_changes_nothing_and_names_who_may(world_for):
    world = world_for("reviewer")
    response = world.client().patch(f"/api/classes/{world.classes[2].pk}/", {"name": "Renamed"}, format="json")
    assert response.status_code == 403
    assert "only managers may" in response.json()["error"]["message"]
    world.classes[2].refresh_from_db()
    assert world.classes[2].name != "Renamed"
    assert Membership.objects.filter(project=world.project, user=world.actor, role=Role.REVIEWER).exists()
