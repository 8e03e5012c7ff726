"""interaction-manager service: the subscriptions below (each message to its handler: fan_out,
uploads, progress, webhooks), the minute's sweep, and health, metrics and the exact
outstanding-task count for KEDA, on $PORT (default 8081)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from flask import Flask, jsonify

from imageflow import tracing
from imageflow.bootstrap import Backends, make_backends
from imageflow.bus import ReceivedMessage
from imageflow.metrics import OUTSTANDING
from imageflow.runtime import HttpServer, configure_logging, health_app, wait_for_signal
from imageflow.settings import Settings
from services.interaction_manager.batcher import ResultBatcher
from services.interaction_manager.coordinator import Coordinator
from services.interaction_manager.uploads import UPLOAD_BATCH, batched_object_events
from services.interaction_manager.webhooks import WebhookSender

from . import lifecycle

log = logging.getLogger("interaction_manager")

INPUT_SWEEP_SECONDS = 3600    # how often INPUT_RETENTION_HOURS deletes originals (lifecycle.expire_inputs)

@dataclass(frozen=True)
class Subscription:
    """One subscription of the manager: its messages go to ``handler``, at most ``max_messages`` at a time."""

    subscription: str
    handler: Callable[[ReceivedMessage], None]
    max_messages: int


def subscriptions(settings: Settings, coordinator: Coordinator, webhooks: WebhookSender,
                  results: ResultBatcher, uploads: ResultBatcher) -> list[Subscription]:
    """Who handles what: results and upload events are acked by their batcher once folded or joined."""
    t = settings.topics
    return [
        Subscription(t.jobs_sub, coordinator.handle_job_submitted, 4),
        Subscription(t.results_sub, results.handle_result, 200),
        Subscription(t.uploads_sub, batched_object_events(coordinator.uploads, uploads), UPLOAD_BATCH),
        Subscription(t.tasks_dlq_sub, lambda m: results.add(coordinator.dead_letter_result(m), m), 50),
        Subscription(t.webhooks_sub, webhooks.handle, 8),
        Subscription(t.webhooks_dlq_sub, webhooks.handle_dead_letter, 4),
        Subscription(t.jobs_dlq_sub, coordinator.handle_job_dead_letter, 2),
        Subscription(t.results_dlq_sub, coordinator.handle_result_dead_letter, 10),
    ]


def create_app(settings: Settings | None = None, backends: Backends | None = None,
               coordinator: Coordinator | None = None, alive=lambda: True) -> Flask:
    settings = settings or Settings.from_env()
    backends = backends or make_backends(settings)
    coordinator = coordinator or Coordinator(settings, backends.jobs, backends.bus, backends.blobs)
    app = health_app("interaction-manager", backends.checks(), alive)

    @app.get("/outstanding")
    def outstanding():
        """Images not yet rendered, across all jobs (KEDA metrics-api, 3 s timeout): the job store's
        maintained counter less the results waiting to be folded (a handful of reads), never a scan."""
        count = coordinator.outstanding_tasks()
        OUTSTANDING.set(count)
        return jsonify(outstanding_tasks=count)

    return app


def main() -> int:
    configure_logging("interaction-manager")
    tracing.configure("interaction-manager")  # off unless OTEL_TRACES_EXPORTER names an exporter
    settings = Settings.from_env()
    backends = make_backends(settings)
    webhooks = WebhookSender(settings, backends.jobs)
    coordinator = Coordinator(settings, backends.jobs, backends.bus, backends.blobs)
    results = coordinator.progress.batcher()
    uploads = coordinator.uploads.batcher()
    subscribers = [backends.bus.subscribe(s.subscription, s.handler, max_messages=s.max_messages,
                                          ack_deadline_seconds=settings.ack_deadline_seconds)
                   for s in subscriptions(settings, coordinator, webhooks, results, uploads)]
    alive = lambda: all(s.is_alive() for s in subscribers)  # noqa: E731
    port = settings.listen_port("interaction-manager")
    server = HttpServer(create_app(settings, backends, coordinator, alive), settings.bind_host, port).start()
    log.info("interaction-manager running (%s backend), health on :%d", settings.backend, server.port)
    coordinator.sweep()

    input_sweep = {"next": 0.0}

    def tick():
        coordinator.sweep()  # its repair queries re-publish lost completions and webhooks
        # INPUT_RETENTION_HOURS: hourly, as its unit (each pass reads every finished job past the cutoff)
        if settings.input_retention_hours and time.monotonic() >= input_sweep["next"]:
            input_sweep["next"] = time.monotonic() + INPUT_SWEEP_SECONDS
            lifecycle.expire_inputs(settings, backends.jobs, backends.blobs)
        lifecycle.expire_jobs(settings, backends.jobs, backends.blobs)  # JOB_RETENTION_DAYS, last

    signal_name = wait_for_signal(tick=tick, tick_seconds=60)
    log.info("%s: stopping", signal_name)
    for subscriber in subscribers:
        subscriber.stop(timeout=settings.drain_seconds)
    results.stop()
    uploads.stop()
    server.stop()
    backends.close()
    return 0
