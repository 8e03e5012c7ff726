"""Prometheus metrics, defined once and served at /metrics by every service."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter("imageflow_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram("imageflow_http_request_seconds", "HTTP request latency", ["method", "route"])
JOBS_CREATED = Counter("imageflow_jobs_created_total", "Jobs accepted by the API")
IMAGES_ACCEPTED = Counter("imageflow_images_accepted_total", "Images accepted by the API")
IMAGES_REJECTED = Counter("imageflow_images_rejected_total", "Files refused by the API", ["code"])
TASKS = Counter("imageflow_tasks_total", "Tasks processed", ["status"])
TASK_DURATION = Histogram("imageflow_task_seconds", "Time to process one task",
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
RESULTS_FOLDED = Counter("imageflow_results_folded_total", "Results recorded by the interaction manager")
JOBS_COMPLETED = Counter("imageflow_jobs_completed_total", "Jobs announced as finished", ["status"])
OUTSTANDING = Gauge("imageflow_outstanding_tasks", "Tasks published and not yet finished")
FETCH_BYTES_IN_FLIGHT = Gauge("imageflow_fetch_bytes_in_flight",
                              "URL download bytes held in memory now (under FETCH_MAX_IN_FLIGHT_BYTES)")
IN_FLIGHT = Gauge("imageflow_in_flight_messages", "Messages being handled by this process", ["subscription"])


def render_latest() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
