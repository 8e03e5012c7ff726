"""The mailer port and its two adapters: the outbox (.eml files, local) and SendGrid.

A mailer sends one message or raises: ``TransientError`` when a retry may succeed (network,
429, 5xx, and a key or sender SendGrid does not accept yet: a configuration fix makes the
retry succeed), ``PermanentError`` when this message can never be sent (a bad request).
"""
from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from email.message import EmailMessage
from pathlib import Path


class TransientError(RuntimeError):
    """Sending failed in a way worth retrying."""


class PermanentError(RuntimeError):
    """Sending can never succeed for this message (e.g. an address SendGrid rejects)."""


class Mailer(ABC):
    @abstractmethod
    def send(self, msg: EmailMessage) -> str:
        """Send ``msg``; returns where it went (for the log). Raises as the module says."""


class OutboxMailer(Mailer):
    """Local delivery: ``<outbox>/<job id>.eml`` (from ``X-ImageFlow-Delivery``, else ``X-ImageFlow-Job``:
    ``<job id>.<run>`` for a retried run), written atomically."""

    def __init__(self, outbox: Path):
        self.outbox = outbox

    def send(self, msg: EmailMessage) -> str:
        self.outbox.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.outbox, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(msg))
        target = self.outbox / f"{msg['X-ImageFlow-Delivery'] or msg['X-ImageFlow-Job']}.eml"  # one file per run
        os.replace(tmp, target)
        return str(target)


class SendGridMailer(Mailer):
    """SendGrid's v3 API (``host`` points the client elsewhere, e.g. a test stand-in)."""

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com"):
        self.api_key = api_key
        self.host = host

    def send(self, msg: EmailMessage) -> str:
        from python_http_client.exceptions import HTTPError
        from sendgrid import SendGridAPIClient
        from sendgrid.helpers.mail import Content, Email, Header, Mail, To

        mail = Mail(from_email=Email(msg["From"]), to_emails=To(msg["To"]), subject=msg["Subject"])
        mail.add_content(Content("text/plain", msg.get_body(("plain",)).get_content()))
        mail.add_content(Content("text/html", msg.get_body(("html",)).get_content()))
        mail.add_header(Header("X-ImageFlow-Job", msg["X-ImageFlow-Job"]))
        client = SendGridAPIClient(api_key=self.api_key, host=self.host)
        try:
            response = client.send(mail)
        except HTTPError as exc:
            status = getattr(exc, "status_code", 0)
            detail = getattr(exc, "body", b"")[:300]
            if status == 429 or status >= 500:
                raise TransientError(f"SendGrid answered {status}") from exc
            if status in (401, 403):  # the key or the sender (EMAIL_FROM) is not accepted: fixable, so retried
                raise TransientError(f"SendGrid refused the key or the sender ({status}): {detail!r}") from exc
            raise PermanentError(f"SendGrid refused the mail ({status}): {detail!r}") from exc
        except OSError as exc:  # connection refused, DNS, timeouts
            raise TransientError(f"SendGrid unreachable: {exc}") from exc
        if response.status_code >= 300:
            raise TransientError(f"SendGrid answered {response.status_code}")
        return "SendGrid"
