"""URL map: pages, the REST API under /api/, the OpenAPI schema and docs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.apis import TokenObtainApi
from annotate import apis as annotate_apis
from annotate import project_apis, tile_views
from annotate import views as pages
from datasets import export_apis, import_apis
from detectors import apis as detector_apis
from gpu_tasks import apis as job_apis
from gpu_tasks import model_apis
from review import accuracy_apis, analytics_apis, cell_apis, live_apis
from review import apis as review_apis
from review import views as review_pages

handler404 = "annotate.api_errors.json_404"
handler500 = "annotate.api_errors.json_500"

api = [
    path("auth/token/", TokenObtainApi.as_view(), name="api-token"),
    path("projects/", annotate_apis.ProjectListCreateApi.as_view(), name="api-projects"),
    path("projects/<int:pk>/", annotate_apis.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<int:project_id>/classes/", annotate_apis.ClassListCreateApi.as_view(), name="api-classes"),
    path(
        "projects/<int:project_id>/classes/reorder/", project_apis.ClassReorderApi.as_view(), name="api-classes-reorder"
    ),
    path("projects/<int:project_id>/members/", project_apis.MemberListApi.as_view(), name="api-members"),
    path(
        "projects/<int:project_id>/members/<int:user_id>/", project_apis.MemberDetailApi.as_view(), name="api-member"
    ),
    path("projects/<int:project_id>/me/", annotate_apis.ProjectMeApi.as_view(), name="api-project-me"),
    path("projects/<int:project_id>/scenes/", annotate_apis.SceneListApi.as_view(), name="api-project-scenes"),
    path("projects/<int:project_id>/scenes/upload/", job_apis.SceneUploadApi.as_view(), name="api-scene-upload"),
    path("classes/<int:pk>/", annotate_apis.ClassDetailApi.as_view(), name="api-class"),
    path("scenes/", annotate_apis.SceneListApi.as_view(), name="api-scenes"),
    path("scenes/<int:pk>/", annotate_apis.SceneDetailApi.as_view(), name="api-scene"),
    path("scenes/<int:scene_id>/ingest/", job_apis.SceneIngestApi.as_view(), name="api-scene-ingest"),
    path("scenes/<int:scene_id>/tiles/<int:z>/<int:x>/<int:y>.png", tile_views.scene_tile, name="api-tile"),
    path("scenes/<int:scene_id>/thumbnail.png", tile_views.scene_thumbnail, name="api-thumbnail"),
    path("scenes/<int:scene_id>/display/", annotate_apis.SceneDisplayApi.as_view(), name="api-scene-display"),
    path("annotations/", annotate_apis.AnnotationListCreateApi.as_view(), name="api-annotations"),
    path("annotations/<int:pk>/", annotate_apis.AnnotationDetailApi.as_view(), name="api-annotation"),
    path("detections/", annotate_apis.DetectionListApi.as_view(), name="api-detections"),
    path("detections/<int:pk>/", annotate_apis.DetectionDetailApi.as_view(), name="api-detection"),
    path("scenes/<int:scene_id>/embed/", job_apis.SceneEmbedApi.as_view(), name="api-scene-embed"),
    path("scenes/<int:scene_id>/search/", job_apis.SceneSearchApi.as_view(), name="api-scene-search"),
    path("scenes/<int:scene_id>/refine/", job_apis.SceneRefineApi.as_view(), name="api-scene-refine"),
    path(
        "scenes/<int:scene_id>/update-proposals/",
        job_apis.SceneUpdateProposalsApi.as_view(),
        name="api-scene-update-proposals",
    ),
    path("detections/<int:pk>/refine/", job_apis.DetectionRefineApi.as_view(), name="api-detection-refine"),
    path("projects/<int:project_id>/similar/", job_apis.SimilarObjectsApi.as_view(), name="api-similar"),
    path("jobs/", job_apis.JobListApi.as_view(), name="api-jobs"),
    path("jobs/<int:pk>/", job_apis.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<int:pk>/cancel/", job_apis.JobCancelApi.as_view(), name="api-job-cancel"),
    path("jobs/<int:pk>/retry/", job_apis.JobRetryApi.as_view(), name="api-job-retry"),
    path("models/", model_apis.ModelStatusApi.as_view(), name="api-models"),
    path("detections/<int:pk>/review/", review_apis.DetectionReviewApi.as_view(), name="api-detection-review"),
    path("detections/<int:pk>/relabel/", review_apis.DetectionRelabelApi.as_view(), name="api-detection-relabel"),
    path("detections/<int:pk>/reshape/", review_apis.DetectionReshapeApi.as_view(), name="api-detection-reshape"),
    path("detections/<int:pk>/manual/", review_apis.ManualDetectionDeleteApi.as_view(), name="api-detection-manual"),
    path("detections/<int:pk>/events/", review_apis.DetectionEventsApi.as_view(), name="api-detection-events"),
    path("scenes/<int:scene_id>/detections/manual/", review_apis.ManualDetectionCreateApi.as_view(), name="api-manual"),
    path("scenes/<int:scene_id>/detections/bulk-review/", review_apis.BulkReviewApi.as_view(), name="api-bulk-review"),
    path("scenes/<int:scene_id>/review-queue/", review_apis.ReviewQueueApi.as_view(), name="api-review-queue"),
    path("scenes/<int:scene_id>/events/", review_apis.SceneEventsApi.as_view(), name="api-scene-events"),
    path("scenes/<int:scene_id>/live/", live_apis.SceneLiveApi.as_view(), name="api-scene-live"),
    path("review/events/", review_apis.EventsApi.as_view(), name="api-review-events"),
    path("scenes/<int:scene_id>/review-progress/", review_apis.ReviewProgressApi.as_view(), name="api-review-progress"),
    path("review/undo/", review_apis.UndoApi.as_view(), name="api-review-undo"),
    path(
        "scenes/<int:scene_id>/detections/tiles/<int:z>/<int:x>/<int:y>.mvt", tile_views.detection_tile,
        name="api-detection-tile",
    ),
    path(
        "scenes/<int:scene_id>/score-histogram/", review_apis.ScoreHistogramApi.as_view(), name="api-score-histogram"
    ),
    path("scenes/<int:scene_id>/cells/", cell_apis.SceneCellsApi.as_view(), name="api-scene-cells"),
    path("scenes/<int:scene_id>/cells/split/", cell_apis.SceneCellsSplitApi.as_view(), name="api-cells-split"),
    path(
        "scenes/<int:scene_id>/cells/assign-round-robin/", cell_apis.SceneCellsRoundRobinApi.as_view(),
        name="api-cells-round-robin",
    ),
    path("cells/<int:pk>/assign/", cell_apis.CellAssignApi.as_view(), name="api-cell-assign"),
    path("cells/<int:pk>/done/", cell_apis.CellDoneApi.as_view(), name="api-cell-done"),
    path("cells/<int:pk>/reopen/", cell_apis.CellReopenApi.as_view(), name="api-cell-reopen"),
    path("projects/<int:project_id>/analytics/", analytics_apis.ProjectAnalyticsApi.as_view(), name="api-analytics"),
    path(
        "projects/<int:project_id>/events.csv", analytics_apis.ProjectEventsCsvApi.as_view(),
        name="api-project-events-csv",
    ),
    path("projects/<int:project_id>/imports/", import_apis.ImportUploadApi.as_view(), name="api-imports"),
    path("imports/<str:import_id>/", import_apis.ImportDetailApi.as_view(), name="api-import"),
    path("imports/<str:import_id>/run/", import_apis.ImportRunApi.as_view(), name="api-import-run"),
    path("projects/<int:project_id>/models/", detector_apis.ProjectModelsApi.as_view(), name="api-models-project"),
    path("model-versions/<int:version_id>/", detector_apis.ModelVersionApi.as_view(), name="api-model-version"),
    path("scenes/<int:scene_id>/yolo-proposals/", detector_apis.SceneYoloProposalsApi.as_view(), name="api-yolo"),
    path("scenes/<int:scene_id>/probe/", detector_apis.SceneProbeApi.as_view(), name="api-probe"),
    path("projects/<int:project_id>/exports/", export_apis.ExportListApi.as_view(), name="api-exports"),
    path("export-definitions/<int:definition_id>/", export_apis.ExportDefinitionApi.as_view(),
         name="api-export-definition"),
    path("export-definitions/<int:definition_id>/run/", export_apis.ExportDefinitionRunApi.as_view(),
         name="api-export-definition-run"),
    path("exports/<int:job_id>/download/", export_apis.ExportDownloadApi.as_view(), name="api-export-download"),
    path("scenes/<int:scene_id>/accuracy-areas/", accuracy_apis.SceneAccuracyAreasApi.as_view(),
         name="api-accuracy-areas"),
    path("accuracy-areas/<int:area_id>/", accuracy_apis.AccuracyAreaApi.as_view(), name="api-accuracy-area"),
    path("projects/<int:project_id>/accuracy/", accuracy_apis.ProjectAccuracyApi.as_view(), name="api-accuracy"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("", pages.home, name="home"),
    path("projects/<int:project_id>/", pages.project_page, name="project"),
    path("scenes/<int:scene_id>/", pages.scene_page, name="scene"),
    path("projects/<int:project_id>/analytics/", review_pages.analytics_page, name="project-analytics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include(api)),
]
