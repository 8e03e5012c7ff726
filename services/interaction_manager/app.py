"""interaction-manager service: subscribers over the coordinator and the webhook sender, plus health,
metrics and the exact outstanding-task count for KEDA, on $PORT (default 8081)."""
from __future__ import annotations

import logging
import time

from flask import Flask, jsonify

from imageflow import tracing
from imageflow.bootstrap import Backends, make_backends
from imageflow.metrics import OUTSTANDING
from imageflow.runtime import HttpServer, configure_logging, health_app, wait_for_signal
from imageflow.settings import Settings
from services.interaction_manager.coordinator import Coordinator, ResultBatcher
from services.interaction_manager.webhooks import WebhookSender

from . import lifecycle

log = logging.getLogger("interaction_manager")

UPLOAD_BATCH = 100            # object events joined together (and the subscription's flow control)
UPLOAD_BATCH_SECONDS = 0.25   # the longest an event waits for others
INPUT_SWEEP_SECONDS = 3600    # how often INPUT_RETENTION_HOURS deletes originals (lifecycle.expire_inputs)


def create_app(settings: Settings | None = None, backends: Backends | None = None,
               coordinator: Coordinator | None = None, alive=lambda: True) -> Flask:
    settings = settings or Settings.from_env()
    backends = backends or make_backends(settings)
    coordinator = coordinator or Coordinator(settings, backends.jobs, backends.bus, backends.blobs)
    app = health_app("interaction-manager", backends.checks(), alive)

    @app.get("/outstanding")
    def outstanding():
        """Tasks published and not yet finished, across all jobs (KEDA metrics-api, 3 s timeout): the job
        store's maintained counter (a handful of reads), never a scan of the jobs."""
        count = coordinator.outstanding_tasks()
        OUTSTANDING.set(count)
        return jsonify(outstanding_tasks=count)

    return app


def batched_object_events(coordinator: Coordinator, batcher: ResultBatcher):
    """The uploads subscription's callback: each object event goes to ``batcher`` (ignored ones as
    None, acked with their batch), which joins them with ``coordinator.join_uploads``."""
    return lambda message: batcher.add(coordinator.upload_event(message.attributes or {}, message.data), message)


def main() -> int:
    configure_logging("interaction-manager")
    tracing.configure("interaction-manager")  # off unless OTEL_TRACES_EXPORTER names an exporter
    settings = Settings.from_env()
    backends = make_backends(settings)
    webhooks = WebhookSender(settings, backends.jobs)
    coordinator = Coordinator(settings, backends.jobs, backends.bus, backends.blobs)
    batcher = ResultBatcher(coordinator.fold, interval=settings.progress_flush_seconds)
    # Direct uploads land in bursts: their events are joined a batch at a time (one store
    # transaction per job per batch), after a short wait so a burst shares one.
    uploads = ResultBatcher(coordinator.join_uploads, interval=UPLOAD_BATCH_SECONDS, max_batch=UPLOAD_BATCH)
    topics = settings.topics
    deadline = settings.ack_deadline_seconds
    subscribers = [
        backends.bus.subscribe(topics.jobs_sub, coordinator.handle_job_submitted, max_messages=4,
                               ack_deadline_seconds=deadline),
        backends.bus.subscribe(topics.results_sub, batcher.handle_result, max_messages=200,
                               ack_deadline_seconds=deadline),
        backends.bus.subscribe(topics.uploads_sub, batched_object_events(coordinator, uploads),
                               max_messages=UPLOAD_BATCH, ack_deadline_seconds=deadline),
        backends.bus.subscribe(topics.tasks_dlq_sub,
                               lambda m: batcher.add(coordinator.dead_letter_result(m), m),
                               max_messages=50, ack_deadline_seconds=deadline),
        backends.bus.subscribe(topics.webhooks_sub, webhooks.handle, max_messages=8,
                               ack_deadline_seconds=deadline),
        backends.bus.subscribe(topics.webhooks_dlq_sub, webhooks.handle_dead_letter, max_messages=4,
                               ack_deadline_seconds=deadline),
        backends.bus.subscribe(topics.jobs_dlq_sub, coordinator.handle_job_dead_letter, max_messages=2,
                               ack_deadline_seconds=deadline),
        backends.bus.subscribe(topics.results_dlq_sub, coordinator.handle_result_dead_letter, max_messages=10,
                               ack_deadline_seconds=deadline),
    ]
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
    batcher.stop()
    uploads.stop()
    server.stop()
    backends.close()
    return 0
