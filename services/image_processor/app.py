"""image-processor service: a pull worker with PROCESSOR_CONCURRENCY renders at a time and up to
PROCESSOR_MAX_IN_FLIGHT tasks in flight (so storage and bus calls overlap the renders), and
health/metrics on $PORT (default 8082). On SIGTERM it stops pulling, releases (nacks) the tasks
whose render has not started, lets the renders in progress finish for up to DRAIN_SECONDS and
releases the rest."""
from __future__ import annotations

import logging
import os

from flask import Flask

from imageflow import tracing
from imageflow.bootstrap import Backends, make_backends
from imageflow.bus import Subscriber
from imageflow.runtime import HttpServer, configure_logging, health_app, wait_for_signal
from imageflow.settings import Settings

from .dedupe import OutputIndex
from .job_gate import JobGate
from .processing import Processor, RenderTask, render_task

log = logging.getLogger("image_processor")


def processor_backends(settings: Settings) -> Backends:
    """The blob store and the bus; no job store (its ``jobs`` is None). Job documents hold emails and
    webhook secrets, so the processor's service account has no Firestore role: what it needs of the
    job comes in the task (its caller, for dedupe) or from the blob store (the cancel marker)."""
    return make_backends(settings, jobstore=False)


def create_app(settings: Settings | None = None, backends: Backends | None = None, alive=lambda: True) -> Flask:
    settings = settings or Settings.from_env()
    backends = backends or processor_backends(settings)
    return health_app("image-processor", {"blobstore": backends.blobs.check, "bus": backends.bus.check}, alive)


def make_processor(settings: Settings, backends: Backends, render: RenderTask = render_task) -> Processor:
    """The processor over the blob store and the bus only (``backends.jobs`` is never used)."""
    return Processor(settings, backends.blobs, backends.bus, render, gate=JobGate(backends.blobs),
                     dedupe=OutputIndex(backends.blobs) if settings.dedupe_outputs else None)


def start_processing(settings: Settings, backends: Backends,
                     render: RenderTask = render_task) -> tuple[Processor, Subscriber]:
    """The processor and its subscription: more tasks leased than render slots, so a task's blob reads
    and writes and its result's publish happen while other tasks render."""
    processor = make_processor(settings, backends, render)
    subscriber = backends.bus.subscribe(settings.topics.tasks_sub, processor.handle_message,
                                        max_messages=settings.processor_in_flight,
                                        ack_deadline_seconds=settings.ack_deadline_seconds)
    return processor, subscriber


def main(settings: Settings | None = None, backends: Backends | None = None, render: RenderTask = render_task) -> int:
    configure_logging("image-processor")
    tracing.configure("image-processor")  # off unless OTEL_TRACES_EXPORTER names an exporter
    settings = settings or Settings.from_env()
    backends = backends or processor_backends(settings)
    processor, subscriber = start_processing(settings, backends, render)
    port = settings.listen_port("image-processor")
    server = HttpServer(create_app(settings, backends, subscriber.is_alive), settings.bind_host, port).start()
    log.info("image-processor running (%s backend, %d render slots, up to %d tasks in flight), health on :%d",
             settings.backend, settings.processor_concurrency, settings.processor_in_flight, server.port)
    signal_name = wait_for_signal()
    log.info("%s: draining %d in-flight task(s)", signal_name, subscriber.in_flight())
    processor.release_waiting()  # tasks not yet rendering go back to the bus at once
    subscriber.stop(timeout=settings.drain_seconds)
    server.stop()
    processor.close()
    abandoned = subscriber.in_flight()
    if abandoned:
        # Their messages were nacked for another processor; the interpreter would otherwise
        # wait for the worker threads at exit, past the drain (and Kubernetes' grace period).
        log.warning("exiting with %d unfinished task(s) released to other processors", abandoned)
        logging.shutdown()
        os._exit(0)
    backends.close()
    return 0
