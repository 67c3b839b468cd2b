"""Bad input gets a clear 4xx in the error shape, never a 500 (issue 7, section 3)."""

import json
import math

import pytest

from gpu_tasks.models import Job
from tests.api.support import assert_error, feature, ready_scene, square_ring

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(project):
    return ready_scene(project, width=400, height=400)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"negative_weight": "NaN"}, "negative_weight"),
        ({"margin": "Infinity"}, "margin"),
        ({"default_threshold": "-Infinity"}, "default_threshold"),
        ({"scale": "nan"}, "scale"),
        ({"thresholds": {"1": "NaN"}}, "thresholds"),
        ({"max_candidates": 10**12}, "max_candidates"),
        ({"max_candidates": 0}, "max_candidates"),
        ({"negative_weight": -1}, "negative_weight"),
        ({"classes": "all"}, "classes"),
        ({"thresholds": {"kiln": 0.5}}, "thresholds"),
    ],
)
def test_search_parameters_that_are_not_finite_or_out_of_range_are_400(api, scene, body, field):
    err = assert_error(api.post(f"/api/scenes/{scene.pk}/search/", body, format="json"), 400, "invalid")
    assert field in err["detail"] and field in err["message"]
    assert not Job.objects.exists()


def test_json_literal_nan_is_a_parse_error_not_a_500(api, scene):
    raw = '{"negative_weight": NaN, "margin": Infinity}'
    response = api.generic("POST", f"/api/scenes/{scene.pk}/search/", raw, content_type="application/json")
    assert "JSON" in assert_error(response, 400)["message"]
    assert not Job.objects.exists()


def test_embed_scale_is_bounded_and_finite(api, scene, settings):
    settings.JOB_MAX_SCALE = 4
    for scale in ("Infinity", 8, 0, -2, "x"):
        err = assert_error(api.post(f"/api/scenes/{scene.pk}/embed/", {"scale": scale}, format="json"), 400)
        assert "scale" in err["message"]
    assert "JOB_MAX_SCALE" in assert_error(
        api.post(f"/api/scenes/{scene.pk}/embed/", {"scale": 8}, format="json"), 400
    )["message"]


def test_class_list_is_bounded_and_refused_with_one_short_message(api, scene, settings):
    settings.JOB_MAX_CLASSES = 200
    response = api.post(f"/api/scenes/{scene.pk}/search/", {"classes": list(range(1, 50_001))}, format="json")
    err = assert_error(response, 400, "invalid")
    assert "At most 200" in err["message"] and "JOB_MAX_CLASSES" in err["message"]
    assert len(response.content) < 1000  # not 50,000 item errors
    many_thresholds = {str(i): 0.5 for i in range(1, 300)}
    assert_error(api.post(f"/api/scenes/{scene.pk}/search/", {"thresholds": many_thresholds}, format="json"), 400)


def test_refine_detection_list_is_bounded(api, scene, settings):
    settings.JOB_MAX_REFINE_BOXES = 10
    response = api.post(f"/api/scenes/{scene.pk}/refine/", {"detections": list(range(1, 12))}, format="json")
    assert "JOB_MAX_REFINE_BOXES" in assert_error(response, 400)["message"]
    assert_error(api.post(f"/api/scenes/{scene.pk}/refine/", {"detections": ["a"]}, format="json"), 400)


def test_search_stores_typed_normalised_parameters(api, scene, project):
    kiln, pond = project.classes.get(name="Brick Kiln"), project.classes.get(name="Pond-1")
    body = {"classes": [pond.pk, kiln.pk, pond.pk], "thresholds": {str(kiln.pk): "0.7"}, "scale": "2"}
    response = api.post(f"/api/scenes/{scene.pk}/search/", body, format="json")
    assert response.status_code == 202, response.content
    params = Job.objects.get(pk=response.json()["id"]).params
    assert params["classes"] == sorted([kiln.pk, pond.pk])
    assert params["thresholds"] == {str(kiln.pk): 0.7} and params["scale"] == 2.0


@pytest.mark.parametrize(
    "query",
    [
        "project=abc",
        "scene=abc",
        "kind=bogus",
        "status=finished",
        "project=99999999999999999999999",
        "scene=-1",
    ],
)
def test_job_list_filters_are_validated(api, query):
    err = assert_error(api.get(f"/api/jobs/?{query}"), 400, "invalid")
    assert query.split("=")[0] in err["detail"]


def test_job_list_filters_still_filter(api, scene, project):
    Job.objects.create(project=project, scene=scene, kind="search")
    Job.objects.create(project=project, scene=scene, kind="embed")
    assert api.get(f"/api/jobs/?scene={scene.pk}&kind=search").json()["count"] == 1
    assert api.get(f"/api/jobs/?project={project.pk}&status=queued").json()["count"] == 2


@pytest.mark.parametrize(
    "query", ["annotation=abc", "annotation=1&k=abc", "annotation=1&bbox=1,2,3", "annotation=1&scene=x", "k=3"]
)
def test_similar_query_parameters_are_validated(api, project, query):
    assert_error(api.get(f"/api/projects/{project.pk}/similar/?{query}"), 400, "invalid")


def test_scene_list_filters_are_validated(api):
    assert_error(api.get("/api/scenes/?project=abc"), 400, "invalid")
    assert_error(api.get("/api/scenes/?status=whatever"), 400, "invalid")


def test_huge_ids_in_paths_and_filters_are_not_500(api):
    huge = 10**25
    assert_error(api.get(f"/api/jobs/{huge}/"), 404)
    assert_error(api.get(f"/api/scenes/{huge}/"), 404)
    assert api.get(f"/api/detections/?scene={huge}").status_code in (200, 400)


class TestAnnotationGeometry:
    """Geometries: 2D, on the globe, a bounded number of vertices, near the scene, valid."""

    def test_3d_coordinates_are_refused_with_a_clear_message(self, api, scene, project):
        cls = project.classes.first()
        c = scene.footprint.centroid
        ring = [[x, y, 12.5] for x, y in square_ring(c.x, c.y)]
        err = assert_error(api.post("/api/annotations/", feature(scene.pk, cls.pk, [ring]), format="json"), 400)
        assert "2D" in err["message"] and "Z" in err["message"]

    @pytest.mark.parametrize("lon, lat", [(181, 10), (-200, 10), (10, 91), (10, -95)])
    def test_longitude_and_latitude_ranges(self, api, scene, project, lon, lat):
        cls = project.classes.first()
        ring = [[lon, lat], [lon, lat + 0.001], [lon + 0.001, lat], [lon, lat]]
        err = assert_error(api.post("/api/annotations/", feature(scene.pk, cls.pk, [ring]), format="json"), 400)
        assert "longitude" in err["message"]

    def test_vertex_cap(self, api, scene, project, settings):
        settings.API_MAX_VERTICES = 100
        cls = project.classes.first()
        c = scene.footprint.centroid
        ring = [[c.x + 1e-4 * math.cos(t / 200 * 2 * math.pi), c.y + 1e-4 * math.sin(t / 200 * 2 * math.pi)]
                for t in range(200)]
        ring.append(ring[0])
        err = assert_error(api.post("/api/annotations/", feature(scene.pk, cls.pk, [ring]), format="json"), 400)
        assert "API_MAX_VERTICES" in err["message"]
        small = ring[::4]
        small[-1] = small[0]
        assert api.post("/api/annotations/", feature(scene.pk, cls.pk, [small]), format="json").status_code == 201

    def test_a_polygon_far_larger_than_the_scene_is_refused(self, api, scene, project):
        cls = project.classes.first()
        c = scene.footprint.centroid
        # Two degrees wide around a scene 0.02 degrees wide: it touches the scene but dwarfs it.
        ring = [[c.x - 1, c.y - 1], [c.x + 1, c.y - 1], [c.x + 1, c.y + 1], [c.x - 1, c.y + 1], [c.x - 1, c.y - 1]]
        err = assert_error(api.post("/api/annotations/", feature(scene.pk, cls.pk, [ring]), format="json"), 400)
        assert "API_MAX_EXTENT_RATIO" in err["message"]

    def test_invalid_and_non_polygon_geometries_are_explained(self, api, scene, project):
        cls = project.classes.first()
        c = scene.footprint.centroid
        bowtie = [[c.x, c.y], [c.x + 1e-4, c.y + 1e-4], [c.x + 1e-4, c.y], [c.x, c.y + 1e-4], [c.x, c.y]]
        err = assert_error(api.post("/api/annotations/", feature(scene.pk, cls.pk, [bowtie]), format="json"), 400)
        assert "self-intersection" in err["message"].lower()
        point = feature(scene.pk, cls.pk, [c.x, c.y], geometry_type="Point")
        assert "polygon" in assert_error(api.post("/api/annotations/", point, format="json"), 400)["message"]
        for bad in ("nonsense", [[["a", "b"]]], [[[1e400, 1]]]):
            body = json.dumps(feature(scene.pk, cls.pk, bad)).replace("Infinity", "1e400")
            response = api.generic("POST", "/api/annotations/", body, content_type="application/json")
            assert_error(response, 400)
