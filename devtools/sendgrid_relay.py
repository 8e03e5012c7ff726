"""A SendGrid v3 stand-in that relays each mail to an SMTP server (Mailpit in docker-compose).

The email function keeps its production path (the SendGrid client, ``SENDGRID_API_HOST``
pointed here) and the mails become readable in Mailpit's web UI. It accepts any bearer key:
it is a development tool, never exposed beyond the compose network.

    python -m devtools.sendgrid_relay --port 8090 --smtp-host mailpit --smtp-port 1025
"""
from __future__ import annotations

import argparse
import json
import logging
import smtplib
from email.message import EmailMessage
from email.utils import formataddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


class MailError(ValueError):
    """The request is not a SendGrid v3 mail this relay understands."""


def _address(entry: dict) -> str:
    if not isinstance(entry, dict) or not entry.get("email"):
        raise MailError("every address needs an 'email'")
    return formataddr((entry.get("name") or "", entry["email"]))


def to_email(payload: dict) -> EmailMessage:
    """The SendGrid v3 ``/mail/send`` JSON as an email (text and HTML parts, custom headers)."""
    try:
        recipients = [_address(to) for p in payload["personalizations"] for to in p.get("to", [])]
        sender = _address(payload["from"])
        contents = {c["type"]: c["value"] for c in payload.get("content", [])}
    except (KeyError, TypeError) as exc:
        raise MailError(f"not a SendGrid v3 mail: missing {exc}") from None
    if not recipients:
        raise MailError("no recipients")
    msg = EmailMessage()
    msg["Subject"] = payload.get("subject", "")
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    for name, value in (payload.get("headers") or {}).items():
        msg[name] = value
    msg.set_content(contents.get("text/plain", ""))
    if "text/html" in contents:
        msg.add_alternative(contents["text/html"], subtype="html")
    return msg


def make_handler(smtp_host: str, smtp_port: int) -> type[BaseHTTPRequestHandler]:
    class Relay(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server naming)
            if self.path.rstrip("/") != "/v3/mail/send":
                return self._answer(404, {"errors": [{"message": "not found"}]})
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                return self._answer(401, {"errors": [{"message": "missing bearer key"}]})
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                msg = to_email(json.loads(body))
            except (ValueError, MailError) as exc:
                return self._answer(400, {"errors": [{"message": str(exc)}]})
            try:
                with smtplib.SMTP(smtp_host, smtp_port, timeout=10) as smtp:
                    smtp.send_message(msg)
            except (OSError, smtplib.SMTPException) as exc:
                log.warning("SMTP relay to %s:%s failed: %s", smtp_host, smtp_port, exc)
                return self._answer(503, {"errors": [{"message": "mail server unavailable"}]})
            log.info("relayed %r to %s", msg["Subject"], msg["To"])
            return self._answer(202, None)

        def _answer(self, status: int, body: dict | None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Relay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--smtp-host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=1025)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sendgrid-relay %(levelname)s %(message)s")
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.smtp_host, args.smtp_port))
    log.info("SendGrid stand-in on %s:%d, relaying to SMTP %s:%d", args.host, args.port, args.smtp_host, args.smtp_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
