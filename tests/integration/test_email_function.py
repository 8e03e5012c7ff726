"""The email Cloud Function, called as Cloud Functions calls it (a Pub/Sub CloudEvent), with
SendGrid replaced by a local HTTP stand-in of its v3 API."""
from __future__ import annotations

import base64
import email
import json
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cloudevents.http import CloudEvent

from functions.email_notifier import main as fn

JOB = "ab" * 16


def cloud_event(payload: dict) -> CloudEvent:
    data = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": "1"}}
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished",
                       "source": "//pubsub.googleapis.com/projects/p/topics/imageflow-notifications"}, data)


def completed(**overrides) -> dict:
    event = {"v": 1, "job_id": JOB, "status": "completed_with_errors", "total": 5, "succeeded": 4, "failed": 1,
             "email": "user@example.com", "results_url": f"http://x/jobs/{JOB}"}
    event.update(overrides)
    return event


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://imageflow.example")
    monkeypatch.setenv("EMAIL_FROM", "ImageFlow <robot@imageflow.example>")
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("IMAGEFLOW_BACKEND", raising=False)
    return tmp_path


def test_local_mode_writes_one_eml_with_text_html_and_link(env):
    fn.notify(cloud_event(completed()))
    fn.notify(cloud_event(completed()))  # redelivered: mailed once
    files = list((env / "outbox").glob("*.eml"))
    assert [f.name for f in files] == [f"{JOB}.eml"]
    message = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["To"] == "user@example.com" and "robot@imageflow.example" in message["From"]
    assert "4 of your 5 images are ready (1 failed)" in message["Subject"]
    link = f"https://imageflow.example/jobs/{JOB}"
    assert link in message.get_body(("plain",)).get_content()
    assert f'href="{link}"' in message.get_body(("html",)).get_content()


@pytest.mark.parametrize("payload", [completed(email=None), completed(email="a@b.c\r\nBcc: x@y.z"),
                                     {"v": 2, "job_id": JOB}, {"not": "a job"}])
def test_nothing_is_sent_for_no_or_bad_addresses_and_bad_payloads(env, payload):
    fn.notify(cloud_event(payload))
    assert not list((env / "outbox").glob("*.eml"))


def test_garbage_event_is_dropped_without_raising(env):
    fn.notify(CloudEvent({"type": "t", "source": "s"}, {"message": {"data": "!!!notbase64"}}))


class SendGridStandIn:
    """A local stand-in for POST /v3/mail/send answering a scripted status sequence."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.requests.append((self.path, dict(self.headers), json.loads(body)))
                status = stand_in.statuses.pop(0) if stand_in.statuses else 202
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}" if status < 300 else b'{"errors":[{"message":"nope"}]}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def sendgrid(env, monkeypatch):
    def start(*statuses):
        stand_in = SendGridStandIn(statuses)
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
        monkeypatch.setenv("SENDGRID_API_HOST", stand_in.url)
        started.append(stand_in)
        return stand_in
    started = []
    yield start
    for s in started:
        s.close()


def test_sendgrid_receives_the_mail(sendgrid, env):
    api = sendgrid(202)
    fn.notify(cloud_event(completed()))
    [(path, headers, body)] = api.requests
    assert path == "/v3/mail/send" and headers["Authorization"] == "Bearer SG.test-key"
    assert body["personalizations"][0]["to"] == [{"email": "user@example.com"}]
    assert body["from"]["email"] == "robot@imageflow.example"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert f"https://imageflow.example/jobs/{JOB}" in body["content"][0]["value"]
    fn.notify(cloud_event(completed()))
    assert len(api.requests) == 1, "a job is mailed once"
    assert not list((env / "outbox").glob("*.eml"))


def test_sendgrid_outage_raises_for_retry_then_sends(sendgrid):
    api = sendgrid(503, 202)
    with pytest.raises(fn.TransientError):
        fn.notify(cloud_event(completed()))
    fn.notify(cloud_event(completed()))  # the trigger's retry
    assert len(api.requests) == 2


def test_sendgrid_refusal_is_not_retried(sendgrid, env):
    api = sendgrid(400)
    fn.notify(cloud_event(completed()))  # logged and dropped: no exception
    fn.notify(cloud_event(completed()))
    assert len(api.requests) == 1
    # Recorded as refused, never as mailed.
    assert (env / "email-sent" / JOB).read_text().startswith("refused ")


def test_a_refused_sender_is_retried_not_marked_mailed(sendgrid, env):
    """SendGrid answers 403 for a sender that is not verified: that is a configuration to fix,
    and the trigger's retries deliver the mail once it is; it is never counted as mailed."""
    api = sendgrid(403, 202)
    with pytest.raises(fn.TransientError):
        fn.notify(cloud_event(completed()))
    assert not (env / "email-sent" / JOB).exists()
    fn.notify(cloud_event(completed()))  # the retry, after the fix
    assert len(api.requests) == 2
    assert (env / "email-sent" / JOB).read_text() == "sent"
