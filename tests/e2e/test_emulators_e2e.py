"""The whole pipeline with IMAGEFLOW_BACKEND=gcp on the emulators (Pub/Sub, Firestore,
fake-gcs-server): the same processes ./scripts.sh up --emulators runs, over HTTP.

The email function receives its CloudEvent through a Pub/Sub push subscription (the
emulator POSTs to functions-framework) and sends through a SendGrid stand-in on a local
port. Also: a processor killed while holding leases, a poison task that ends in the
dead-letter topic with its image marked failed. (The throughput of the local backends
against the emulators is a benchmark: ``./scripts.sh bench backends``.)
"""
from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image as PILImage

from devtools.stack import Stack
from imageflow import domain
from imageflow.blobstore.gcs import GcsBlobStore
from imageflow.bus.pubsub import PubSubBus
from imageflow.domain import Image, Job, new_id
from imageflow.jobstore.firestore import FirestoreJobStore
from imageflow.messages import Task
from imageflow.settings import Settings
from tests.e2e.conftest import make_image, wait_for_job

pytestmark = pytest.mark.emulators

E2E_PROJECT = "imageflow-e2e"  # its own project and bucket: the adapter tests wipe theirs
E2E_BUCKET = "imageflow-e2e"


class SendGridStandIn(BaseHTTPRequestHandler):
    """Answers POST /v3/mail/send like SendGrid (202) and keeps what it was sent."""

    mails: list = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v3/mail/send" or not self.headers.get("Authorization", "").startswith("Bearer "):
            self.send_response(401)
        else:
            type(self).mails.append(json.loads(body))
            self.send_response(202)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def sendgrid():
    SendGridStandIn.mails = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SendGridStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SendGridStandIn.port = server.server_port
    yield SendGridStandIn
    server.shutdown()


@pytest.fixture(scope="module")
def e2e_env(gcp_emulators, gcp_env, tmp_path_factory) -> dict[str, str]:
    gcp_emulators.create_bucket(E2E_BUCKET)
    gcp_emulators.wipe(project=E2E_PROJECT, bucket=E2E_BUCKET)
    return {**gcp_env, "GCP_PROJECT": E2E_PROJECT, "GOOGLE_CLOUD_PROJECT": E2E_PROJECT,
            "PUBSUB_PROJECT_ID": E2E_PROJECT, "GCS_BUCKET": E2E_BUCKET,
            "IMAGEFLOW_DATA_DIR": str(tmp_path_factory.mktemp("gcp-stack-data"))}


@pytest.fixture(scope="module")
def stack_options(e2e_env, sendgrid):
    """Every service on the emulators; one image-processor with two task slots."""
    env = {**e2e_env, "SENDGRID_API_KEY": "SG.test-key", "SENDGRID_API_HOST": f"http://127.0.0.1:{sendgrid.port}",
           "PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2",
           "MAX_DELIVERY_ATTEMPTS": "5", "EMAIL_FROM": "ImageFlow <no-reply@imageflow.test>"}
    return {"env": env, "data_dir": e2e_env["IMAGEFLOW_DATA_DIR"], "timeout": 90}


def settings_for(stack: Stack) -> Settings:
    return Settings.from_env(stack.base_env())


def mails_for(stand_in, job_id: str) -> list[dict]:
    return [m for m in stand_in.mails if m.get("headers", {}).get("X-ImageFlow-Job") == job_id]


def wait_for_mail(stand_in, job_id: str, timeout: float = 30.0) -> list[dict]:
    end = time.monotonic() + timeout
    while not mails_for(stand_in, job_id) and time.monotonic() < end:
        time.sleep(0.1)
    return mails_for(stand_in, job_id)


def submit(base: str, files, operations, email: str | None = None) -> dict:
    data = {"operations": json.dumps(operations)}
    if email:
        data["email"] = email
    response = requests.post(f"{base}/api/v1/jobs", files=files, data=data, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()


def test_upload_process_signed_outputs_and_email_through_push(stack, sendgrid):
    base = stack.base_url
    files = [("files", (f"photo {i}.{ext}", make_image(fmt, (500 + 10 * i, 400), (20 * i, 90, 160)), mime))
             for i, (fmt, ext, mime) in enumerate([("JPEG", "jpg", "image/jpeg"), ("PNG", "png", "image/png"),
                                                   ("WEBP", "webp", "image/webp"), ("GIF", "gif", "image/gif")] * 2)]
    files.append(("files", ("truncated.png", make_image("PNG", (300, 300))[:60], "image/png")))
    created = submit(base, files, [{"op": "resize", "width": 160}, {"op": "format", "format": "webp"}],
                     email="user@example.com")
    job = wait_for_job(base, created["job_id"], timeout=90)
    assert (job["status"], job["total"], job["succeeded"], job["failed"]) == ("completed_with_errors", 9, 8, 1)
    storage_host = urlsplit(stack.base_env()["STORAGE_EMULATOR_HOST"]).netloc
    for image in job["images"]:
        if image["filename"] == "truncated.png":
            assert image["status"] == "failed" and image["output_url"] is None
            continue
        url = image["output_url"]
        # A V4 signed URL straight to the object store, not a route through the API.
        assert urlsplit(url).netloc == storage_host and "X-Goog-Signature=" in url, url
        out = requests.get(url, timeout=10)
        assert out.status_code == 200 and out.headers["Content-Type"] == "image/webp"
        assert PILImage.open(io.BytesIO(out.content)).size == (image["width"], image["height"])
        assert image["width"] == 160
        assert requests.get(image["input_url"], timeout=10).status_code == 200
    # The API route still streams (or redirects to) the bytes.
    first = next(i for i in job["images"] if i["status"] == "succeeded")
    via_api = requests.get(f"{base}/api/v1/jobs/{job['job_id']}/images/{first['image_id']}/output", timeout=10)
    assert via_api.status_code == 200 and via_api.content[:4] == b"RIFF"

    [mail] = wait_for_mail(sendgrid, job["job_id"])
    assert mail["personalizations"][0]["to"][0]["email"] == "user@example.com"
    link = f"{stack.base_env()['PUBLIC_BASE_URL']}/jobs/{job['job_id']}"
    assert all(link in c["value"] for c in mail["content"])
    assert "8 of your 9" in mail["subject"]

    # The same job.completed pushed again (a redelivery) is not mailed twice.
    settings = settings_for(stack)
    bus = PubSubBus(settings)
    try:
        stored = FirestoreJobStore(settings)
        assert stored.get_job(job["job_id"]).notified_at
        stored.close()
        payload = {"v": 1, "job_id": job["job_id"], "status": job["status"], "total": 9, "succeeded": 8,
                   "failed": 1, "email": "user@example.com", "results_url": link}
        bus.publish(settings.topics.notifications, json.dumps(payload).encode(), {"job_id": job["job_id"]})
        time.sleep(3)
    finally:
        bus.close()
    assert len(mails_for(sendgrid, job["job_id"])) == 1


def test_processor_killed_holding_leases_loses_and_duplicates_nothing(stack):
    base = stack.base_url
    count = 10
    files = [("files", (f"big {i}.jpg", make_image("JPEG", (2000, 1500), (i * 20 % 255, 60, 90)), "image/jpeg"))
             for i in range(count)]
    created = submit(base, files, [{"op": "resize", "width": 1200}, {"op": "sharpen"},
                                   {"op": "format", "format": "png"}])
    job_id = created["job_id"]
    end = time.monotonic() + 60
    while time.monotonic() < end:
        status = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()
        if status["succeeded"] >= 1:
            break
        time.sleep(0.05)
    assert status["succeeded"] < count, "the batch finished before the processor could be killed"
    killed_at = time.monotonic()
    stack.kill_process("image-processor")  # SIGKILL: its leases are neither acked nor released
    stack.start_process("image-processor")
    job = wait_for_job(base, job_id, timeout=120)
    recovery = time.monotonic() - killed_at
    print(f"\nprocessor killed with {count - status['succeeded']} images to go: job completed "
          f"{recovery:.1f}s later (leases of the dead processor expire after the 10 s ack deadline)")
    assert (job["status"], job["succeeded"], job["failed"]) == ("completed", count, 0)
    store = GcsBlobStore(settings_for(stack))
    try:
        outputs = store.list(f"{job_id}/output/")
    finally:
        store.close()
    assert len(outputs) == count and all(p.endswith(".png") for p in outputs), "one output per image"
    for image in job["images"]:
        assert PILImage.open(io.BytesIO(requests.get(image["output_url"], timeout=10).content)).size == (1200, 900)


def test_poison_task_is_dead_lettered_and_its_image_marked_failed(stack):
    """A task that makes every delivery raise (its output path is refused by the blob
    store): after MAX_DELIVERY_ATTEMPTS it goes to the dead-letter topic, and the interaction
    manager marks its image failed and finishes the job."""
    settings = settings_for(stack)
    jobs, blobs, bus = FirestoreJobStore(settings), GcsBlobStore(settings), PubSubBus(settings)
    try:
        job = Job(job_id=new_id(), total=2, status=domain.PROCESSING, tasks_published=True,
                  operations=[{"op": "grayscale"}])
        # tasked: the test publishes their tasks itself below, as a fan-out would (an untasked image of
        # a job in progress is one the manager's fair-share release still owes a task, and it would
        # publish a proper one for the poison image)
        images = [Image(job_id=job.job_id, image_id=new_id(), filename=name,
                        input_path=domain.input_path(job.job_id, f"{i:032x}", name), tasked=True)
                  for i, name in enumerate(["good.png", "poison.png"])]
        for image in images:
            blobs.put(image.input_path, make_image("PNG", (64, 48)), "image/png")
        jobs.create_job(job, images)
        good, poison = images
        tasks = [Task(job_id=job.job_id, image_id=good.image_id, input_path=good.input_path,
                      output_path=f"{job.job_id}/output/{good.image_id}-good", operations=job.operations),
                 Task(job_id=job.job_id, image_id=poison.image_id, input_path=poison.input_path,
                      output_path=f"{job.job_id}/output/../../{poison.image_id}", operations=job.operations)]
        started = time.monotonic()
        for task in tasks:
            bus.publish(settings.topics.tasks, task.encode(), {"job_id": job.job_id})
        result = wait_for_job(stack.base_url, job.job_id, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        for backend in (jobs, blobs, bus):
            backend.close()
    print(f"\npoison task dead-lettered and its image failed after {elapsed:.1f}s")
    assert (result["status"], result["succeeded"], result["failed"]) == ("completed_with_errors", 1, 1)
    by_name = {i["filename"]: i for i in result["images"]}
    assert by_name["good.png"]["status"] == "succeeded"
    assert by_name["poison.png"]["status"] == "failed"
    assert "after 5 attempts" in by_name["poison.png"]["error"]
