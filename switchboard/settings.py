"""Switchboard settings, read from the environment (see the configuration table in docs/operations.md).

With nothing set, Switchboard runs embedded: SQLite in var/, database counters, and Celery's
filesystem transport under var/broker. DATABASE_URL, REDIS_URL and CELERY_BROKER_URL move it onto
PostgreSQL, Redis and a real broker.
"""

import base64
import hashlib
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
# The secrets `make run` generates on its first start, for every process and command run in this
# checkout; a variable set in the environment wins over the file.
load_dotenv(os.environ.get("SWITCHBOARD_ENV_FILE") or BASE_DIR / ".env")
VAR_DIR = Path(os.environ.get("SWITCHBOARD_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_addresses(name: str) -> list[tuple[str, int]]:
    """host:port,host:port,... as (host, port) pairs."""
    addresses = []
    for item in filter(None, (part.strip() for part in os.environ.get(name, "").split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"{name} must list host:port pairs separated by commas, got {item!r}")
        addresses.append((host, int(port)))
    return addresses


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set: in the environment, or in .env (`make run` writes one on its first start).")

# Provider secrets are encrypted with this key (Fernet). Changing it makes stored secrets unreadable.
# Derived from SECRET_KEY when unset, which `check --deploy` warns about (providers.W001): one leaked
# key would then open both.
SECRETS_ENCRYPTION_KEY_DERIVED = not os.environ.get("SECRETS_ENCRYPTION_KEY")
_encryption_source = os.environ.get("SECRETS_ENCRYPTION_KEY") or SECRET_KEY
SECRETS_ENCRYPTION_KEY = base64.urlsafe_b64encode(hashlib.sha256(_encryption_source.encode()).digest())

# Which environment variables a provider's credential_env may name, and whether its base_url may be
# plain http or a private host (providers.egress; link-local and metadata addresses are always refused).
PROVIDER_CREDENTIAL_ENV_PATTERN = os.environ.get("PROVIDER_CREDENTIAL_ENV_PATTERN") or r"[A-Z][A-Z0-9_]*_API_KEY"
PROVIDER_ALLOW_PRIVATE_BASE_URLS = env_bool("PROVIDER_ALLOW_PRIVATE_BASE_URLS", False)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "adminsortable2",
    "django_celery_beat",
    "providers",
    "router",
    "alerts",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "switchboard.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "switchboard.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "switchboard.middleware.BrowserAuthenticationMiddleware",
    "switchboard.middleware.BrowserMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "switchboard.urls"
WSGI_APPLICATION = "switchboard.wsgi.application"

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

VAR_DIR.mkdir(parents=True, exist_ok=True)
_connection_options = {"conn_max_age": env_int("DATABASE_CONN_MAX_AGE", 600),
                       "conn_health_checks": env_bool("DATABASE_CONN_HEALTH_CHECKS", False)}
DATABASES = {
    "default": dj_database_url.parse(os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'switchboard.sqlite3'}",
                                     **_connection_options),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock when a transaction starts, so two processes counting against
    # the same quota are serialised instead of both reading the old total.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so that tests can share the database with the processes they start.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    # A database that does not answer fails a call in seconds rather than holding a worker (router.database_outage).
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5)
    # One test database per test run, so that runs side by side on one server do not drop each other's.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
# A streaming replica of DATABASE_URL for the ops pages' heavy reads of the audit (router.replica); empty: every read
# goes to DATABASE_URL.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    raise ImproperlyConfigured("DATABASE_REPLICA_URL names a replica of DATABASE_URL's PostgreSQL: set DATABASE_URL too.")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(DATABASE_REPLICA_URL, **_connection_options)
    DATABASES["replica"]["OPTIONS"] = DATABASES["default"].get("OPTIONS", {}) | DATABASES["replica"].get("OPTIONS", {})
    # Tests read the test database through it.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["router.replica.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "/"

# Security: secure defaults whenever DEBUG is off; behind a TLS-terminating proxy set
# SECURE_PROXY_SSL_HEADER_ENABLED=1 so Django knows the original request was HTTPS.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$", r"^metrics$"]
if env_bool("SECURE_PROXY_SSL_HEADER_ENABLED", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

# Request bodies larger than this are refused (the routing API's bodies are a few hundred bytes;
# a policy document is the largest legitimate body).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["router.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["router.filters.StrictFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "router.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "router.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "URL_FORMAT_OVERRIDE": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": "Which model, at which provider, under which id, right now.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The provider kinds are one enum wherever they appear (a routed model's kind, a route request's apis).
    "ENUM_NAME_OVERRIDES": {"ProviderKindEnum": "router.schema.PROVIDER_KINDS"},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "router.schema.add_undeclared_answers"],
}

# Counters: Redis when REDIS_URL is set, the database otherwise.
REDIS_URL = os.environ.get("REDIS_URL", "")
ROUTER_REDIS_PREFIX = os.environ.get("ROUTER_REDIS_PREFIX", "switchboard:")
ROUTER_REDIS_DOWN = os.environ.get("ROUTER_REDIS_DOWN", "db")
if ROUTER_REDIS_DOWN not in {"db", "refuse"}:
    raise ImproperlyConfigured(f"ROUTER_REDIS_DOWN must be 'db' or 'refuse', got {ROUTER_REDIS_DOWN!r}")
# Each process's Redis connections for the counters, and how long a caller waits for a free one.
# Sentinel: the counters ask these Sentinels (host:port,...) for the primary of REDIS_SENTINEL_MASTER on every new
# connection, and so follow it across a failover; REDIS_URL still gives the database, the user, password and TLS.
REDIS_SENTINELS = env_addresses("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "")
REDIS_SENTINEL_PASSWORD = os.environ.get("REDIS_SENTINEL_PASSWORD", "")
if REDIS_SENTINELS and not (REDIS_SENTINEL_MASTER and REDIS_URL):
    raise ImproperlyConfigured("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the primary's name in Sentinel) and REDIS_URL "
                               "(the database number, user, password and TLS; its host is the one Sentinel names).")
# Cluster: "" finds out whether REDIS_URL names a Redis Cluster node (INFO cluster), "1" says it does, "0" that it does not.
REDIS_CLUSTER = os.environ.get("REDIS_CLUSTER", "")
if REDIS_CLUSTER not in {"", "0", "1"}:
    raise ImproperlyConfigured(f"REDIS_CLUSTER must be 1, 0 or unset (found out from the server), got {REDIS_CLUSTER!r}")
if REDIS_CLUSTER == "1" and REDIS_SENTINELS:
    raise ImproperlyConfigured("REDIS_CLUSTER=1 and REDIS_SENTINELS exclude each other: a cluster promotes its replicas itself.")
# Each counting script is followed by WAIT REDIS_MIN_REPLICAS REDIS_MIN_REPLICAS_TIMEOUT_MS: a decision or report is answered
# with success only once that many replicas hold it, else 503 counters_unavailable (0: answer once the primary holds it).
REDIS_MIN_REPLICAS = env_int("REDIS_MIN_REPLICAS", 0)
REDIS_MIN_REPLICAS_TIMEOUT_MS = env_int("REDIS_MIN_REPLICAS_TIMEOUT_MS", 200)
if REDIS_MIN_REPLICAS < 0 or REDIS_MIN_REPLICAS_TIMEOUT_MS < 1:
    raise ImproperlyConfigured("REDIS_MIN_REPLICAS must be 0 or more and REDIS_MIN_REPLICAS_TIMEOUT_MS 1 or more.")
ROUTER_REDIS_MAX_CONNECTIONS = env_int("ROUTER_REDIS_MAX_CONNECTIONS", 64)
ROUTER_REDIS_POOL_TIMEOUT = float(os.environ.get("ROUTER_REDIS_POOL_TIMEOUT", "2"))
# How long a process trusts its in-memory copy of the policy and of API keys before checking again.
ROUTER_POLICY_RECHECK_SECONDS = float(os.environ.get("ROUTER_POLICY_RECHECK_SECONDS", "1"))
# While the database cannot be reached, how long after it last answered a process goes on routing with
# the policy and API keys it holds (router.database_outage).
ROUTER_DATABASE_DOWN_SECONDS = float(os.environ.get("ROUTER_DATABASE_DOWN_SECONDS", "600"))
# When set, /metrics answers only a scrape that sends it as a bearer token.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Days the ledger keeps primary decisions and usage reports, and fallbacks, escalations and refusals
# (router.retention; a system check refuses ages shorter than the longest quota window and a day).
ROUTER_RETENTION_PRIMARY_DAYS = env_int("ROUTER_RETENTION_PRIMARY_DAYS", 30)
ROUTER_RETENTION_AUDIT_DAYS = env_int("ROUTER_RETENTION_AUDIT_DAYS", 400)

# Alerts (the alerts app): the dashboard's address that messages link to (empty: no link), and how long one
# webhook call may take.
ALERTS_DASHBOARD_URL = os.environ.get("ALERTS_DASHBOARD_URL", "").rstrip("/")
ALERTS_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("ALERTS_WEBHOOK_TIMEOUT_SECONDS", "10"))
# Email alerts go through Django's email settings.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "switchboard@localhost")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    BROKER_DIR = VAR_DIR / "broker"
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith("sentinel://"):
    # Kombu's Sentinel transport: CELERY_BROKER_URL=sentinel://host1:26379;sentinel://host2:26379, the primary's name here.
    if not os.environ.get("CELERY_BROKER_SENTINEL_MASTER"):
        raise ImproperlyConfigured("A sentinel:// CELERY_BROKER_URL needs CELERY_BROKER_SENTINEL_MASTER (the primary's name in Sentinel).")
    CELERY_BROKER_TRANSPORT_OPTIONS = {"master_name": os.environ["CELERY_BROKER_SENTINEL_MASTER"]}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # botocore logs request bodies and headers at DEBUG; keep provider credentials out of logs.
        "botocore": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # "Sending due task", "Task received / succeeded" for every task: the ledger is drained every second.
        "celery.beat": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
    },
}
