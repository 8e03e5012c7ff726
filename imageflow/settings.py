"""Settings: every process reads its configuration here, from environment variables only.

The defaults select the embedded local backends, so a fresh checkout runs with no
configuration at all. Names are the contract of ARCHITECTURE.md and appear unchanged in
docker-compose.yml, the k8s ConfigMap and the tests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from .topology import Topics


class SettingsError(ValueError):
    """A required setting is missing or malformed."""


URL_SIGNING_SECRET_REQUIRED = (
    "URL_SIGNING_SECRET is required with API_KEYS on the gcp backend: the image-handler and the "
    "interaction manager must sign links with the same unguessable secret (e.g. `openssl rand -base64 48`), "
    "and there is no shared data directory to keep a generated one in (imageflow/links.py)")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


# Each process's port when its variable is unset (the local stack, compose and the k8s manifests use these).
SERVICE_PORTS = {"image-handler": 8080, "interaction-manager": 8081, "image-processor": 8082, "email-function": 8083}


@dataclass(frozen=True)
class Settings:
    backend: str = "local"
    data_dir: Path = Path(".imageflow")
    gcp_project: str = ""
    gcs_bucket: str = ""
    public_base_url: str = "http://127.0.0.1:8080"
    # The image-handler's port, IMAGEFLOW_PORT (the API's: the public URL's default on every process).
    port: int = 8080
    # PORT: the port of this process's own server when it is not the image-handler (the manager's and the
    # processor's health and metrics, the email function's); 0: the service's default (SERVICE_PORTS).
    service_port: int = 0
    bind_host: str = "127.0.0.1"
    max_upload_bytes: int = 25 * 1024 * 1024          # per file
    max_request_bytes: int = 200 * 1024 * 1024        # whole multipart request
    max_json_bytes: int = 16 * 1024 * 1024            # any other request body (JSON, PATCH...): 100,000 URLs
    # A request body must keep arriving: each read waits at most REQUEST_BODY_TIMEOUT seconds, and the
    # body as a whole may take that long plus its size at REQUEST_BODY_MIN_BYTES_PER_SECOND (slow clients).
    request_body_timeout_seconds: float = 15.0
    request_header_timeout_seconds: float = 10.0     # a request's headers, from its first byte (slow clients)
    request_body_min_bytes_per_second: int = 16 * 1024
    max_image_pixels: int = 50_000_000
    max_files_per_job: int = 10_000                   # uploaded files (one request, or many into an open job)
    max_urls_per_job: int = 100_000                   # URL and CSV jobs
    open_job_idle_seconds: int = 86_400               # an open job with no new file this long closes itself
    processor_concurrency: int = 2
    # Tasks a processor holds at once (fetching, waiting for a render slot, rendering, writing, publishing), so
    # storage and bus round trips overlap the renders; 0: 8 per render slot. Never fewer than the slots.
    processor_max_in_flight: int = 0
    # Each concurrency slot renders in its own long-lived worker process with this cap on its resident memory (RSS, MB; 0: none),
    # and a render may take RENDER_TIMEOUT_SECONDS (its worker is replaced past that, plus a grace).
    processor_worker_memory_mb: int = 768
    render_timeout_seconds: float = 120.0
    # Estimates (services.image_handler.estimate): their samples render in ESTIMATE_CONCURRENCY worker processes of
    # the image-handler, each capped at ESTIMATE_WORKER_MEMORY_MB of address space; an estimate's samples may take
    # ESTIMATE_TIMEOUT_SECONDS in all. At most ESTIMATE_MAX_IN_FLIGHT estimates at once per image-handler process
    # (more: 503) and, with API keys on, ESTIMATE_MAX_IN_FLIGHT_PER_KEY per key (more: 429); 0: no bound.
    estimate_concurrency: int = 1
    estimate_worker_memory_mb: int = 640
    estimate_timeout_seconds: float = 20.0
    estimate_max_in_flight: int = 2
    estimate_max_in_flight_per_key: int = 1
    ack_deadline_seconds: int = 60
    max_delivery_attempts: int = 5
    # A nacked message is redelivered after an exponential backoff between these (every subscription).
    retry_min_backoff_seconds: float = 1.0
    retry_max_backoff_seconds: float = 60.0
    sendgrid_api_key: str = ""
    sendgrid_api_host: str = "https://api.sendgrid.com"
    email_from: str = "ImageFlow <no-reply@imageflow.local>"
    signed_url_ttl_seconds: int = 3600
    # Jobs and their files are deleted this many days after creation (Firestore TTL on
    # expires_at, the bucket's lifecycle rule: scripts/deploy.sh sets both from it; locally the
    # interaction manager's retention sweep, which leaves a tombstone answering 410). 0 keeps
    # them forever (local only: deploy.sh wants a positive number of days).
    job_retention_days: int = 30
    # With keys on, the zip link in job.completed (the email, the webhook) is signed to work until
    # the job's files are deleted (JOB_RETENTION_DAYS after creation); when retention is 0, for
    # this many days after the job completes (imageflow.links, interaction manager).
    notification_link_days: int = 30
    # Originals (a job's <job_id>/input/ files) are deleted this many hours after the job
    # completes, by the interaction manager's sweep; outputs keep JOB_RETENTION_DAYS. A retry or
    # re-run after that answers 410 originals_deleted. 0 (the default) keeps them as long as the
    # job; the GKE overlay sets 168 (a week): originals are most of the stored bytes (issue 27).
    input_retention_hours: int = 0
    # Proxies in front that set X-Forwarded-Proto (GKE's load balancer: 1); 0 trusts none.
    # Links the API builds then keep the caller's https:// scheme.
    forwarded_proto_hops: int = 0
    progress_flush_seconds: float = 1.0
    drain_seconds: float = 30.0
    frontend_dir: Path | None = None
    notifications_push_endpoint: str | None = None
    # Callers and quotas (services.image_handler.auth): keys required only when API_KEYS is set; 0 = no quota.
    api_keys: str = ""
    quota_active_jobs: int = 0
    quota_active_images: int = 0
    quota_active_cost: int = 0      # output megapixels of a key's unfinished images (domain.image_cost)
    # Fair share between keys (imageflow.fair_share): tasks on the bus and unfinished, all keys together, that
    # the manager aims at (320: 20 processor replicas, KEDA's maxReplicaCount, x 16 tasks each), split evenly
    # among the keys with images waiting, never below FAIR_SHARE_MIN per key. FAIR_SHARE_TASKS=0: off (every task
    # is published at once).
    fair_share_tasks: int = 320
    fair_share_min: int = 32
    # The key of signed links; unset: a random one kept in <data_dir>/url-signing-secret (local backend;
    # required with API_KEYS on gcp). imageflow.links.
    url_signing_secret: str = ""
    # Import by URL (imageflow.safe_http). FETCH_ALLOW_CIDRS / FETCH_HOSTS_OVERRIDE are for tests only.
    fetch_timeout_seconds: float = 20.0
    fetch_max_bytes: int = 25 * 1024 * 1024
    fetch_max_redirects: int = 5
    # URL download bytes one processor holds in memory at once, over all its downloads (each streams to the
    # blob store a 256 KiB chunk at a time and reserves each chunk before reading it; a download that finds
    # the budget spent waits). 32 MiB: under 1 % of the processor's 4608Mi limit, and 128 downloads' chunks,
    # far more than the 16 tasks it holds by default (PROCESSOR_MAX_IN_FLIGHT), so it bites only when that is raised.
    fetch_max_in_flight_bytes: int = 32 * 1024 * 1024
    fetch_allow_cidrs: str = ""
    fetch_hosts_override: str = ""
    # Webhooks (services.interaction_manager.webhooks).
    webhook_max_attempts: int = 5
    webhook_backoff_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    # Request rate limit per client address on /api/ (image-handler, services.image_handler.ratelimit); 0 turns it off.
    # RATE_LIMIT_PROXY_HOPS: proxies in front that append to X-Forwarded-For (GKE's load balancer: 2).
    rate_limit_per_second: float = 30.0
    rate_limit_burst: int = 300
    rate_limit_proxy_hops: int = 0
    # Dedupe (services.image_processor.dedupe): the same bytes + operations of one caller render once.
    dedupe_outputs: bool = True
    topics: Topics = field(default_factory=Topics)

    @property
    def webhook_delivery_limit(self) -> int:
        """Deliveries of one job.completed on the webhooks subscription before it is
        dead-lettered: one per webhook attempt, plus the usual margin for handler failures."""
        return self.webhook_max_attempts + self.max_delivery_attempts

    @property
    def api_keys_on(self) -> bool:
        """``API_KEYS`` lists at least one key."""
        return any(part.strip() for part in (self.api_keys or "").split(","))

    def listen_port(self, service: str) -> int:
        """The port ``service``'s process listens on: the image-handler's is IMAGEFLOW_PORT, every other
        process's PORT (each container's own, as Cloud Run and functions-framework name it), else its default."""
        if service not in SERVICE_PORTS:
            raise SettingsError(f"unknown service {service!r}: one of {', '.join(SERVICE_PORTS)}")
        if service == "image-handler":
            return self.port
        return self.service_port or SERVICE_PORTS[service]

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def processor_in_flight(self) -> int:
        """How many tasks the processor's subscriber leases at once (PROCESSOR_MAX_IN_FLIGHT, resolved)."""
        return max(self.processor_concurrency, self.processor_max_in_flight or 8 * self.processor_concurrency)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read settings from ``env`` (default: ``os.environ``); fail fast on bad values."""
        env = os.environ if env is None else env
        backend = env.get("IMAGEFLOW_BACKEND", "local").strip().lower() or "local"
        if backend not in {"local", "gcp"}:
            raise SettingsError(f"IMAGEFLOW_BACKEND must be 'local' or 'gcp', got {backend!r}")
        settings = cls(
            backend=backend,
            data_dir=Path(env.get("IMAGEFLOW_DATA_DIR") or ".imageflow").resolve(),
            gcp_project=env.get("GCP_PROJECT", "") or env.get("GOOGLE_CLOUD_PROJECT", ""),
            gcs_bucket=env.get("GCS_BUCKET", ""),
            public_base_url=(env.get("PUBLIC_BASE_URL") or "").rstrip("/")
            or f"http://127.0.0.1:{_int(env, 'IMAGEFLOW_PORT', 8080)}",
            port=_int(env, "IMAGEFLOW_PORT", 8080),
            service_port=_int(env, "PORT", 0),
            bind_host=env.get("BIND_HOST") or cls.bind_host,
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", cls.max_request_bytes),
            max_json_bytes=_int(env, "MAX_JSON_BYTES", cls.max_json_bytes),
            request_body_timeout_seconds=max(0.1, _float(env, "REQUEST_BODY_TIMEOUT",
                                                         cls.request_body_timeout_seconds)),
            request_header_timeout_seconds=max(0.1, _float(env, "REQUEST_HEADER_TIMEOUT",
                                                           cls.request_header_timeout_seconds)),
            request_body_min_bytes_per_second=max(1, _int(env, "REQUEST_BODY_MIN_BYTES_PER_SECOND",
                                                          cls.request_body_min_bytes_per_second)),
            max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", cls.max_image_pixels),
            max_files_per_job=_int(env, "MAX_FILES_PER_JOB", cls.max_files_per_job),
            max_urls_per_job=_int(env, "MAX_URLS_PER_JOB", cls.max_urls_per_job),
            open_job_idle_seconds=_int(env, "OPEN_JOB_IDLE_SECONDS", cls.open_job_idle_seconds),
            processor_concurrency=max(1, _int(env, "PROCESSOR_CONCURRENCY", cls.processor_concurrency)),
            processor_max_in_flight=max(0, _int(env, "PROCESSOR_MAX_IN_FLIGHT", cls.processor_max_in_flight)),
            processor_worker_memory_mb=_int(env, "PROCESSOR_WORKER_MEMORY_MB", cls.processor_worker_memory_mb),
            estimate_concurrency=max(1, _int(env, "ESTIMATE_CONCURRENCY", cls.estimate_concurrency)),
            estimate_worker_memory_mb=_int(env, "ESTIMATE_WORKER_MEMORY_MB", cls.estimate_worker_memory_mb),
            estimate_timeout_seconds=max(1.0, _float(env, "ESTIMATE_TIMEOUT_SECONDS", cls.estimate_timeout_seconds)),
            estimate_max_in_flight=_int(env, "ESTIMATE_MAX_IN_FLIGHT", cls.estimate_max_in_flight),
            estimate_max_in_flight_per_key=_int(env, "ESTIMATE_MAX_IN_FLIGHT_PER_KEY",
                                                cls.estimate_max_in_flight_per_key),
            render_timeout_seconds=max(1.0, _float(env, "RENDER_TIMEOUT_SECONDS", cls.render_timeout_seconds)),
            ack_deadline_seconds=max(1, _int(env, "ACK_DEADLINE_SECONDS", cls.ack_deadline_seconds)),
            max_delivery_attempts=max(1, _int(env, "MAX_DELIVERY_ATTEMPTS", cls.max_delivery_attempts)),
            retry_min_backoff_seconds=max(0.0, _float(env, "RETRY_MIN_BACKOFF_SECONDS", cls.retry_min_backoff_seconds)),
            retry_max_backoff_seconds=max(0.0, _float(env, "RETRY_MAX_BACKOFF_SECONDS", cls.retry_max_backoff_seconds)),
            sendgrid_api_key=env.get("SENDGRID_API_KEY", ""),
            sendgrid_api_host=env.get("SENDGRID_API_HOST") or cls.sendgrid_api_host,
            email_from=env.get("EMAIL_FROM") or cls.email_from,
            signed_url_ttl_seconds=_int(env, "SIGNED_URL_TTL_SECONDS", cls.signed_url_ttl_seconds),
            job_retention_days=max(0, _int(env, "JOB_RETENTION_DAYS", cls.job_retention_days)),
            notification_link_days=max(1, _int(env, "NOTIFICATION_LINK_DAYS", cls.notification_link_days)),
            input_retention_hours=max(0, _int(env, "INPUT_RETENTION_HOURS", cls.input_retention_hours)),
            forwarded_proto_hops=_int(env, "FORWARDED_PROTO_HOPS", cls.forwarded_proto_hops),
            progress_flush_seconds=_float(env, "PROGRESS_FLUSH_SECONDS", cls.progress_flush_seconds),
            drain_seconds=_float(env, "DRAIN_SECONDS", cls.drain_seconds),
            frontend_dir=Path(env["FRONTEND_DIR"]).resolve() if env.get("FRONTEND_DIR") else None,
            notifications_push_endpoint=env.get("NOTIFICATIONS_PUSH_ENDPOINT") or None,
            api_keys=env.get("API_KEYS", "").strip(),
            quota_active_jobs=_int(env, "QUOTA_ACTIVE_JOBS", cls.quota_active_jobs),
            quota_active_images=_int(env, "QUOTA_ACTIVE_IMAGES", cls.quota_active_images),
            quota_active_cost=_int(env, "QUOTA_ACTIVE_COST", cls.quota_active_cost),
            fair_share_tasks=max(0, _int(env, "FAIR_SHARE_TASKS", cls.fair_share_tasks)),
            fair_share_min=max(1, _int(env, "FAIR_SHARE_MIN", cls.fair_share_min)),
            url_signing_secret=env.get("URL_SIGNING_SECRET", ""),
            fetch_timeout_seconds=_float(env, "FETCH_TIMEOUT_SECONDS", cls.fetch_timeout_seconds),
            fetch_max_bytes=_int(env, "FETCH_MAX_BYTES", _int(env, "MAX_UPLOAD_BYTES", cls.fetch_max_bytes)),
            fetch_max_redirects=_int(env, "FETCH_MAX_REDIRECTS", cls.fetch_max_redirects),
            fetch_max_in_flight_bytes=max(1, _int(env, "FETCH_MAX_IN_FLIGHT_BYTES", cls.fetch_max_in_flight_bytes)),
            fetch_allow_cidrs=env.get("FETCH_ALLOW_CIDRS", "").strip(),
            fetch_hosts_override=env.get("FETCH_HOSTS_OVERRIDE", "").strip(),
            webhook_max_attempts=max(1, _int(env, "WEBHOOK_MAX_ATTEMPTS", cls.webhook_max_attempts)),
            webhook_backoff_seconds=_float(env, "WEBHOOK_BACKOFF_SECONDS", cls.webhook_backoff_seconds),
            webhook_timeout_seconds=_float(env, "WEBHOOK_TIMEOUT_SECONDS", cls.webhook_timeout_seconds),
            rate_limit_per_second=max(0.0, _float(env, "RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second)),
            rate_limit_burst=_int(env, "RATE_LIMIT_BURST", cls.rate_limit_burst),
            rate_limit_proxy_hops=_int(env, "RATE_LIMIT_PROXY_HOPS", cls.rate_limit_proxy_hops),
            dedupe_outputs=_bool(env, "DEDUPE_OUTPUTS", cls.dedupe_outputs),
            topics=Topics.from_env(env),
        )
        if backend == "gcp":
            missing = [name for name, value in (("GCP_PROJECT", settings.gcp_project),
                                                ("GCS_BUCKET", settings.gcs_bucket)) if not value]
            if missing:
                raise SettingsError(f"IMAGEFLOW_BACKEND=gcp needs {', '.join(missing)}")
            if settings.api_keys_on and not settings.url_signing_secret:
                # never a secret derived from other settings; no shared data dir to keep a generated one
                raise SettingsError(URL_SIGNING_SECRET_REQUIRED)
        return settings

    def with_overrides(self, **changes) -> "Settings":
        """A copy with some fields replaced (used by tests and create_app(test_config))."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise SettingsError(f"unknown settings: {sorted(unknown)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


ENV_NAMES = (
    "IMAGEFLOW_BACKEND", "IMAGEFLOW_DATA_DIR", "IMAGEFLOW_PORT", "BIND_HOST", "GCP_PROJECT", "GCS_BUCKET",
    "PUBLIC_BASE_URL", "MAX_UPLOAD_BYTES", "MAX_REQUEST_BYTES", "MAX_JSON_BYTES", "REQUEST_BODY_TIMEOUT",
    "REQUEST_HEADER_TIMEOUT",
    "REQUEST_BODY_MIN_BYTES_PER_SECOND", "MAX_IMAGE_PIXELS",
    "MAX_FILES_PER_JOB", "MAX_URLS_PER_JOB", "OPEN_JOB_IDLE_SECONDS", "PROCESSOR_CONCURRENCY",
    "PROCESSOR_MAX_IN_FLIGHT", "PROCESSOR_WORKER_MEMORY_MB", "RENDER_TIMEOUT_SECONDS", "ACK_DEADLINE_SECONDS",
    "MAX_DELIVERY_ATTEMPTS",
    "RETRY_MIN_BACKOFF_SECONDS", "RETRY_MAX_BACKOFF_SECONDS",
    "SENDGRID_API_KEY", "SENDGRID_API_HOST", "EMAIL_FROM", "SIGNED_URL_TTL_SECONDS",
    "PROGRESS_FLUSH_SECONDS", "DRAIN_SECONDS", "PORT", "FRONTEND_DIR", "NOTIFICATIONS_PUSH_ENDPOINT", *Topics.ENV.values(),
    "API_KEYS", "QUOTA_ACTIVE_JOBS", "QUOTA_ACTIVE_IMAGES", "QUOTA_ACTIVE_COST", "URL_SIGNING_SECRET", "FETCH_TIMEOUT_SECONDS",
    "FAIR_SHARE_TASKS", "FAIR_SHARE_MIN",
    "FETCH_MAX_BYTES", "FETCH_MAX_REDIRECTS", "FETCH_MAX_IN_FLIGHT_BYTES", "FETCH_ALLOW_CIDRS",
    "FETCH_HOSTS_OVERRIDE",
    "WEBHOOK_MAX_ATTEMPTS", "WEBHOOK_BACKOFF_SECONDS", "WEBHOOK_TIMEOUT_SECONDS",
    "RATE_LIMIT_PER_SECOND", "RATE_LIMIT_BURST", "RATE_LIMIT_PROXY_HOPS", "IMAGEFLOW_FAULTS",
    "JOB_RETENTION_DAYS", "INPUT_RETENTION_HOURS", "NOTIFICATION_LINK_DAYS", "FORWARDED_PROTO_HOPS", "LOG_FORMAT", "DEDUPE_OUTPUTS",
)
"""Every environment variable the settings read; manifests and compose files are checked against it."""
