"""No existence oracle: "in another project" and "does not exist" get the same answer (issue 7, section 3)."""

import pytest

from annotate.models import Annotation, Project
from tests.api.support import assert_error, feature, ready_scene, square_ring
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

MISSING = 987_654_321


@pytest.fixture
def mine(project):
    return ready_scene(project, name="Mine", lon=77.2, lat=28.6)


@pytest.fixture
def theirs(other_project):
    return ready_scene(other_project, name="Theirs", lon=10.0, lat=50.0)


def _same_404(a, b):
    assert_error(a, 404, "not_found")
    assert_error(b, 404, "not_found")
    assert a.json() == b.json()


def test_annotation_with_a_foreign_scene_or_class_answers_like_a_missing_one(api, mine, theirs, project, other_project):
    own_class, their_class = project.classes.first(), other_project.classes.first()
    c = theirs.footprint.centroid
    ring = [square_ring(c.x, c.y)]
    _same_404(
        api.post("/api/annotations/", feature(theirs.pk, own_class.pk, ring), format="json"),
        api.post("/api/annotations/", feature(MISSING, own_class.pk, ring), format="json"),
    )
    m = mine.footprint.centroid
    ring = [square_ring(m.x, m.y)]
    _same_404(
        api.post("/api/annotations/", feature(mine.pk, their_class.pk, ring), format="json"),
        api.post("/api/annotations/", feature(mine.pk, MISSING, ring), format="json"),
    )
    assert not Annotation.objects.exists()
    assert api.post("/api/annotations/", feature(mine.pk, own_class.pk, ring), format="json").status_code == 201


def test_a_non_members_project_scene_list_is_404_like_a_missing_project(api, theirs, other_project):
    _same_404(api.get(f"/api/projects/{other_project.pk}/scenes/"), api.get(f"/api/projects/{MISSING}/scenes/"))


def test_search_class_ids_of_another_project_answer_like_missing_ones(api, mine, other_project):
    foreign = api.post(f"/api/scenes/{mine.pk}/search/", {"classes": [other_project.classes.first().pk]}, format="json")
    missing = api.post(f"/api/scenes/{mine.pk}/search/", {"classes": [MISSING]}, format="json")
    a, b = assert_error(foreign, 400), assert_error(missing, 400)
    strip = str(other_project.classes.first().pk), str(MISSING)
    assert a["message"].replace(strip[0], "ID") == b["message"].replace(strip[1], "ID")


def test_refine_detection_ids_of_another_project_answer_like_missing_ones(api, mine, theirs, other_project):
    from annotate.models import Detection

    cls = other_project.classes.first()
    det = Detection.objects.create(
        scene=theirs, object_class=cls, geometry=theirs.footprint, bbox=theirs.footprint.envelope, score=0.9
    )
    foreign = api.post(f"/api/scenes/{mine.pk}/refine/", {"detections": [det.pk]}, format="json")
    missing = api.post(f"/api/scenes/{mine.pk}/refine/", {"detections": [MISSING]}, format="json")
    assert assert_error(foreign, 400) == assert_error(missing, 400)


def test_a_project_name_clash_says_the_same_whoever_holds_the_name(api, project, other_project, outsider):
    own = api.post("/api/projects/", {"name": project.name}, format="json")
    foreign = api.post("/api/projects/", {"name": other_project.name}, format="json")
    assert assert_error(own, 400)["detail"] == assert_error(foreign, 400)["detail"]
    assert "already exists or is reserved" in own.json()["error"]["message"]
    # Renaming into a taken name is refused the same way; keeping one's own name is fine.
    renamed = api.patch(f"/api/projects/{project.pk}/", {"name": other_project.name}, format="json")
    assert assert_error(renamed, 400)["detail"] == own.json()["error"]["detail"]
    assert api.patch(f"/api/projects/{project.pk}/", {"name": project.name}, format="json").status_code == 200
    assert Project.objects.count() == 2
    assert client_for(outsider).post("/api/projects/", {"name": "Fresh"}, format="json").status_code == 201
