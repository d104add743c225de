"""Cascade settings. Every knob is an environment variable; README lists them all."""

from pathlib import Path

import dj_database_url

from config.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        # Only development may run without a key; a fixed one there keeps sessions
        # across restarts. Production must set its own.
        raise ImproperlyConfiguredEnv("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_q",
    "clients",
    "providers",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "config.middleware.PartnerApiLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.OperatorTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
                "clients.context_processors.operator",
            ],
        },
    },
]

# SQLite file by default so `make run` needs no server; PostgreSQL in tests and
# production. CONN_MAX_AGE matters for django-q2's ORM broker: without persistent
# connections it reconnects on every queue operation (measured ~7x slower).
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
CONN_MAX_AGE = env_int("CONN_MAX_AGE", 60, minimum=0)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; the web server and qcluster share one file, so
    # wait for the lock instead of failing, and let readers run beside a writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Russian first: the operators are Russian. Each user picks a language in the header
# (LocaleMiddleware keeps it in a cookie); the partner API answers in English unless a
# request asks for Russian (config.middleware.PartnerApiLanguageMiddleware).
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "ru")
if LANGUAGE_CODE not in dict(LANGUAGES):
    raise ImproperlyConfiguredEnv(f"LANGUAGE_CODE must be one of {', '.join(dict(LANGUAGES))}")
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = env_str("TIME_ZONE", "Europe/Moscow")
USE_I18N = True
USE_TZ = True

# How long a worker's claim on a batch lasts before the sweeper takes it back
# (a worker that died); longer than any gateway timeout.
CASCADE_CLAIM_LEASE_SECONDS = env_int("CASCADE_CLAIM_LEASE_SECONDS", 120, minimum=1)

# Deliveries one worker claims at a time, in whole requests of an account's
# max_batch: the database work is paid per claim, the gateway calls per request.
CASCADE_CLAIM_TARGET = env_int("CASCADE_CLAIM_TARGET", 1000, minimum=1)

# Where gateways reach this installation: callback URLs are built on it.
CASCADE_PUBLIC_URL = env_str("CASCADE_PUBLIC_URL", "http://127.0.0.1:8000")

# Callbacks are stored, then applied in batches (providers/inbox.py). A webhook
# request applies the waiting ones itself at most once per DRAIN_INTERVAL
# seconds per process (0: every request; larger: bigger, cheaper batches, and
# the rest waits for a task), for at most DRAIN_SECONDS (bounds the answer
# time a gateway sees).
CASCADE_CALLBACK_DRAIN_INTERVAL = env_float("CASCADE_CALLBACK_DRAIN_INTERVAL", 0.1, minimum=0)
CASCADE_CALLBACK_DRAIN_SECONDS = env_float("CASCADE_CALLBACK_DRAIN_SECONDS", 0.5, minimum=0)

# Phone numbers written without a country code are read in this region.
CASCADE_DEFAULT_REGION = env_str("CASCADE_DEFAULT_REGION", "RU")

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Hashed, compressed file names need `collectstatic` first; development and
# tests serve the files straight from the apps instead.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Security: strict defaults in production, relaxed only by DEBUG or explicit env.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (config/middleware.py). Scripts only from our own files: the
# pages pass server data in data-* attributes or json_script, never in inline code.
# Styles may be inline: progress bars and the funnel take their widths from the server
# in style="width: …%" (so they are right without JavaScript), and an inline style cannot
# run code. Images from any https: address, because a Viber template's preview shows its
# image from where the gateway will fetch it. CASCADE_CSP="" sends no policy (e.g. to use
# the buttons of Django's DEBUG error page, which are inline scripts).
CASCADE_CSP = env_str(
    "CASCADE_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)

# 4 MiB: a partner's 10,000-row CardPhoneClientList in XML is about 3 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 4 * 1024 * 1024, minimum=1024)

# Partner API (config/lcmanager): body limit (a 10,000-row CardPhoneClientList
# in XML is about 3 MB), requests per credential per minute, and failed
# authentications per client address per minute before it is refused.
CASCADE_API_MAX_BODY_BYTES = env_int("CASCADE_API_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
CASCADE_API_REQUESTS_PER_MINUTE = env_int("CASCADE_API_REQUESTS_PER_MINUTE", 3000, minimum=1)
CASCADE_API_AUTH_FAILURES = env_int("CASCADE_API_AUTH_FAILURES", 20, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The partner API ignores ?format= (a partner's own parameter must not change the answer).
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cascade partner API",
    "DESCRIPTION": (
        "LCManager's SendMessageProcess and ClientUpdateCommunication, byte for byte, "
        "in JSON, XML (.NET DataContract) and form encoding; plus MessageStatus, "
        "Cascade's extension. Authentication is in the body: Operator + Token, or SiteCode."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from the sidecar package's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# django-q2: Redis broker when REDIS_URL is set, the database otherwise.
# timeout must stay below retry, or a slow task is started a second time while
# the first still runs.
REDIS_URL = env_str("REDIS_URL")
Q_CLUSTER = {
    "name": "cascade",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": env_int("Q_TIMEOUT", 120, minimum=1),
    "retry": env_int("Q_RETRY", 180, minimum=2),
    "max_attempts": 5,
    "queue_limit": 50,
    "bulk": 10,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if Q_CLUSTER["timeout"] >= Q_CLUSTER["retry"]:
    raise ImproperlyConfiguredEnv("Q_TIMEOUT must be smaller than Q_RETRY")

# The cache holds the partner API's rate windows and failed-login counters, which must
# be one count for all web workers: Redis (CACHE_URL, or the broker's REDIS_URL) when
# there is one. Without Redis each process counts for itself (fine for `make run`, one
# process; with N gunicorn workers a limit is N times looser) - the README says so.
CACHE_URL = env_str("CACHE_URL", REDIS_URL)
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "cascade",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A webhook's path holds its secret (config/logging.py).
    "filters": {"redact_webhook_secrets": {"()": "config.logging.RedactWebhookSecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_webhook_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # The two loggers that write request paths redact them before any handler sees the
    # record: a handler added later (an error tracker, pytest's caplog) gets it clean too.
    # Both pass their records on to the root's console, like every other logger; Django's
    # own default for django.server (its own handler, propagate off) is replaced here.
    "loggers": {
        "django.request": {"filters": ["redact_webhook_secrets"], "propagate": True},
        "django.server": {
            "filters": ["redact_webhook_secrets"],
            "level": "NOTSET",
            "propagate": True,
        },
    },
}
