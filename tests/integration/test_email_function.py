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
             "email": "user@example.com", "results_url": f"https://imageflow.example/jobs/{JOB}"}
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


def test_garbage_event_is_dropped_without_raising(env, caplog):
    fn.notify(CloudEvent({"type": "t", "source": "s"}, {"message": {"data": "!!!notbase64"}}))
    assert "not a Pub/Sub job.completed event" in caplog.text
    assert not (env / "outbox").exists() and not (env / "email-sent").exists()


def test_the_link_is_the_one_in_the_message(env, monkeypatch):
    monkeypatch.delenv("PUBLIC_BASE_URL")
    fn.notify(cloud_event(completed(results_url=f"https://photos.example/jobs/{JOB}")))
    message = email.message_from_bytes((env / "outbox" / f"{JOB}.eml").read_bytes(), policy=policy.default)
    assert f"https://photos.example/jobs/{JOB}" in message.get_body(("plain",)).get_content()


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


def test_sendgrid_refusal_is_not_retried_nor_recorded_as_mailed(sendgrid, env):
    api = sendgrid(400)
    fn.notify(cloud_event(completed()))  # logged and dropped: no exception
    fn.notify(cloud_event(completed()))
    assert len(api.requests) == 1
    assert fn.configure()[0].state(JOB) == "refused"


@pytest.mark.parametrize("status", [401, 403])
def test_a_key_or_sender_sendgrid_refuses_is_retried_until_fixed_never_marked_mailed(sendgrid, status):
    """A sender SendGrid has not verified (403) is a configuration to fix, not a mail sent:
    the trigger retries, and once the sender is fixed the mail goes out (issue 14 D11)."""
    api = sendgrid(status, status, 202)
    for _ in range(2):
        with pytest.raises(fn.TransientError, match=f"key or the sender \\({status}\\)"):
            fn.notify(cloud_event(completed()))
        assert fn.configure()[0].state(JOB) is None
    fn.notify(cloud_event(completed()))
    assert len(api.requests) == 3 and fn.configure()[0].state(JOB) == "sent"


def test_the_function_runs_from_its_folder_alone(tmp_path):
    """Deployed alone (gcloud functions deploy --source, or the Dockerfile's COPY): the files
    the Dockerfile copies load under functions-framework without the repository."""
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    folder = Path(fn.__file__).parent
    copied = re.search(r"^COPY (?!--from|requirements)(.+) \./$", (folder / "Dockerfile").read_text(), re.M)
    app = tmp_path / "app"
    app.mkdir()
    for name in copied.group(1).split():
        shutil.copy(folder / name, app / name)
    script = (
        "import base64, json, sys\n"
        "from cloudevents.http import CloudEvent\n"
        "from functions_framework._function_registry import get_user_function, load_function_module\n"
        "module, spec = load_function_module('main.py')\n"
        "spec.loader.exec_module(module)\n"
        "fn = get_user_function('main.py', module, 'notify')\n"
        f"payload = {json.dumps(completed())!r}\n"
        "data = {'message': {'data': base64.b64encode(payload.encode()).decode()}}\n"
        "fn(CloudEvent({'type': 't', 'source': 's'}, data))\n"
        "assert 'imageflow' not in sys.modules\n")
    env = {"PATH": "/usr/bin:/bin", "IMAGEFLOW_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", script], cwd=app, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "data" / "outbox" / f"{JOB}.eml").exists()


@pytest.mark.parametrize("overrides, subject, first_line", [
    ({"name": "Spring shoot", "status": "completed", "total": 51, "succeeded": 51, "failed": 0},
     "Spring shoot: all 51 of your images are ready", "Spring shoot: all 51 of your images are ready."),
    ({"name": "Spring shoot"}, "Spring shoot: 4 of your 5 images are ready (1 failed)", None),
    # a line break in the name stays on the one Subject line
    ({"name": " Spring\r\nBcc: x@y.z  shoot ", "status": "completed", "total": 5, "succeeded": 5, "failed": 0},
     "Spring Bcc: x@y.z shoot: all 5 of your images are ready", None),
    ({"name": None, "status": "completed", "total": 51, "succeeded": 51, "failed": 0},
     "ImageFlow: All 51 of your images are ready", "All 51 of your images are ready."),
    ({"name": "", "total": 5, "succeeded": 0, "failed": 5}, "ImageFlow: None of your 5 images could be processed", None),
])
def test_the_subject_names_the_job_when_it_has_a_name(env, overrides, subject, first_line):
    fn.notify(cloud_event(completed(**overrides)))
    [eml] = (env / "outbox").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["Subject"] == subject
    assert "Bcc" not in message and message["To"] == "user@example.com"
    if first_line:
        assert message.get_body(("plain",)).get_content().splitlines()[0] == first_line
