"""Email Cloud Function: on ``job.completed`` (Pub/Sub CloudEvent), mail the results link.

Self-contained (deployed on its own with requirements.txt): it does not import the
ImageFlow core. Its two ports sit beside it: ``mailers`` (the outbox and SendGrid) and
``claims`` (a job is mailed once: files locally, Firestore on GCP), chosen in one place,
``configure``, from the environment:

- ``SENDGRID_API_KEY`` set: send through SendGrid (``SENDGRID_API_HOST`` points the client
  elsewhere, e.g. a test stand-in); otherwise write an .eml file to
  ``<IMAGEFLOW_DATA_DIR>/outbox/<job_id>.eml`` (``<job_id>.<run>.eml`` for a retried run; local mode).
- ``IMAGEFLOW_BACKEND=gcp``: claims in Firestore (``GCP_PROJECT``); otherwise files under
  ``<IMAGEFLOW_DATA_DIR>/email-sent``. ``EMAIL_CLAIM_LEASE_SECONDS`` (default 300).
- ``EMAIL_FROM``; ``PUBLIC_BASE_URL`` only for a message without ``results_url``. The zip link
  (``archive_url``) and the deletion date (``expires_at``, from the manager's JOB_RETENTION_DAYS)
  come from the message (``domain.completed_event``; the manager signs the zip link when API keys
  are on, so it opens without one); an older message without them gets neither.
- The job's ``name``, when the message carries one, leads the subject ("Spring shoot: all 51
  of your images are ready"); without it the subject starts "ImageFlow: ".
- Raise only for what a retry can fix (network, 429, 5xx, a key or sender SendGrid does not
  accept), so the trigger retries; a bad message is logged and dropped, and a mail SendGrid
  can never accept is recorded as refused. Nothing is recorded as mailed that was not sent.

Run locally: ``functions-framework --source functions/email_notifier/main.py --target notify
--signature-type cloudevent --port 8083``.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import os
import re
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Mapping

import functions_framework

# functions-framework loads main.py as a package rooted at its folder, so these resolve there
# when deployed alone, and as functions.email_notifier.* in the repository's tests.
from .claims import ClaimStore, FileClaims, FirestoreClaims
from .mailers import Mailer, OutboxMailer, PermanentError, SendGridMailer, TransientError
from .tracing import handling as traced  # a span per event when OTEL_TRACES_EXPORTER is set

__all__ = ["ClaimStore", "FileClaims", "FirestoreClaims", "Mailer", "OutboxMailer", "PermanentError",
           "SendGridMailer", "TransientError", "configure", "deliver", "notify"]

log = logging.getLogger("email_notifier")
logging.basicConfig(level=logging.INFO)

_EMAIL_RE = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


# -- the message ------------------------------------------------------------------------
def parse_event(cloud_event) -> dict | None:
    """The job.completed payload from a Pub/Sub CloudEvent, or None if it is not one."""
    try:
        message = cloud_event.data["message"]
        payload = json.loads(base64.b64decode(message["data"]))
    except (KeyError, TypeError, ValueError) as exc:
        log.error("not a Pub/Sub job.completed event: %s", exc)
        return None
    if not isinstance(payload, dict) or payload.get("v") != 1 or not _ID_RE.match(str(payload.get("job_id", ""))):
        log.error("unsupported job.completed payload: %.200s", payload)
        return None
    return payload


def results_url(event: dict) -> str:
    """The link the interaction manager put in the message (``domain.results_url``); built from
    ``PUBLIC_BASE_URL`` only for a message without one."""
    if event.get("results_url"):
        return str(event["results_url"])
    base = (os.environ.get("PUBLIC_BASE_URL") or "").rstrip("/")
    return f"{base}/jobs/{event['job_id']}"


def build_email(event: dict, sender: str, now: datetime | None = None) -> EmailMessage:
    """The completion email: plain text and HTML, with the counts, the results link, the zip
    link and how long the results are kept (when any image succeeded)."""
    total, succeeded, failed = int(event.get("total", 0)), int(event.get("succeeded", 0)), int(event.get("failed", 0))
    url = results_url(event)
    skipped = int(event.get("skipped") or 0)
    if event.get("status") == "cancelled":
        headline = f"Your job was cancelled: {succeeded} of {total} images are ready"
    elif failed == 0:
        headline = f"All {total} of your images are ready"
    elif succeeded == 0:
        headline = f"None of your {total} images could be processed"
    else:
        headline = f"{succeeded} of your {total} images are ready ({failed} failed)"
    name = job_name(event)
    if name:  # "Spring shoot: all 51 of your images are ready", the job known at a glance
        headline = f"{name}: {headline[0].lower()}{headline[1:]}"
    counts = f"{succeeded} succeeded, {failed} failed, " + (f"{skipped} skipped, " if skipped else "") + f"{total} in all"
    savings = savings_line(event)
    # The zip and the deletion date only mean something when there are outputs to download.
    zip_url = str(event.get("archive_url") or "") if succeeded else ""
    kept = retention_line(event.get("expires_at"), now) if succeeded else ""
    text = (f"{headline}.\n\nSee and download the results:\n{url}\n\n"
            + (f"Download them all in one zip file:\n{zip_url}\n\n" if zip_url else "")
            + (f"{kept}\n\n" if kept else "")
            + f"Job {event['job_id']}: {counts}.\n" + (f"{savings}.\n" if savings else "") + "\n"
            "-- ImageFlow\n")
    safe_url = html.escape(url, quote=True)
    body = (f"<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{html.escape(headline)}</h2>"
            f"<p><a href=\"{safe_url}\">See and download your results</a></p>"
            + (f"<p><a href=\"{html.escape(zip_url, quote=True)}\">Download them all in one zip file</a></p>"
               if zip_url else "")
            + (f"<p>{html.escape(kept)}</p>" if kept else "")
            + f"<p>Job <code>{html.escape(event['job_id'])}</code>: {html.escape(counts)}.</p>"
            + (f"<p>{html.escape(savings)}.</p>" if savings else "")
            + "<p style=\"color:#666\">ImageFlow</p></body></html>")
    msg = EmailMessage()
    msg["Subject"] = headline if name else f"ImageFlow: {headline}"
    msg["From"] = sender
    msg["To"] = event["email"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=event["job_id"][:12], domain="imageflow.local")
    msg["X-ImageFlow-Job"] = event["job_id"]
    msg.set_content(text)
    msg.add_alternative(body, subtype="html")
    return msg


def job_name(event: dict) -> str:
    """The job's name from the message (``PATCH /jobs/<id>`` or ``name`` on create), on one line
    (a line break would end the Subject header) and at most 200 characters; "" without one."""
    return " ".join(str(event.get("name") or "").split())[:200]


def retention_line(expires_at: str | None, now: datetime | None = None) -> str:
    """"Your results are kept for 30 days, until 31 December 2026." from the message's
    ``expires_at`` (created_at + JOB_RETENTION_DAYS); "" when the job is kept until deleted.
    The days are those left, so a retried run mailed a week later still tells the truth."""
    if not expires_at:
        return ""
    try:
        expires = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
    except ValueError:
        log.warning("ignoring unreadable expires_at %.40r", expires_at)
        return ""
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    left = (expires - (now or datetime.now(timezone.utc))).total_seconds() / 86400
    date = f"{expires.day} {expires:%B %Y}"
    if left < 1:
        return f"Your results are kept until {date} (UTC): download them before then."
    days = round(left)
    return f"Your results are kept for {days} day{'s' if days != 1 else ''}, until {date}."


def human_bytes(count: int) -> str:
    """imageflow.domain.human_bytes's rule (base 1024, as the page and the CLI write sizes), copied:
    this function is deployed without the imageflow package. Prose says "bytes" below 1 KB."""
    if abs(count) < 1024:
        return f"{count:.0f} bytes"
    value, unit = count / 1024, "KB"
    for bigger in ("MB", "GB", "TB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.0f} {unit}" if abs(value) >= 100 else f"{value:.1f}".removesuffix(".0") + f" {unit}"


def savings_line(event: dict) -> str:
    """"Saved 812 MB, 88 %" (or how much larger the outputs are), or "" without sizes."""
    bytes_in, bytes_out = int(event.get("bytes_in") or 0), int(event.get("bytes_out") or 0)
    if not bytes_in:
        return ""
    percent = round(100.0 * (bytes_in - bytes_out) / bytes_in)
    if bytes_out <= bytes_in:
        return f"Saved {human_bytes(bytes_in - bytes_out)}, {percent} %"
    return f"The outputs are {human_bytes(bytes_out - bytes_in)} larger than the originals ({-percent} %)"


# -- the two ports, chosen in one place --------------------------------------------------
def data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("IMAGEFLOW_DATA_DIR") or ".imageflow").resolve()


def configure(env: Mapping[str, str] | None = None) -> tuple[ClaimStore, Mailer]:
    """The claim store and the mailer the environment asks for (see the module docstring)."""
    env = os.environ if env is None else env
    lease = float(env.get("EMAIL_CLAIM_LEASE_SECONDS") or 300)
    if env.get("IMAGEFLOW_BACKEND", "local") == "gcp":
        claims: ClaimStore = FirestoreClaims(env.get("GCP_PROJECT"), lease_seconds=lease)
    else:
        claims = FileClaims(data_dir(env) / "email-sent", lease_seconds=lease)
    api_key = env.get("SENDGRID_API_KEY")
    mailer: Mailer = (SendGridMailer(api_key, env.get("SENDGRID_API_HOST") or "https://api.sendgrid.com")
                      if api_key else OutboxMailer(data_dir(env) / "outbox"))
    return claims, mailer


# -- delivery ---------------------------------------------------------------------------
def deliver(event: dict, claims: ClaimStore, mailer: Mailer, sender: str) -> str:
    """Mail one job.completed event; returns what happened ("sent", "duplicate", "no-email",
    "invalid-email", "refused")."""
    email = (event.get("email") or "").strip()
    if not email:
        return "no-email"
    if not _EMAIL_RE.match(email):
        log.error("job %s: refusing to mail invalid address %.80r", event["job_id"], email)
        return "invalid-email"
    run = int(event.get("run") or 0)
    job_id = event["job_id"] if not run else f"{event['job_id']}.{run}"  # each run (retry) is mailed once
    if not claims.claim(job_id):
        log.info("job %s already mailed", job_id)
        return "duplicate"
    msg = build_email({**event, "email": email}, sender)
    msg["X-ImageFlow-Delivery"] = job_id  # the run's own delivery: the outbox names its file after it
    try:
        where = mailer.send(msg)
    except PermanentError as exc:
        log.error("job %s: %s", job_id, exc)
        claims.mark_refused(job_id, str(exc))  # never retried, and not recorded as mailed
        return "refused"
    except BaseException:
        claims.release(job_id)  # let the retry send it
        raise
    claims.mark_sent(job_id)
    log.info("job %s: email sent (%s)", job_id, where)
    return "sent"


@functions_framework.cloud_event
def notify(cloud_event) -> None:
    """Entry point: Pub/Sub-triggered (topic imageflow-notifications)."""
    with traced(cloud_event) as span:
        event = parse_event(cloud_event)
        if event is None:
            return
        claims, mailer = configure()
        outcome = deliver(event, claims, mailer, os.environ.get("EMAIL_FROM") or "ImageFlow <no-reply@imageflow.local>")
        span.set_attribute("imageflow.email.outcome", outcome)
        log.info("job %s: %s", event["job_id"], outcome)
