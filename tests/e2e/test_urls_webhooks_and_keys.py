"""Import by URL, webhooks, reports and API keys end to end over HTTP, on the whole local stack:
a CSV of URLs served from 127.0.0.1, SSRF attempts refused, a signed and retried webhook,
the CSV report, API keys and quotas, listing, renaming, stats and deletion, and the signed zip
link the completion email and webhook carry with keys on.

The stack lets 127.0.0.1 through the SSRF rules (FETCH_ALLOW_CIDRS, test only) and maps
test names with FETCH_HOSTS_OVERRIDE: internal.test and metadata.test resolve to private
addresses, which the interaction manager refuses before connecting."""
from __future__ import annotations

import csv
import email
import html
import io
import json
import time
import zipfile
from datetime import datetime
from email import policy
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from PIL import Image

from services.interaction_manager.webhooks import SIGNATURE_HEADER, verify
from tests.http_servers import ImageServer, WebhookReceiver, jpeg, png

ALICE = "alice-e2e-key-0123456789"
BOB = "bob-e2e-key-0123456789ab"
CAROL = "carol-e2e-key-0123456789"   # the signed-link test's own caller: its quota and stats stay apart
SECRET = "e2e-webhook-secret-0123456789"


@pytest.fixture(scope="module")
def images():
    server = ImageServer({"/a.png": (png((120, 80)), "image/png"), "/b.jpg": (jpeg((200, 100)), "image/jpeg"),
                          "/page.html": (b"<html>hello</html>", "text/html")})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack_options():
    return {"env": {
        "API_KEYS": f"alice={ALICE},bob={BOB},carol={CAROL}", "QUOTA_ACTIVE_JOBS": "1", "QUOTA_ACTIVE_IMAGES": "20",
        "FETCH_ALLOW_CIDRS": "127.0.0.1/32", "FETCH_TIMEOUT_SECONDS": "3",
        "FETCH_HOSTS_OVERRIDE": "images.test=127.0.0.1,internal.test=10.20.30.40,metadata.test=169.254.169.254",
        "WEBHOOK_BACKOFF_SECONDS": "0.3", "WEBHOOK_MAX_ATTEMPTS": "4",
        "PROGRESS_FLUSH_SECONDS": "0.2", "ACK_DEADLINE_SECONDS": "10"}}


def api(stack, method, path, key=ALICE, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, f"{stack.base_url}/api/v1{path}", headers=headers, timeout=30, **kwargs)


def wait_done(stack, job_id, key=ALICE, timeout=60.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        job = api(stack, "GET", f"/jobs/{job_id}", key).json()
        if job["status"] not in ("queued", "processing"):
            return job
        assert time.monotonic() < end, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def test_csv_of_urls_with_ssrf_attempts_webhook_and_report(stack, images):
    port = images.port
    rows = [["url", "name", "product"],
            [f"http://images.test:{port}/a.png", "Red shoe", "=1+2"],
            [f"http://127.0.0.1:{port}/b.jpg", "", "SKU-2"],
            ["http://internal.test/secret.png", "private", ""],
            ["http://metadata.test/computeMetadata/v1/", "metadata", ""],
            [f"http://127.0.0.1:{port}/redirect?http://10.0.0.1/admin.png", "redirect", ""],
            [f"http://127.0.0.2:{port}/a.png", "loopback", ""],
            [f"http://127.0.0.1:{port}/page.html", "html", ""]]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    hook = WebhookReceiver(statuses=[500])
    try:
        response = api(stack, "POST", "/jobs", files={"csv": ("urls.csv", out.getvalue().encode())},
                       data={"preset": "thumbnail", "webhook_url": hook.url("/hook"), "webhook_secret": SECRET})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        job = wait_done(stack, job_id)
        calls = hook.wait_for(2)
        end = time.monotonic() + 15
        while job["webhook_status"] == "pending" and time.monotonic() < end:   # the outcome is recorded after the 200
            time.sleep(0.1)
            job = api(stack, "GET", f"/jobs/{job_id}").json()
    finally:
        hook.stop()

    assert (job["status"], job["succeeded"], job["failed"]) == ("completed_with_errors", 2, 5)
    by_url = {i["source_url"]: i for i in job["images"]}
    assert "10.20.30.40" in by_url["http://internal.test/secret.png"]["error"]
    assert "169.254.169.254" in by_url["http://metadata.test/computeMetadata/v1/"]["error"]
    assert "10.0.0.1" in by_url[rows[5][0]]["error"] and "127.0.0.2" in by_url[rows[6][0]]["error"]
    assert "not an image" in by_url[rows[7][0]]["error"]
    good = by_url[rows[1][0]]
    assert good["status"] == "succeeded" and good["filename"] == "Red shoe"
    output = requests.get(good["output_url"], timeout=10)                  # a signed link: no key needed
    assert output.status_code == 200 and output.content[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"RIFF")
    assert requests.get(good["input_url"], timeout=10).content == png((120, 80))

    # The webhook: refused once (500), retried, signed with the secret; GET shows the attempts.
    assert [c["status"] for c in calls[:2]] == [500, 200]
    assert all(verify(SECRET, c["body"], c["headers"][SIGNATURE_HEADER]) for c in calls)
    assert job["webhook_status"] == "delivered"
    assert [a["status_code"] for a in job["webhook_attempts"]] == [500, 200]

    report = api(stack, "GET", f"/jobs/{job_id}/report.csv")
    assert report.status_code == 200 and report.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert [line["source_url"] for line in lines] == [row[0] for row in rows[1:]]
    assert lines[0]["product"] == "'=1+2" and lines[1]["product"] == "SKU-2"
    assert [line["status"] for line in lines] == ["succeeded", "succeeded"] + ["failed"] * 5
    assert lines[0]["output_url"] and lines[2]["error"] and not lines[2]["output_url"]


def test_keys_isolate_callers_and_quotas_answer_429(stack, images):
    assert api(stack, "GET", "/jobs", key=None).status_code == 401
    alice_jobs = [j["job_id"] for j in api(stack, "GET", "/jobs").json()["jobs"]]
    assert alice_jobs, "the first test left alice a job"
    assert api(stack, "GET", f"/jobs/{alice_jobs[0]}", key=BOB).status_code == 404
    assert api(stack, "GET", f"/jobs/{alice_jobs[0]}/report.csv", key=BOB).status_code == 404
    assert api(stack, "DELETE", f"/jobs/{alice_jobs[0]}", key=BOB).status_code == 404
    assert api(stack, "GET", "/jobs", key=BOB).json()["jobs"] == []

    too_many = api(stack, "POST", "/jobs", key=BOB, json={"urls": [images.url(f"/a.png?{n}") for n in range(21)]})
    assert too_many.status_code == 429 and "limit is 20" in too_many.json()["error"]["message"]

    slow = api(stack, "POST", "/jobs", key=BOB, json={"urls": [images.url("/slow")]})
    assert slow.status_code == 202
    second = api(stack, "POST", "/jobs", key=BOB, json={"urls": [images.url("/a.png")]})
    assert second.status_code == 429 and second.json()["error"]["code"] == "quota_exceeded"
    assert "1 active jobs" in second.json()["error"]["message"]
    job = wait_done(stack, slow.json()["job_id"], key=BOB)
    assert job["status"] == "failed" and "within 3 s" in job["images"][0]["error"]
    assert api(stack, "POST", "/jobs", key=BOB, json={"urls": [images.url("/a.png")]}).status_code == 202


def test_list_rename_stats_and_delete_leaves_nothing_behind(stack, images):
    created = api(stack, "POST", "/jobs", json={"urls": [images.url("/a.png"), images.url("/b.jpg")],
                                                "operations": [{"op": "grayscale"}], "name": "to delete"})
    assert created.status_code == 202
    job_id = created.json()["job_id"]
    assert wait_done(stack, job_id)["status"] == "completed"

    listed = api(stack, "GET", "/jobs?limit=1").json()
    assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["next_cursor"]
    older = requests.get(listed["links"]["next"], headers={"Authorization": f"Bearer {ALICE}"}, timeout=10).json()
    assert job_id not in [j["job_id"] for j in older["jobs"]] and older["jobs"]
    assert job_id in [j["job_id"] for j in api(stack, "GET", "/jobs?status=completed").json()["jobs"]]
    assert api(stack, "PATCH", f"/jobs/{job_id}", json={"name": "renamed"}).json()["name"] == "renamed"

    stats = api(stack, "GET", "/stats").json()
    assert stats["jobs"] == 2 and stats["images"] == 9 and stats["succeeded"] == 4 and stats["failed"] == 5
    assert stats["bytes"]["input"] > 0 or stats["bytes"]["output"] > 0

    blob_dir = stack.data_dir / "blobs" / job_id
    kinds = sorted(p.parent.name for p in blob_dir.rglob("*.*"))
    assert kinds == ["input"] * 2 + ["output"] * 2 + ["preview"] * 4  # two images, each with two previews
    assert api(stack, "DELETE", f"/jobs/{job_id}").status_code == 204
    assert not blob_dir.exists()
    assert api(stack, "GET", f"/jobs/{job_id}").status_code == 404
    assert job_id not in [j["job_id"] for j in api(stack, "GET", "/jobs").json()["jobs"]]
    assert api(stack, "GET", "/stats").json()["jobs"] == 1


def test_the_emailed_and_webhooked_zip_link_opens_without_a_key(stack):
    """With keys on, the person who gets the completion email (or the webhook's receiver) opens the
    zip link as it is, with no key: the interaction manager signed it, the image-handler verifies
    it. A tampered signature is refused; the bare URL still needs a key."""
    files = [("files", (f"link-{i}.png", png((48 + i, 32), (30 * i, 200, 90)), "image/png")) for i in range(2)]
    hook = WebhookReceiver()
    try:
        created = api(stack, "POST", "/jobs", key=CAROL, files=files, data={
            "operations": json.dumps([{"op": "grayscale"}]), "email": "someone@example.com",
            "webhook_url": hook.url("/done")})
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        job = wait_done(stack, job_id, key=CAROL)
        assert job["status"] == "completed"
        [call] = hook.wait_for(1)
    finally:
        hook.stop()
    webhook_link = json.loads(call["body"])["archive_url"]

    eml = stack.data_dir / "outbox" / f"{job_id}.eml"
    end = time.monotonic() + 30
    while not eml.exists():
        assert time.monotonic() < end, f"no email for {job_id}"
        time.sleep(0.2)
    mail = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    text = mail.get_body(("plain",)).get_content()
    [mailed_link] = [word for word in text.split() if "/archive.zip" in word]
    assert mailed_link == webhook_link, "the email and the webhook carry the same link"
    assert f'<a href="{html.escape(mailed_link, quote=True)}">' in mail.get_body(("html",)).get_content()
    link = urlsplit(mailed_link)
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"{stack.base_url}/api/v1/jobs/{job_id}/archive.zip"
    args = dict(parse_qsl(link.query))
    assert set(args) == {"expires", "sig"}
    deleted_at = datetime.fromisoformat(job["expires_at"].replace("Z", "+00:00")).timestamp()
    assert int(args["expires"]) == int(deleted_at), "valid until the files go (JOB_RETENTION_DAYS after creation)"

    opened = requests.get(mailed_link, timeout=30)        # a browser opening the email's link: no key
    assert opened.status_code == 200, opened.text
    assert opened.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(opened.content))
    assert len(archive.namelist()) == 2
    sizes = sorted(Image.open(io.BytesIO(archive.read(name))).size for name in archive.namelist())
    assert sizes == [(48, 32), (49, 32)]
    assert all(Image.open(io.BytesIO(archive.read(name))).mode in ("L", "LA") for name in archive.namelist())

    sig = args["sig"]
    tampered = urlunsplit(link._replace(query=urlencode({**args, "sig": sig[:-1] + ("1" if sig[-1] == "0" else "0")})))
    refused = requests.get(tampered, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "invalid_link"
    extended = urlunsplit(link._replace(query=urlencode({**args, "expires": str(int(args["expires"]) + 86400)})))
    assert requests.get(extended, timeout=10).status_code == 403
    bare = requests.get(urlunsplit(link._replace(query="")), timeout=10)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "api_key_required"
