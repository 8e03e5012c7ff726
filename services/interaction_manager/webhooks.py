"""Webhooks: POST ``job.completed`` to the job's ``webhook_url``, signed, retried with backoff.

The webhook sender is the second subscriber of the notifications topic (the email function
is the first): it reads ``job.completed`` from ``imageflow-notifications-webhooks``, so
retries and dead-lettering are the bus's. One delivery of the message makes at most one
attempt: a failed attempt leaves the message unacked with its deadline pushed to the next
attempt's time (exponential backoff), and the bus delivers it again then.

Every attempt is claimed on the job first, with a conditional update
(``domain.claim_webhook_attempt``), so two interaction-manager replicas, or a redelivery
racing a slow attempt, never post the same webhook at once. Every attempt is recorded on
the job (``webhook_attempts``, labelled with its run) and the outcome in ``webhook_status``
(``pending`` from submission, then ``delivered``, or ``failed`` after ``WEBHOOK_MAX_ATTEMPTS``),
so GET /api/v1/jobs/<id> shows it. Each run of a job (a retry starts the next) has its own
webhook, claimed and recorded by its run number: a retry does not stop the earlier run's
delivery, whose state moves to ``webhook_earlier_runs`` (domain.start_retry). A message the
handler keeps failing on (the job store is down) is dead-lettered by the bus after
``Settings.webhook_delivery_limit`` deliveries, and the dead-letter subscriber marks that
run's webhook failed. Delivery is at least once: receivers dedupe on the
``X-ImageFlow-Delivery`` header (the job id, ``<job_id>.<run>`` after a retry).

Signature: ``X-ImageFlow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
keyed with the job's webhook secret (given at submission, or generated and returned in the
202). Receivers recompute it over the raw body and reject old timestamps (replays).
The request goes through the same SSRF rules as URL import (``imageflow.safe_http``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from typing import Callable

from imageflow import domain
from imageflow.bus import ReceivedMessage
from imageflow.jobstore import JobNotFound, JobStore
from imageflow.messages import JobCompleted, decode_delivered
from imageflow.safe_http import FetchError, FetchPolicy, post
from imageflow.settings import Settings

from . import lifecycle

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ImageFlow-Signature"
EVENT = "job.completed"
MAX_BACKOFF_SECONDS = 600.0  # the longest a Pub/Sub message can be held back (its maximum ack deadline)
PENDING, DELIVERED, FAILED = domain.WEBHOOK_PENDING, domain.WEBHOOK_DELIVERED, domain.WEBHOOK_FAILED


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
    """The JSON body: the job.completed message (built from the job when not given), plus links
    to the job and its report. ``completed_at`` is when the event's run finished (an earlier
    run's webhook may go out after a retry)."""
    event = event or lifecycle.completed_event(job, settings)
    data = event.to_dict()
    api = domain.job_api_url(settings.public_base_url, job.job_id)
    completed_at = (domain.webhook_run(job, event.run) or {}).get("completed_at", job.completed_at)
    data.update(event=EVENT, name=job.name, completed_at=completed_at, job_url=api,
                report_url=f"{api}/report.csv")
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")


class WebhookSender:
    """The handlers of the webhooks subscription and of its dead-letter subscription."""

    def __init__(self, settings: Settings, jobs: JobStore, policy: FetchPolicy | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.jobs = jobs
        self.policy = policy or FetchPolicy.from_settings(settings, timeout=settings.webhook_timeout_seconds,
                                                          max_redirects=0)
        self.clock = clock
        # An attempt holds the job this long: the POST's connect and read timeouts, and a margin.
        self.lease_seconds = 2 * settings.webhook_timeout_seconds + 1

    def backoff(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt: doubling, with 20% jitter."""
        base = self.settings.webhook_backoff_seconds * 2 ** (attempts - 1)
        return min(MAX_BACKOFF_SECONDS, base * (1 + 0.2 * random.random()))

    def handle(self, message: ReceivedMessage) -> None:
        """One delivery of ``job.completed``: make the attempt that is due, if any."""
        event = decode_delivered(JobCompleted, message)
        if event is None:
            return
        wait = self.deliver(event)
        if wait is None:
            message.ack()
        else:  # come back when the next attempt is due: the bus redelivers after the deadline
            message.extend(wait)

    def deliver(self, event: JobCompleted) -> float | None:
        """Attempt the webhook of ``event``'s run if one is due. Returns None when nothing is
        left to do, else the seconds until the job should be looked at again. Each run has its
        own webhook: a retry starts the next run's without ending this one's."""
        job = self.jobs.get_job(event.job_id)
        now = self.clock()
        wait = domain.webhook_wait(job, now, event.run) if job else None
        if wait is None or wait > 0:
            return wait
        try:
            claimed = self.jobs.transition(job.job_id, domain.claim_webhook_attempt(now, self.lease_seconds, event.run))
        except JobNotFound:  # deleted meanwhile
            return None
        if claimed is None:  # another replica took this attempt: look again when its lease ends
            job = self.jobs.get_job(event.job_id)
            return domain.webhook_wait(job, self.clock(), event.run) if job else None
        return self.attempt(claimed, event)

    def attempt(self, job: domain.Job, event: JobCompleted) -> float | None:
        """POST ``event``'s webhook once and record the attempt on its run; the wait before the
        next one, or None."""
        body = payload(job, event, self.settings)
        started = time.monotonic()
        headers = {SIGNATURE_HEADER: sign(job.webhook_secret or "", body, int(self.clock())),
                   "X-ImageFlow-Event": EVENT, "X-ImageFlow-Delivery": event.delivery_id}  # per run: a retry is a new delivery
        status_code, error = None, None
        try:
            status_code = post(job.webhook_url, body, headers, self.policy)
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except FetchError as exc:
            error = exc.reason
        made = domain.webhook_attempts_made(job, event.run) + 1
        wait = None
        if error is None:
            outcome = DELIVERED
        elif made >= self.settings.webhook_max_attempts:
            outcome = FAILED
        else:
            outcome, wait = PENDING, self.backoff(made)
        record = {"at": domain.utcnow(), "status_code": status_code, "error": error,
                  "duration_ms": int((time.monotonic() - started) * 1000)}
        try:
            self.jobs.transition(job.job_id, domain.record_webhook_attempt(
                record, outcome, None if wait is None else self.clock() + wait, event.run))
        except JobNotFound:  # deleted meanwhile
            return None
        log.info("webhook for %s run %d attempt %d: %s", job.job_id, event.run, made,
                 error or f"delivered ({status_code})")
        return wait

    def handle_dead_letter(self, message: ReceivedMessage) -> None:
        """A job.completed the webhook handler kept failing on: record that it gave up."""
        event = decode_delivered(JobCompleted, message)
        if event is None:
            return
        deliveries = message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount") or "several"
        record = {"at": domain.utcnow(), "status_code": None, "duration_ms": 0,
                  "error": f"gave up after {deliveries} deliveries: the webhook could not be attempted"}
        try:
            self.jobs.transition(event.job_id, domain.record_webhook_attempt(record, FAILED, None, event.run))
        except JobNotFound:
            pass
        message.ack()
