"""Django settings for Certyard.

Everything a deployment changes comes from environment variables, so the embedded
default (SQLite, django-q2 ORM broker) and the scale-out setup (PostgreSQL, Redis)
run the same code. See docs/architecture.md, "Two ways to run".
"""

import datetime as dt
import json
import os
import secrets
from pathlib import Path

import dj_database_url

from certyard.run.addresses import allowed_hosts, default_public_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent  # the repository root
DATA_DIR = Path(os.environ.get("CERTYARD_DATA_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def _secret_key() -> str:
    """The secret key from the environment, or one generated once and kept in DATA_DIR."""
    if key := os.environ.get("CERTYARD_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("CERTYARD_DEBUG", False)
# Where `make run` listens, and where people, agents and relying parties reach the platform
# (certyard.run.addresses): never a wildcard such as 0.0.0.0, which names no machine.
_RUN_HOST = os.environ.get("CERTYARD_HOST") or "127.0.0.1"
_RUN_PORT = os.environ.get("CERTYARD_PORT") or "8000"
CERTYARD_PUBLIC_URL = os.environ.get("CERTYARD_PUBLIC_URL") or default_public_url(
    _RUN_HOST, _RUN_PORT
)
# Only the names this machine answers to, unless told more: a Host header is input too.
# CERTYARD_ALLOWED_HOSTS (default: the loopback names), plus the address listened on (the
# loopback names for every interface, so `make run`'s own health check is answered) and the
# public URL's host.
ALLOWED_HOSTS = allowed_hosts(
    configured=os.environ.get("CERTYARD_ALLOWED_HOSTS"),
    bind_host=_RUN_HOST,
    public_url=CERTYARD_PUBLIC_URL,
)
CSRF_TRUSTED_ORIGINS = [
    o for o in os.environ.get("CERTYARD_CSRF_TRUSTED_ORIGINS", "").split(",") if o
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "django_q",
    "axes",  # login lockout; see "Login throttling" below
    "certyard.workflows",
    "certyard.accounts",
    "certyard.pki",
    "certyard.inventory",
    "certyard.fleet",
    "certyard.jobs",
    "certyard.blueprints",
    "certyard.enrollment",
    "certyard.deployment",
    "certyard.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "certyard.security.ContentSecurityPolicyMiddleware",
    "certyard.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "certyard.middleware.RefuseNulMiddleware",  # %00 in a query string: a 400, not a 500
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Turns a locked-out login into the lockout page; async-capable, as every one here.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "certyard.urls"
WSGI_APPLICATION = "certyard.wsgi.application"

TEMPLATES = [
    {
        # Django's templates, every page's invisible characters (U+202E, ...) shown as
        # escapes, whatever template forgets: see certyard/display.py. Named "django" as
        # Django's own backend is, which template_partials looks for to add its loader.
        "BACKEND": "certyard.display.VisibleTextTemplates",
        "NAME": "django",
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

# --- Database -------------------------------------------------------------------
# Embedded default: SQLite in WAL mode with immediate transactions, so the web
# process and the worker can both write without "database is locked".
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{DATA_DIR / 'certyard.sqlite3'}",
        # Web requests run on long-lived threads (certyard.run.sync_requests), each keeping
        # its connection: a new one costs 1-1.5 ms on SQLite and 3-4 ms on PostgreSQL.
        # Checked before reuse, so a server restart costs one failed check, not an error.
        conn_max_age=int(os.environ.get("CERTYARD_DB_CONN_MAX_AGE", "600")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if test_name := os.environ.get("CERTYARD_TEST_DATABASE_NAME"):
        DATABASES["default"]["TEST"] = {"NAME": test_name}

# --- Cache ------------------------------------------------------------------------
# Shared by every web process, so a rate limit holds however many there are: the
# database (its table comes with `migrate`, fleet's migration 0006) on the embedded
# setup, Redis when CERTYARD_REDIS_URL names one.
CACHE_TABLE = "certyard_cache"


def cache_settings(redis_url: str | None) -> dict[str, dict[str, object]]:
    """The CACHES setting: Redis at ``redis_url`` when given, the database otherwise."""
    if redis_url:
        default: dict[str, object] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        }
    else:
        default = {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": CACHE_TABLE,
            # Culling drops a third of the keys once there are more: room for the
            # throttle history of many client addresses before it forgets any.
            "OPTIONS": {"MAX_ENTRIES": 20000},
        }
    return {
        "default": {**default, "KEY_PREFIX": "certyard"},
        # What need not be shared: django-q2's cluster heartbeat (a write every half second).
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }


CACHES = cache_settings(os.environ.get("CERTYARD_REDIS_URL", "").strip() or None)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Login throttling (django-axes; certyard.accounts.lockout) ---------------------------
# axes' database handler: its failed attempts are rows every web process reads and writes
# (the database is shared by all of them, SQLite or PostgreSQL alike), and Django admin
# lists them (Axes -> Access attempts): an administrator unlocks by deleting one, or runs
# `manage.py axes_reset`. The cache handler would hold the same counts but leave the admin
# nothing to show or unlock.
# A username from one address is locked after CERTYARD_LOGIN_FAILURE_LIMIT failures (the
# pair only: an attacker elsewhere cannot lock the account's owner out), and an address
# after CERTYARD_LOGIN_ADDRESS_FAILURE_LIMIT failures over all usernames (password
# spraying); each for CERTYARD_LOGIN_COOLOFF_MINUTES from the failures that made it. A
# successful login clears that username's failures from that address.
CERTYARD_LOGIN_FAILURE_LIMIT = max(1, int(os.environ.get("CERTYARD_LOGIN_FAILURE_LIMIT", "5")))
CERTYARD_LOGIN_ADDRESS_FAILURE_LIMIT = max(
    CERTYARD_LOGIN_FAILURE_LIMIT,
    int(os.environ.get("CERTYARD_LOGIN_ADDRESS_FAILURE_LIMIT", "50")),
)
CERTYARD_LOGIN_COOLOFF_MINUTES = max(1, int(os.environ.get("CERTYARD_LOGIN_COOLOFF_MINUTES", "15")))
# Refused API tokens an address may present within the cool-off before it is answered 429.
CERTYARD_TOKEN_FAILURE_LIMIT = max(1, int(os.environ.get("CERTYARD_TOKEN_FAILURE_LIMIT", "20")))
AXES_HANDLER = "certyard.accounts.lockout.LoginAttemptsHandler"
AXES_FAILURE_LIMIT = CERTYARD_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = dt.timedelta(minutes=CERTYARD_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A try while locked out does not push the end of the lockout further: the time the
# lockout page gives stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The client address as the platform's throttles take it (CERTYARD_TRUSTED_PROXIES).
AXES_CLIENT_IP_CALLABLE = "certyard.security.client_address"
AXES_LOCKOUT_CALLABLE = "certyard.accounts.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# Who logged in when and from where (Axes -> Access logs), and the failures (Access
# failures, at most this many per username); `manage.py axes_reset_logs --age DAYS` and
# `axes_reset_failure_logs --age DAYS` prune them.
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_ACCESS_FAILURE_LOG_PER_USER_LIMIT = 100

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the finders too, so a missing collectstatic never breaks a page.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:dashboard"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- REST API -------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: DRF answers a request without credentials from the first class's
    # WWW-Authenticate header, so 401 "Token"; session auth has none and would make it 403.
    # People's API tokens are knox's, stored as a hash (certyard.accounts).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "certyard.accounts.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["certyard.api.permissions.ModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "certyard.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "certyard.api.schema.AutoSchema",  # documents the error answers
    "EXCEPTION_HANDLER": "certyard.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, refused above JSON_MAX_DEPTH levels of nesting (a 400, not a RecursionError).
    "DEFAULT_PARSER_CLASSES": ["certyard.api.parsers.SafeJSONParser"],
    # Per client address, for the agent API's unauthenticated endpoints.
    "DEFAULT_THROTTLE_RATES": {
        "agent-register": os.environ.get("CERTYARD_REGISTER_RATE", "30/minute"),
        "agent-session": os.environ.get("CERTYARD_SESSION_RATE", "120/minute"),
    },
    # The client address is the peer's, not an X-Forwarded-For anyone can write, unless
    # CERTYARD_TRUSTED_PROXIES says how many proxies in front of us append to that header.
    "NUM_PROXIES": int(os.environ.get("CERTYARD_TRUSTED_PROXIES", "0")),
}
# People's API tokens (django-rest-knox, model certyard.accounts.ApiToken): only a SHA-512
# digest is stored and the value is shown once; "cyd_" makes a Certyard token recognisable.
# KNOX_TOKEN_MODEL swaps knox's own AuthToken model (and its admin page) out; knox's
# migrations would still create that model's table, empty and in the way of flush.
KNOX_TOKEN_MODEL = "accounts.ApiToken"  # noqa: S105 (a model label)
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    "TOKEN_MODEL": KNOX_TOKEN_MODEL,
    "TOKEN_PREFIX": "cyd_",
    "AUTH_HEADER_PREFIX": "Token",
    # The default lifetime of a new token, 1 to 365 days; "never" only when asked for.
    "TOKEN_TTL": dt.timedelta(
        days=min(365, max(1, int(os.environ.get("CERTYARD_API_TOKEN_DAYS", "90"))))
    ),
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Certyard API",
    "DESCRIPTION": (
        "People's API under /api/v1/ (session or token auth); the orchestrator agents' "
        "API under /api/orchestrator/v1/ (registration token, then proof of key)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RequirementEnum": "certyard.inventory.models.Requirement",
        # A certificate's status (issue 17), beside other models' "status" enums.
        "CertificateStatusEnum": "certyard.inventory.models.CertificateStatus",
        # orchestrators.protocol.JobOutcome, as Job.outcome labels it.
        "JobOutcomeEnum": [("success", "Success"), ("warning", "Warning"), ("failure", "Failure")],
        # JobHistory.Outcome (an inner class: named by its values).
        "AttemptOutcomeEnum": [
            "success",
            "warning",
            "failure",
            "lease_expired",
            "not_picked_up",
            "released",
        ],
        "JobStateEnum": "certyard.jobs.models.Job.State",
        "HandlerRunStateEnum": "certyard.workflows.models.HandlerRun.State",
        # Job.type, as orchestrators.protocol.JobType labels it.
        "JobTypeEnum": [
            ("inventory", "Inventory"),
            ("add", "Add"),
            ("remove", "Remove"),
            ("create", "Create"),
            ("discovery", "Discovery"),
            ("reenrollment", "Reenrollment"),
        ],
        "EnrollmentTypeEnum": "certyard.enrollment.models.EnrollmentRequest.Type",
        "EnrollmentStateEnum": "certyard.enrollment.models.EnrollmentRequest.State",
        "GatewaySyncStateEnum": "certyard.enrollment.models.GatewaySync.State",
    },
}

# --- Background work -------------------------------------------------------------
Q_CLUSTER = {
    "name": "certyard",
    "workers": int(os.environ.get("CERTYARD_WORKERS", "2")),
    "timeout": 300,
    # Above the longest task timeout (an event's handlers, at most 3,000 s), or django-q2
    # hands a task still running to a second worker.
    "retry": 3_660,
    "catch_up": False,
    "orm": "default",
    "save_limit": 250,
    "label": "Background tasks",
    "cache": "local",  # its cluster status, as before; not worth a database write per cycle
}
if broker_url := os.environ.get("CERTYARD_BROKER_URL"):
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = broker_url

# --- Certyard -------------------------------------------------------------------
# Threads per web process serving requests (all but the agents' long polls, which wait
# as coroutines): the requests one process serves at once, and at most its database
# connections. A request beyond them waits for a thread.
CERTYARD_WEB_THREADS = max(1, int(os.environ.get("CERTYARD_WEB_THREADS", "16")))
# Answers on one kept-alive connection before the web process closes it (0: never), so
# the clients' connections spread over the web processes again (certyard.run.sync_requests).
CERTYARD_KEEPALIVE_REQUESTS = max(0, int(os.environ.get("CERTYARD_KEEPALIVE_REQUESTS", "100")))
# A job leased to an agent is offered again when its lease lapses.
CERTYARD_JOB_LEASE_SECONDS = int(os.environ.get("CERTYARD_JOB_LEASE_SECONDS", "300"))
# A job handed to a long poll is leased this long until its agent fetches the job; an
# agent that vanished with it costs the job seconds, not a whole lease.
CERTYARD_JOB_PICKUP_SECONDS = int(os.environ.get("CERTYARD_JOB_PICKUP_SECONDS", "15"))
# How often each web process looks for work for the agents waiting on it.
CERTYARD_POLL_TICK_SECONDS = float(os.environ.get("CERTYARD_POLL_TICK_SECONDS", "0.25"))
CERTYARD_JOB_MAX_ATTEMPTS = int(os.environ.get("CERTYARD_JOB_MAX_ATTEMPTS", "3"))
CERTYARD_JOB_RETRY_DELAY_SECONDS = int(os.environ.get("CERTYARD_JOB_RETRY_DELAY_SECONDS", "30"))
CERTYARD_SESSION_SECONDS = int(os.environ.get("CERTYARD_SESSION_SECONDS", "900"))
# Inventory reports larger than this are refused before they are parsed.
CERTYARD_INVENTORY_MAX_BYTES = int(
    os.environ.get("CERTYARD_INVENTORY_MAX_BYTES", str(64 * 1024 * 1024))
)
CERTYARD_INVENTORY_MAX_ENTRIES = int(os.environ.get("CERTYARD_INVENTORY_MAX_ENTRIES", "500000"))
CERTYARD_AGENT_CERT_DAYS = int(os.environ.get("CERTYARD_AGENT_CERT_DAYS", "365"))
# Agents renew their own client certificate when less than this share of it is left.
CERTYARD_AGENT_RENEW_FRACTION = float(os.environ.get("CERTYARD_AGENT_RENEW_FRACTION", "0.33"))
# CERTYARD_PUBLIC_URL (set above, beside ALLOWED_HOSTS) is where relying parties reach this
# platform: written into issued certificates' CRL distribution point and AIA (OCSP, CA issuers).
# A CRL is valid this long, and regenerated at half its life (and on every revocation).
CERTYARD_CRL_HOURS = int(os.environ.get("CERTYARD_CRL_HOURS", "24"))
# How long an OCSP answer may be cached by its receiver.
CERTYARD_OCSP_HOURS = int(os.environ.get("CERTYARD_OCSP_HOURS", "1"))
# New OCSP signatures per client address per minute (cached answers are served beyond it);
# past it the responder answers tryLater. 0 turns the limit off.
CERTYARD_OCSP_RATE = int(os.environ.get("CERTYARD_OCSP_RATE", "120"))
# A gateway sync whose worker has been quiet this long is handed to another worker.
CERTYARD_SYNC_STALE_SECONDS = int(os.environ.get("CERTYARD_SYNC_STALE_SECONDS", "120"))


def expiry_thresholds_parse(raw: str) -> tuple[int, ...]:
    """CERTYARD_EXPIRY_THRESHOLDS: days left that raise an expiration warning, e.g. "90,30,7,1".

    Refused at start rather than at the first daily scan, so a typo is seen at once.
    """
    from django.core.exceptions import ImproperlyConfigured

    parts = [part.strip() for part in raw.split(",") if part.strip()]
    valid = [part for part in parts if part.isascii() and part.isdigit()]
    if not parts or valid != parts or not all(0 < int(part) <= 3650 for part in parts):
        raise ImproperlyConfigured(
            f"CERTYARD_EXPIRY_THRESHOLDS must be whole numbers of days from 1 to 3650, separated "
            f'by commas (e.g. "90,30,7,1"), not {raw!r}; an expired certificate is always '
            "reported."
        )
    return tuple(sorted({int(part) for part in parts}))


# The daily expiration scan warns once per threshold crossed, and once more when expired.
CERTYARD_EXPIRY_THRESHOLDS = expiry_thresholds_parse(
    os.environ.get("CERTYARD_EXPIRY_THRESHOLDS", "90,30,7,1")
)

# --- Handlers (workflows) ---------------------------------------------------------------
# Registration handlers decide inside the agent's registration request: all of them
# together get at most this long.
CERTYARD_REGISTRATION_HANDLERS_SECONDS = float(
    os.environ.get("CERTYARD_REGISTRATION_HANDLERS_SECONDS", "10")
)
# Handler runs and events are kept this long, then pruned.
CERTYARD_RUN_RETENTION_DAYS = int(os.environ.get("CERTYARD_RUN_RETENTION_DAYS", "90"))
# A run still "running" this long past its timeout lost its worker: it is failed.
CERTYARD_HANDLER_GRACE_SECONDS = int(os.environ.get("CERTYARD_HANDLER_GRACE_SECONDS", "60"))
# A queued run handed to the queue this long ago and never started is handed over again.
CERTYARD_HANDLER_REQUEUE_SECONDS = int(os.environ.get("CERTYARD_HANDLER_REQUEUE_SECONDS", "600"))
# A running metadata backfill whose heartbeat is older than this lost its worker: the
# every-minute schedule queues it again, and it carries on after its last batch.
CERTYARD_BACKFILL_STALE_SECONDS = int(os.environ.get("CERTYARD_BACKFILL_STALE_SECONDS", "60"))
# The email handler sends through Django's SMTP backend, configured here.
EMAIL_HOST = os.environ.get("CERTYARD_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("CERTYARD_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("CERTYARD_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("CERTYARD_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("CERTYARD_EMAIL_STARTTLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("CERTYARD_EMAIL_FROM", "certyard@localhost")
# Script handlers run only scripts an administrator placed in this folder.
# Commands of the `command` secret provider for ref+platform:command:<name>:<argument>
# references, as JSON {"name": ["program", "arg", ...]}: set by the platform host's
# administrator in the environment, never through the console or the API.
CERTYARD_SECRET_COMMANDS: dict[str, list[str]] = json.loads(
    os.environ.get("CERTYARD_SECRET_COMMANDS", "{}") or "{}"
)
CERTYARD_SCRIPTS_DIR = Path(os.environ.get("CERTYARD_SCRIPTS_DIR", DATA_DIR / "scripts"))
# The script handler (in handlers/, without Django) reads the folder from the environment.
os.environ["CERTYARD_SCRIPTS_DIR"] = str(CERTYARD_SCRIPTS_DIR)
# Django refuses bodies above this before any view sees them; keep it above the inventory limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = CERTYARD_INVENTORY_MAX_BYTES + 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CERTYARD_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Security behind a TLS proxy -------------------------------------------------
# The defaults fit the embedded setup (plain HTTP on loopback). Behind a reverse proxy
# that terminates TLS, set the variables below; README.md, "Behind a TLS proxy".


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def secure_cookies() -> bool:
    """CERTYARD_SECURE_COOKIES: send the session and CSRF cookies over HTTPS only."""
    return _env_bool("CERTYARD_SECURE_COOKIES", False)


def hsts_seconds() -> int:
    """CERTYARD_HSTS_SECONDS: Strict-Transport-Security max-age; 0 sends none."""
    return max(0, _env_int("CERTYARD_HSTS_SECONDS", 0))


def proxy_ssl_header() -> tuple[str, str] | None:
    """CERTYARD_TRUST_PROXY_PROTO: believe the proxy's X-Forwarded-Proto (only behind one)."""
    if _env_bool("CERTYARD_TRUST_PROXY_PROTO", False):
        return ("HTTP_X_FORWARDED_PROTO", "https")
    return None


def ssl_redirect() -> bool:
    """CERTYARD_SSL_REDIRECT: redirect plain-HTTP requests to HTTPS."""
    return _env_bool("CERTYARD_SSL_REDIRECT", False)


SESSION_COOKIE_SECURE = secure_cookies()
CSRF_COOKIE_SECURE = secure_cookies()
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = hsts_seconds()
SECURE_HSTS_INCLUDE_SUBDOMAINS = False
SECURE_PROXY_SSL_HEADER = proxy_ssl_header()
SECURE_SSL_REDIRECT = ssl_redirect()
SECURE_REFERRER_POLICY = "same-origin"
# Already set above: SESSION_COOKIE_HTTPONLY, X_FRAME_OPTIONS ("DENY"),
# SECURE_CONTENT_TYPE_NOSNIFF. The Content-Security-Policy comes from
# certyard.security.ContentSecurityPolicyMiddleware.
