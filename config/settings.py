"""All settings, read from the environment (and an optional .env file) in this one module."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def _load_dotenv(path: Path) -> None:
    """Put KEY=VALUE lines of a .env file into the environment without overriding what is set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


_load_dotenv(Path(os.environ.get("GEOREVIEW_ENV_FILE", BASE_DIR / ".env")))


def _raw(name: str) -> str | None:
    """The variable's value; an empty value (`NAME=` in .env) counts as unset, so the default applies."""
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value


def env_str(name: str, default: str) -> str:
    """A string setting."""
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    """A boolean setting: 1/true/yes/on are true."""
    value = _raw(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """An integer setting."""
    value = _raw(name)
    return default if value is None else int(value)


def env_list(name: str, default: str) -> list[str]:
    """A comma-separated list setting."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# ------------------------------------------------------------------------------------------ core
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError(
            "SECRET_KEY is required when DEBUG is off: set it in the environment or in .env "
            "(scripts/setup.sh writes a .env with a generated key)."
        )
    SECRET_KEY = "insecure-development-key"  # noqa: S105 - only ever used with DEBUG on
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "rest_framework",
    "rest_framework.authtoken",
    "rest_framework_gis",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "accounts",
    "annotate",
    "gpu_tasks",
    "review",
    "datasets",
    "detectors",
]

MIDDLEWARE = [
    # First, so that it runs however the request ends: deletes upload temp files a request left behind.
    "annotate.uploads.UploadCleanupMiddleware",
    # A database or Redis outage raised by a view answers 503 "try again" (config/outage.py).
    "config.outage.OutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees a lockout marked during authentication and answers it (accounts.login_throttle).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ------------------------------------------------------------------------------------------ data
DATABASE_URL = env_str("DATABASE_URL", "postgis://georeview:georeview@127.0.0.1:5432/georeview")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
DATABASES["default"]["ENGINE"] = "django.contrib.gis.db.backends.postgis"
# Lets two test runs on one machine use separate test databases.
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_georeview")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "georeview"),
    }
}
# Sessions are read on every tile request: keep them in Redis with the database as the record.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

DATA_DIR = BASE_DIR / env_str("DATA_DIR", "var")  # relative paths are relative to the checkout
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media/"
SCENES_DIR = MEDIA_ROOT / "scenes"
UPLOAD_TMP_DIR = DATA_DIR / "uploads"
for _dir in (SCENES_DIR, UPLOAD_TMP_DIR):
    _dir.mkdir(parents=True, exist_ok=True)

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static_build" / "collected"
FRONTEND_BUILD_DIR = BASE_DIR / "static_build" / "frontend"
STATICFILES_DIRS = [("frontend", FRONTEND_BUILD_DIR)]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# ------------------------------------------------------------------------------------------ limits
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 20 * 1024**3)
# Finished export zips kept per project (the oldest are deleted when a new export succeeds; run a saved one again).
EXPORTS_KEPT_PER_PROJECT = env_int("EXPORTS_KEPT_PER_PROJECT", 20)
FILE_UPLOAD_TEMP_DIR = str(UPLOAD_TMP_DIR)
FILE_UPLOAD_HANDLERS = ["annotate.uploads.SizeLimitedUploadHandler"]
# Upload temp files older than this that no scene holds are left by killed web workers: swept at worker start
# and every UPLOAD_SWEEP_EVERY_S by every worker (gpu_tasks.worker_watch -> annotate.upload_sweep).
UPLOAD_STALE_AFTER_S = env_int("UPLOAD_STALE_AFTER_S", 6 * 3600)
UPLOAD_SWEEP_EVERY_S = env_int("UPLOAD_SWEEP_EVERY_S", 3600)
RASTER_MAX_WIDTH = env_int("RASTER_MAX_WIDTH", 200_000)
RASTER_MAX_HEIGHT = env_int("RASTER_MAX_HEIGHT", 200_000)
RASTER_MAX_PIXELS = env_int("RASTER_MAX_PIXELS", 4_000_000_000)
RASTER_MAX_BANDS = env_int("RASTER_MAX_BANDS", 16)
RASTER_ALLOWED_DTYPES = env_list("RASTER_ALLOWED_DTYPES", "uint8,uint16,int16,uint32,int32,float32,float64")
# Tiles are served this many zoom levels past the scene's native resolution (upsampled).
TILE_OVERZOOM = env_int("TILE_OVERZOOM", 2)
TILE_CACHE_SECONDS = env_int("TILE_CACHE_SECONDS", 86400)
# GDAL block cache per web process for tile reads (decoded COG blocks are reused by neighbouring tiles).
TILE_GDAL_CACHE_MB = env_int("TILE_GDAL_CACHE_MB", 512)
# API input and job cost limits: a request over one is refused (4xx) with a message naming the limit.
# Vertices of one geometry sent to the API, and how many times its scene's footprint envelope its envelope
# may cover (a polygon 2 degrees wide around a 500 m scene is a mistake or an attack, not an example).
API_MAX_VERTICES = env_int("API_MAX_VERTICES", 10_000)
API_MAX_EXTENT_RATIO = env_int("API_MAX_EXTENT_RATIO", 4)
# Largest embedding scale (tiles grow with its square), classes and candidates a search may ask for.
JOB_MAX_SCALE = env_int("JOB_MAX_SCALE", 4)
JOB_MAX_CLASSES = env_int("JOB_MAX_CLASSES", 200)
JOB_MAX_CANDIDATES = env_int("JOB_MAX_CANDIDATES", 100_000)
# Backbone tiles one embed/search may need (about 0.02 s each on a GPU, 0.7 s on two CPU cores).
JOB_MAX_TILES = env_int("JOB_MAX_TILES", 10_000)
JOB_MAX_REFINE_BOXES = env_int("JOB_MAX_REFINE_BOXES", 5_000)
# Queued + running GPU jobs one user may have; the next one is refused with 429 until one finishes.
JOB_MAX_PENDING_PER_USER = env_int("JOB_MAX_PENDING_PER_USER", 3)
# Seconds a detection served by the review queue stays held for its reviewer (a decision frees it sooner).
REVIEW_LEASE_S = env_int("REVIEW_LEASE_S", 90)

# ------------------------------------------------------------------------------------------ models
MODEL_DIR = BASE_DIR / env_str("MODEL_DIR", str(DATA_DIR / "models"))
DINO_MODEL = env_str("DINO_MODEL", "facebook/dinov2-small")
SAM2_MODEL = env_str("SAM2_MODEL", "facebook/sam2.1-hiera-tiny")
YOLO_MODEL = env_str("YOLO_MODEL", "yolov8n.yaml")
# "cuda", "cpu" or empty for automatic (CUDA when present).
TORCH_DEVICE = env_str("TORCH_DEVICE", "")
# Tiles per backbone forward pass; 0 picks one for the device (larger on a GPU).
EMBED_BATCH_SIZE = env_int("EMBED_BATCH_SIZE", 0)
EMBED_TILE_PX = env_int("EMBED_TILE_PX", 518)
# Patches of overlap on each side of a tile; only each tile's centre is kept, so seams see context.
EMBED_MARGIN_PATCHES = env_int("EMBED_MARGIN_PATCHES", 4)
# Stages in NVTX ranges on CUDA and a torch profiler trace written to DATA_DIR/jobs/<id>/ for every GPU job.
GPU_PROFILE = env_bool("GPU_PROFILE", False)
GPU_JOB_TIME_LIMIT_S = env_int("GPU_JOB_TIME_LIMIT_S", 6 * 3600)
# Dead workers: a running job writes a heartbeat every JOB_HEARTBEAT_S from a thread of its own (so a long
# forward pass does not silence it); one silent for JOB_DEAD_AFTER_S, or whose recorded pid is gone on this
# host, lost its worker. Workers (at start and every JOB_RECONCILE_S) and job reads notice it, and re-queue it
# up to JOB_MAX_AUTO_RETRIES times before leaving it failed with a retry that works.
JOB_HEARTBEAT_S = env_int("JOB_HEARTBEAT_S", 5)
JOB_DEAD_AFTER_S = env_int("JOB_DEAD_AFTER_S", 30)
JOB_RECONCILE_S = env_int("JOB_RECONCILE_S", 5)
JOB_MAX_AUTO_RETRIES = env_int("JOB_MAX_AUTO_RETRIES", 2)
# A task that cannot reach the database retries after 5, 10, 20 ... s, at most JOB_DB_RETRY_MAX_S apart, for
# JOB_DB_RETRIES tries (about 20 minutes in all): a database restart is ridden out, not burnt in a second.
JOB_DB_RETRIES = env_int("JOB_DB_RETRIES", 8)
JOB_DB_RETRY_MAX_S = env_int("JOB_DB_RETRY_MAX_S", 300)
# Weights are fetched ahead of time (manage.py fetch_models); at run time the hub is never asked.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(DATA_DIR / "ultralytics"))
# GDAL: never look for sidecar files next to a raster, never write .aux.xml files.
os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
os.environ.setdefault("GDAL_PAM_ENABLED", "NO")
# GDAL's block cache defaults to 5% of RAM per process; workers read scenes in sequence and need far less
# (tile views set their own, larger cache: TILE_GDAL_CACHE_MB).
GDAL_CACHE_MB = env_int("GDAL_CACHE_MB", 256)
# OpenMP threads that spin while waiting stall every parallel op when another process holds a core: a
# search re-query took 4.7 s instead of 0.5 s (benchmarks/search.py, section 4); passive waiting costs the
# backbone nothing measurable. Set here because settings load before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))

# ------------------------------------------------------------------------------------------ celery
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# gpu_interactive: single-object work a reviewer waits for ("refine this"), served by its own worker so that it
# never queues behind a long search; the gpu worker consumes it too when idle.
CELERY_TASK_ROUTES = {
    "gpu_tasks.tasks.gpu_*": {"queue": "gpu"},
    "gpu_tasks.tasks.interactive_*": {"queue": "gpu_interactive"},
    "detectors.tasks.gpu_*": {"queue": "gpu"},
}
# A job whose worker is killed is redelivered instead of lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A dead broker is noticed in about a second when a request sends a job (then 503 "queue unavailable"), not
# after Celery's default of retrying for 20+ s while the user waits.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
# A job queued this long whose message is not in the broker (a Redis restarted without its data) is re-sent
# by the workers (gpu_tasks.worker_watch -> broker.jobs_reconcile), at start and every JOB_QUEUE_RECONCILE_S / 4,
# and by job reads.
JOB_QUEUE_RECONCILE_S = env_int("JOB_QUEUE_RECONCILE_S", 120)

# ------------------------------------------------------------------------------------------ auth/API
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Failed logins (page and API token) are throttled by django-axes, per account and per client address
# separately: LOGIN_FAILURE_LIMIT failures of one account, or from one address, newer than
# LOGIN_LOCKOUT_MINUTES lock it until they are that old. A successful login forgets that account's failures
# from that address (accounts.login_throttle). Calls without a request (the test client's login()) pass through.
AUTHENTICATION_BACKENDS = [
    "accounts.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Attempts while locked out neither count nor extend the lockout, so "try again in N minutes" stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = False  # too broad: see accounts.login_throttle.login_failures_forget
AXES_LOCKOUT_CALLABLE = "accounts.login_throttle.lockout_response"
AXES_USERNAME_CALLABLE = "accounts.login_throttle.attempt_username"
# The client address. Direct (TRUSTED_PROXY_COUNT=0): the connection's address; X-Forwarded-For is ignored, since
# anyone can send it. Behind N proxies that each append to X-Forwarded-For (the bundled nginx: 1), the N-th
# entry from the right; entries further left are the client's own claims. django-ipware counts only the
# proxies whose addresses appear in the header (the nearest one is REMOTE_ADDR), hence N - 1; non-strict, so a
# client-sent header adds entries on the left instead of making the whole chain (and the address) unusable.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT - 1 if TRUSTED_PROXY_COUNT > 0 else None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if TRUSTED_PROXY_COUNT > 0 else ("REMOTE_ADDR",)
)
IPWARE_STRICT = False

# HTTPS: off by default for the local HTTP demo; docker/production.env turns it on (`manage.py check --deploy`
# is clean with it: tests/security/test_deploy_check.py).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = env_list("SECURE_REDIRECT_EXEMPT", "")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# Only behind a proxy that terminates TLS and overwrites X-Forwarded-Proto; directly reachable, a client could
# claim HTTPS with it.
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST", False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "annotate.pagination.PagePagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "annotate.api_errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GeoReview API",
    "DESCRIPTION": "Scenes, tiles, annotations, detections and jobs for geospatial annotation review.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from our own static files: self-hosted installs need not reach a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for a detection's status wherever it appears (review events' before/after would get one each).
    "ENUM_NAME_OVERRIDES": {"DetectionStatusEnum": "annotate.models.DetectionStatus"},
}

# GeoDjango's GDAL (3.6 on Debian 12) cannot block network access from spatial references. No user
# spatial reference reaches it: incoming GeoJSON has its "crs" member removed before parsing
# (annotate.serializers.Wgs84GeometryField) and rasters are read by rasterio with sidecars disabled.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"rasterio": {"level": "WARNING"}, "rio_tiler": {"level": "WARNING"}},
}
