"""Email Cloud Function: on ``job.completed`` (Pub/Sub CloudEvent), mail the results link.

Self-contained (deployed on its own with requirements.txt): it does not import the
ImageFlow core. Configuration from the environment:

- ``SENDGRID_API_KEY`` set: send through SendGrid (``SENDGRID_API_HOST`` points the client
  elsewhere, e.g. a test stand-in); otherwise write an .eml file to
  ``<IMAGEFLOW_DATA_DIR>/outbox/<job_id>.eml`` (local mode).
- ``EMAIL_FROM``, ``PUBLIC_BASE_URL``.
- A job is mailed once: a claim per job (a file under the data dir locally, a Firestore
  document ``email_notifications/<job_id>`` with ``IMAGEFLOW_BACKEND=gcp``) is taken before
  sending, marked sent after, and released if sending fails. A claim still "sending" after
  ``EMAIL_CLAIM_LEASE_SECONDS`` (default 300) belongs to an instance that died mid-send:
  a retry takes it over, so a crash never loses the mail; until then a retry is told to
  come back later.
- Raise only for transient failures (network, 429, 5xx), so the trigger retries; a bad
  message or a permanent SendGrid refusal is logged and dropped.

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
import tempfile
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import functions_framework

log = logging.getLogger("email_notifier")
logging.basicConfig(level=logging.INFO)

_EMAIL_RE = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class TransientError(RuntimeError):
    """Sending failed in a way worth retrying."""


class PermanentError(RuntimeError):
    """Sending can never succeed for this message (bad address, bad key)."""


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
    base = (os.environ.get("PUBLIC_BASE_URL") or "").rstrip("/")
    return f"{base}/jobs/{event['job_id']}" if base else event.get("results_url", "")


def build_email(event: dict, sender: str) -> EmailMessage:
    """The completion email: plain text and HTML, with the counts and the results link."""
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
    counts = f"{succeeded} succeeded, {failed} failed, " + (f"{skipped} skipped, " if skipped else "") + f"{total} in all"
    savings = savings_line(event)
    text = (f"{headline}.\n\nSee and download the results:\n{url}\n\n"
            f"Job {event['job_id']}: {counts}.\n" + (f"{savings}.\n" if savings else "") + "\n"
            "-- ImageFlow\n")
    safe_url = html.escape(url, quote=True)
    body = (f"<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{html.escape(headline)}</h2>"
            f"<p><a href=\"{safe_url}\">See and download your results</a></p>"
            f"<p>Job <code>{html.escape(event['job_id'])}</code>: {html.escape(counts)}.</p>"
            + (f"<p>{html.escape(savings)}.</p>" if savings else "")
            + "<p style=\"color:#666\">ImageFlow</p></body></html>")
    msg = EmailMessage()
    msg["Subject"] = f"ImageFlow: {headline}"
    msg["From"] = sender
    msg["To"] = event["email"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=event["job_id"][:12], domain="imageflow.local")
    msg["X-ImageFlow-Job"] = event["job_id"]
    msg.set_content(text)
    msg.add_alternative(body, subtype="html")
    return msg


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}".replace(".0 ", " ")
        size /= 1000
    return f"{count} bytes"


def savings_line(event: dict) -> str:
    """"Saved 812 MB, 88 %" (or how much larger the outputs are), or "" without sizes."""
    bytes_in, bytes_out = int(event.get("bytes_in") or 0), int(event.get("bytes_out") or 0)
    if not bytes_in:
        return ""
    percent = round(100.0 * (bytes_in - bytes_out) / bytes_in)
    if bytes_out <= bytes_in:
        return f"Saved {human_bytes(bytes_in - bytes_out)}, {percent} %"
    return f"The outputs are {human_bytes(bytes_out - bytes_in)} larger than the originals ({-percent} %)"


# -- once per job -----------------------------------------------------------------------
def claim_lease_seconds() -> float:
    return float(os.environ.get("EMAIL_CLAIM_LEASE_SECONDS") or 300)


class FileClaims:
    """Local claims: one file per job holding ``sending <time>`` while a mail is on its way and
    ``sent`` after (an empty file, from before the states, means sent)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def _write(self, job_id: str, state: str, *, exclusive: bool) -> bool:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            fh.write(state)
        try:
            if exclusive:  # link() fails if the claim exists: only one instance wins it
                os.link(tmp, self.directory / job_id)
            else:
                os.replace(tmp, self.directory / job_id)
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def claim(self, job_id: str) -> bool:
        """True to send; False if already sent; TransientError while another send may be under way."""
        if self._write(job_id, f"sending {time.time()}", exclusive=True):
            return True
        state = (self.directory / job_id).read_text().split()
        if not state or state[0] == "sent":
            return False
        age = time.time() - float(state[1])
        if age < claim_lease_seconds():
            raise TransientError(f"job {job_id}: a send started {age:.0f} s ago has not finished; retry later")
        log.warning("job %s: taking over a send that started %.0f s ago and never finished", job_id, age)
        return self._write(job_id, f"sending {time.time()}", exclusive=False)

    def mark_sent(self, job_id: str) -> None:
        self._write(job_id, "sent", exclusive=False)

    def release(self, job_id: str) -> None:
        (self.directory / job_id).unlink(missing_ok=True)


class FirestoreClaims:
    """GCP claims: ``email_notifications/<job_id>`` created with create() (fails if present),
    ``state`` "sending" (with ``claimed_at``) then "sent" (documents without a state are sent)."""

    def __init__(self):
        from google.cloud import firestore  # lazily: only on GCP
        self._db = firestore.Client(project=os.environ.get("GCP_PROJECT") or None)

    def _doc(self, job_id: str):
        return self._db.collection("email_notifications").document(job_id)

    def claim(self, job_id: str) -> bool:
        from google.api_core.exceptions import AlreadyExists, FailedPrecondition
        try:
            self._doc(job_id).create({"job_id": job_id, "state": "sending", "claimed_at": time.time()})
            return True
        except AlreadyExists:
            pass
        snapshot = self._doc(job_id).get()
        data = snapshot.to_dict() or {}
        if data.get("state", "sent") == "sent":
            return False
        age = time.time() - float(data.get("claimed_at") or 0)
        if age < claim_lease_seconds():
            raise TransientError(f"job {job_id}: a send started {age:.0f} s ago has not finished; retry later")
        try:  # take over only if nobody else did since we read it
            self._doc(job_id).update({"state": "sending", "claimed_at": time.time()},
                                     option=self._db.write_option(last_update_time=snapshot.update_time))
        except FailedPrecondition:
            raise TransientError(f"job {job_id}: another delivery took the send over") from None
        log.warning("job %s: taking over a send that started %.0f s ago and never finished", job_id, age)
        return True

    def mark_sent(self, job_id: str) -> None:
        from google.cloud import firestore
        self._doc(job_id).update({"state": "sent", "sent_at": firestore.SERVER_TIMESTAMP})

    def release(self, job_id: str) -> None:
        self._doc(job_id).delete()


def data_dir() -> Path:
    return Path(os.environ.get("IMAGEFLOW_DATA_DIR") or ".imageflow").resolve()


def make_claims():
    if os.environ.get("IMAGEFLOW_BACKEND", "local") == "gcp":
        return FirestoreClaims()
    return FileClaims(data_dir() / "email-sent")


# -- delivery ---------------------------------------------------------------------------
def write_outbox(msg: EmailMessage, job_id: str, outbox: Path) -> Path:
    """Local delivery: ``<outbox>/<job_id>.eml``, written atomically."""
    outbox.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=outbox, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(bytes(msg))
    target = outbox / f"{job_id}.eml"
    os.replace(tmp, target)
    return target


def send_sendgrid(msg: EmailMessage, api_key: str) -> None:
    """Send through SendGrid's v3 API; TransientError for what is worth retrying."""
    from python_http_client.exceptions import HTTPError
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import Content, Email, Header, Mail, To

    text = msg.get_body(("plain",)).get_content()
    body = msg.get_body(("html",)).get_content()
    mail = Mail(from_email=Email(msg["From"]), to_emails=To(msg["To"]), subject=msg["Subject"])
    mail.add_content(Content("text/plain", text))
    mail.add_content(Content("text/html", body))
    mail.add_header(Header("X-ImageFlow-Job", msg["X-ImageFlow-Job"]))
    client = SendGridAPIClient(api_key=api_key, host=os.environ.get("SENDGRID_API_HOST") or "https://api.sendgrid.com")
    try:
        response = client.send(mail)
    except HTTPError as exc:
        status = getattr(exc, "status_code", 0)
        if status == 429 or status >= 500:
            raise TransientError(f"SendGrid answered {status}") from exc
        raise PermanentError(f"SendGrid refused the mail ({status}): {getattr(exc, 'body', b'')[:300]!r}") from exc
    except OSError as exc:  # connection refused, DNS, timeouts
        raise TransientError(f"SendGrid unreachable: {exc}") from exc
    if response.status_code >= 300:
        raise TransientError(f"SendGrid answered {response.status_code}")


def deliver(event: dict) -> str:
    """Mail one job.completed event; returns what happened ("sent", "duplicate", "no-email")."""
    email = (event.get("email") or "").strip()
    if not email:
        return "no-email"
    if not _EMAIL_RE.match(email):
        log.error("job %s: refusing to mail invalid address %.80r", event["job_id"], email)
        return "invalid-email"
    claims = make_claims()
    run = int(event.get("run") or 0)
    job_id = event["job_id"] if not run else f"{event['job_id']}.{run}"  # each run (retry) is mailed once
    if not claims.claim(job_id):
        log.info("job %s already mailed", job_id)
        return "duplicate"
    msg = build_email({**event, "email": email}, os.environ.get("EMAIL_FROM") or "ImageFlow <no-reply@imageflow.local>")
    api_key = os.environ.get("SENDGRID_API_KEY")
    try:
        if api_key:
            send_sendgrid(msg, api_key)
        else:
            path = write_outbox(msg, job_id, data_dir() / "outbox")
            log.info("job %s: email written to %s", job_id, path)
    except PermanentError as exc:
        log.error("job %s: %s", job_id, exc)
        claims.mark_sent(job_id)  # never retried
        return "refused"
    except Exception:
        claims.release(job_id)  # let the retry send it
        raise
    claims.mark_sent(job_id)
    return "sent"


@functions_framework.cloud_event
def notify(cloud_event) -> None:
    """Entry point: Pub/Sub-triggered (topic imageflow-notifications)."""
    event = parse_event(cloud_event)
    if event is None:
        return
    outcome = deliver(event)
    log.info("job %s: %s", event["job_id"], outcome)
