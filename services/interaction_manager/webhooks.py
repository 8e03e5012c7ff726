"""Webhooks: POST ``job.completed`` to the job's ``webhook_url``, signed, retried with backoff.

The interaction manager runs one ``WebhookDispatcher``: the coordinator's ``on_completed``
hook schedules a delivery (it never blocks result folding), a background thread makes the
attempts. Every attempt is recorded on the job (``webhook_attempts``) and the outcome in
``webhook_status`` (``pending`` from submission, then ``delivered`` or ``failed`` after
``WEBHOOK_MAX_ATTEMPTS``), so GET /api/v1/jobs/<id> shows it and a restarted interaction
manager resumes the pending ones (``recover``). Delivery is at least once: receivers
dedupe on the ``X-ImageFlow-Delivery`` header (the job id).

Signature: ``X-ImageFlow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
keyed with the job's webhook secret (given at submission, or generated and returned in the
202). Receivers recompute it over the raw body and reject old timestamps (replays).
The request goes through the same SSRF rules as URL import (``imageflow.fetch``).
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import random
import threading
import time
from typing import Callable

from imageflow import domain
from imageflow.jobstore import JobNotFound, JobStore
from imageflow.messages import JobCompleted
from imageflow.safe_http import FetchError, FetchPolicy, post
from imageflow.settings import Settings

from .lifecycle import completed_event

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ImageFlow-Signature"
EVENT = "job.completed"
MAX_BACKOFF_SECONDS = 3600.0
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, tolerance: float = 300, now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` no older than ``tolerance`` seconds
    (what a receiver does; the tests use it too)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={fields.get('v1', '')}")


def payload(job: domain.Job, event: JobCompleted | None, settings: Settings) -> bytes:
    """The JSON body: the job.completed message, plus links to the job and its report."""
    data = (event or completed_event(job, settings)).to_dict()
    api = f"{settings.public_base_url}/api/v1/jobs/{job.job_id}"
    data.update(event=EVENT, name=job.name, completed_at=job.completed_at, job_url=api,
                report_url=f"{api}/report.csv")
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")


class WebhookDispatcher:
    """Delivers webhooks on one background thread, in due-time order."""

    def __init__(self, settings: Settings, jobs: JobStore, policy: FetchPolicy | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.jobs = jobs
        self.policy = policy or FetchPolicy.from_settings(settings, timeout=settings.webhook_timeout_seconds,
                                                          max_redirects=0)
        self.clock = clock
        self._queue: list[tuple[float, str]] = []
        self._queued: set[str] = set()       # scheduled or being attempted: never twice at once
        self._events: dict[str, JobCompleted] = {}
        self._lock = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)

    def start(self) -> "WebhookDispatcher":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def schedule(self, job_id: str, delay: float = 0.0) -> None:
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
            heapq.heappush(self._queue, (self.clock() + delay, job_id))
            self._lock.notify_all()

    def on_completed(self, job: domain.Job, event: JobCompleted) -> None:
        """Coordinator hook: called once per job after job.completed is published."""
        if job.webhook_url and job.webhook_status == PENDING:
            self._events[job.job_id] = event
            self.schedule(job.job_id)

    def recover(self, limit: int = 200) -> int:
        """Schedule the finished jobs whose webhook is still pending (after a restart)."""
        count = 0
        for status in domain.TERMINAL_JOB_STATUSES:
            for job in self.jobs.list_jobs(status=status, limit=limit):
                if job.webhook_url and job.webhook_status == PENDING:
                    self.schedule(job.job_id)
                    count += 1
        return count

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and (not self._queue or self._queue[0][0] > self.clock()):
                    wait = self._queue[0][0] - self.clock() if self._queue else None
                    self._lock.wait(timeout=wait if wait is None else max(0.01, min(wait, 1.0)))
                if self._stopping:
                    return
                _, job_id = heapq.heappop(self._queue)
            try:
                delay = self.attempt(job_id)
            except Exception:  # the job store failed: try again later rather than lose it
                log.exception("webhook attempt for %s failed unexpectedly", job_id)
                delay = self.settings.webhook_backoff_seconds
            with self._lock:
                self._queued.discard(job_id)
            if delay is not None:
                self.schedule(job_id, delay)

    def attempt(self, job_id: str) -> float | None:
        """Make one delivery attempt and record it; the delay before the next one, or None."""
        job = self.jobs.get_job(job_id)
        if job is None or not job.webhook_url or job.webhook_status != PENDING or not job.is_terminal:
            self._events.pop(job_id, None)
            return None
        body = payload(job, self._events.get(job_id), self.settings)
        started = time.monotonic()
        headers = {SIGNATURE_HEADER: sign(job.webhook_secret or "", body, int(self.clock())),
                   "X-ImageFlow-Event": EVENT, "X-ImageFlow-Delivery": completed_event(job, self.settings).delivery_id}
        status_code, error = None, None
        try:
            status_code = post(job.webhook_url, body, headers, self.policy)
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except FetchError as exc:
            error = exc.reason
        attempts = list(job.webhook_attempts or []) + [{
            "attempt": len(job.webhook_attempts or []) + 1, "at": domain.utcnow(), "status_code": status_code,
            "error": error, "duration_ms": int((time.monotonic() - started) * 1000)}]
        if error is None:
            outcome, delay = DELIVERED, None
        elif len(attempts) >= self.settings.webhook_max_attempts:
            outcome, delay = FAILED, None
        else:
            base = self.settings.webhook_backoff_seconds * 2 ** (len(attempts) - 1)
            outcome, delay = PENDING, min(MAX_BACKOFF_SECONDS, base * (1 + 0.2 * random.random()))
        try:
            self.jobs.update_job(job_id, webhook_attempts=attempts, webhook_status=outcome)
        except JobNotFound:  # deleted meanwhile
            return None
        log.info("webhook for %s attempt %d: %s", job_id, len(attempts), error or f"delivered ({status_code})")
        if delay is None:
            self._events.pop(job_id, None)
        return delay
