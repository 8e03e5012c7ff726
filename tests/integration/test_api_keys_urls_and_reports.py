"""Jobs by URL and CSV, API keys and ownership, quotas, listing, renaming, deleting, stats and
the CSV report, over image-handler's HTTP API (Flask test client, real local adapters)."""
from __future__ import annotations

import csv
import io
import json
from urllib.parse import urlsplit

import pytest

from imageflow import domain
from imageflow.messages import JobSubmitted, Result
from tests.http_servers import png

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789ab"


@pytest.fixture
def app_config():
    return {"max_files_per_job": 10, "max_urls_per_job": 10, "api_keys": f"alice={ALICE},bob={BOB}", "quota_active_jobs": 3,
            "quota_active_images": 12}


def as_(key):
    return {"Authorization": f"Bearer {key}"}


def upload(client, key, files=(("a.png", png()),), **form):
    data = {"files": [(io.BytesIO(content), name) for name, content in files], **form}
    return client.post("/api/v1/jobs", data=data, content_type="multipart/form-data", headers=as_(key))


def finish(app, job_id, errors=()):
    """Fold a result for every image, as the processors would (failed for the given filenames)."""
    jobs = app.extensions["imageflow"].backends.jobs
    blobs = app.extensions["imageflow"].backends.blobs
    results = []
    for image in jobs.list_images(job_id):
        if image.filename in errors:
            results.append(Result(job_id=job_id, image_id=image.image_id, status="failed", error=errors[image.filename],
                                  error_code="fetch_failed"))
        else:
            path = f"{job_id}/output/{image.image_id}-out.png"
            blobs.put(path, png((8, 6)), "image/png")
            results.append(Result(job_id=job_id, image_id=image.image_id, status="succeeded", output_path=path,
                                  content_type="image/png", width=8, height=6, bytes=len(png((8, 6)))))
    jobs.record_results(results)


# -- submission by URL -----------------------------------------------------------------------
def test_json_url_submission_creates_queued_images_and_fetches_nothing(app, client):
    response = client.post("/api/v1/jobs", headers=as_(ALICE), json={
        "urls": ["https://images.example/a.jpg", {"url": "https://images.example/b.png", "name": "Blue",
                                                   "product": "SKU-9"}, "ftp://images.example/c.jpg"],
        "preset": "thumbnail", "name": "catalogue"})
    assert response.status_code == 202, response.json
    body = response.json
    assert [i["source_url"] for i in body["images"]] == ["https://images.example/a.jpg",
                                                         "https://images.example/b.png"]
    assert [i["filename"] for i in body["images"]] == ["a.jpg", "Blue"]
    assert body["rejected"][0]["row"] == 3 and "only http and https" in body["rejected"][0]["error"]["message"]
    backends = app.extensions["imageflow"].backends
    assert backends.blobs.list(f"{body['job_id']}/") == []
    [message] = backends.bus.pull("imageflow-jobs-im", max_messages=5)
    assert JobSubmitted.decode(message.data).job_id == body["job_id"]
    job = client.get(f"/api/v1/jobs/{body['job_id']}", headers=as_(ALICE)).json
    assert job["name"] == "catalogue" and job["total"] == 2 and job["status"] == "queued"
    assert job["images"][1]["meta"] == {"name": "Blue", "product": "SKU-9"}


@pytest.mark.parametrize("payload, status, code", [
    ({"urls": ["file:///etc/passwd", "gopher://x/"]}, 400, "no_valid_urls"),
    ({"urls": []}, 400, "invalid_urls"),
    ({"urls": "https://a.example/x.jpg"}, 400, "invalid_urls"),
    ({"urls": ["https://a.example/x.jpg"], "operations": [{"op": "explode"}]}, 422, "invalid_operations"),
    ({"urls": [f"https://a.example/{n}.jpg" for n in range(11)]}, 413, "too_many_urls"),
])
def test_bad_url_submissions_are_refused(client, payload, status, code):
    response = client.post("/api/v1/jobs", headers=as_(ALICE), json=payload)
    assert (response.status_code, response.json["error"]["code"]) == (status, code)


def test_csv_submission_keeps_columns_for_the_report(app, client):
    out = io.StringIO()
    csv.writer(out).writerows([["url", "name", "product"],
                               ["https://images.example/1.jpg", '=HYPERLINK("http://evil.example","click")', "@SUM(A1)"],
                               ["https://images.example/2.jpg", "-2+3", "+cmd|' /C calc'!A0"],
                               ["https://images.example/3.jpg", "plain", "SKU-3"]])
    data = out.getvalue()
    response = client.post("/api/v1/jobs", headers=as_(ALICE), content_type="multipart/form-data",
                           data={"csv": (io.BytesIO(data.encode()), "urls.csv"), "preset": "web"})
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    finish(app, job_id, errors={"plain": "could not fetch the URL: the server answered 404 Not Found"})
    report = client.get(f"/api/v1/jobs/{job_id}/report.csv", headers=as_(ALICE))
    assert report.status_code == 200 and report.mimetype == "text/csv"
    assert "attachment" in report.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(report.data.decode("utf-8-sig"))))
    assert [r["name"] for r in rows] == ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'-2+3", "plain"]
    assert [r["product"] for r in rows] == ["'@SUM(A1)", "'+cmd|' /C calc'!A0", "SKU-3"]
    assert [r["source_url"] for r in rows] == [f"https://images.example/{n}.jpg" for n in (1, 2, 3)]
    assert [r["status"] for r in rows] == ["succeeded", "succeeded", "failed"]
    assert rows[2]["error"].endswith("404 Not Found") and rows[2]["output_url"] == "" and rows[2]["input_url"] == ""
    assert [r["error_code"] for r in rows] == ["", "", "fetch_failed"]
    images = client.get(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).json["images"]
    assert [i["error_code"] for i in images] == [None, None, "fetch_failed"]
    # The output links work without the key (signed) and only for that file.
    link = urlsplit(rows[0]["output_url"])
    assert client.get(f"{link.path}?{link.query}").status_code == 200
    assert client.get(f"{link.path}?{link.query.replace('sig=', 'sig=0')}").status_code == 403
    assert client.get(link.path).status_code == 401


def test_csv_with_no_usable_url_is_400(client):
    response = client.post("/api/v1/jobs", headers=as_(ALICE), content_type="multipart/form-data",
                           data={"csv": (io.BytesIO(b"url\nnot-a-url\n"), "urls.csv")})
    assert response.status_code == 400 and "row 2" in response.json["error"]["message"]
    both = client.post("/api/v1/jobs", headers=as_(ALICE), content_type="multipart/form-data",
                       data={"csv": (io.BytesIO(b"https://a.example/x.jpg\n"), "urls.csv"),
                             "files": [(io.BytesIO(png()), "a.png")]})
    assert both.status_code == 400 and "not both" in both.json["error"]["message"]


# -- keys and ownership --------------------------------------------------------------------
def test_keys_are_required_when_configured(client):
    response = client.get("/api/v1/jobs")
    assert response.status_code == 401 and response.json["error"]["code"] == "api_key_required"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/jobs", headers=as_("not-a-key-0123456789")).json["error"]["code"] == "invalid_api_key"
    options = client.get("/api/v1/operations")
    assert options.status_code == 200                                     # the schema stays public
    assert options.json["api_keys_required"] is True                      # so the page shows its key field
    assert options.json["limits"]["max_urls_per_job"] == 10               # the page states the URL import's limits
    assert options.json["limits"]["max_csv_bytes"] == 32 * 1024 * 1024
    assert options.json["limits"]["max_fetch_bytes"] > 0


def test_another_key_cannot_see_or_touch_a_job(app, client):
    job_id = upload(client, ALICE).json["job_id"]
    finish(app, job_id)
    image_id = client.get(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).json["images"][0]["image_id"]
    for method, path in [("get", ""), ("get", "/report.csv"), ("get", "/archive.zip"), ("delete", ""),
                         ("get", f"/images/{image_id}/input"), ("get", f"/images/{image_id}/output")]:
        response = getattr(client, method)(f"/api/v1/jobs/{job_id}{path}", headers=as_(BOB))
        assert response.status_code == 404, (method, path)
    assert client.patch(f"/api/v1/jobs/{job_id}", headers=as_(BOB), json={"name": "mine"}).status_code == 404
    assert client.get("/api/v1/jobs", headers=as_(BOB)).json["jobs"] == []
    assert [j["job_id"] for j in client.get("/api/v1/jobs", headers=as_(ALICE)).json["jobs"]] == [job_id]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).status_code == 200


def test_keys_are_off_by_default(make_app):
    app = make_app(max_files_per_job=10)
    try:
        client = app.test_client()
        job_id = client.post("/api/v1/jobs", json={"urls": ["https://a.example/x.jpg"]}).json["job_id"]
        assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200
        assert client.get("/api/v1/jobs").json["jobs"][0]["job_id"] == job_id
        assert client.get("/api/v1/operations").json["api_keys_required"] is False
    finally:
        app.extensions["imageflow"].backends.close()


# -- quotas --------------------------------------------------------------------------------
def test_quota_of_active_jobs_is_429_with_a_clear_message(app, client):
    ids = [upload(client, ALICE).json["job_id"] for _ in range(3)]
    response = upload(client, ALICE)
    assert response.status_code == 429 and response.headers["Retry-After"]
    assert response.json["error"]["code"] == "quota_exceeded"
    assert "3 active jobs and the limit is 3" in response.json["error"]["message"]
    assert upload(client, BOB).status_code == 202                      # the quota is per key
    finish(app, ids[0])
    assert upload(client, ALICE).status_code == 202                    # a finished job frees a slot


def test_deleting_finished_jobs_gives_their_quota_back_at_once(app, client):
    """A job deleted soon after it was submitted must not count as active (its reservation would
    otherwise look like a job still being created, for RESERVATION_TTL_SECONDS)."""
    ids = [upload(client, ALICE).json["job_id"] for _ in range(3)]
    for job_id in ids:
        finish(app, job_id)
        assert client.delete(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).status_code == 204
    response = upload(client, ALICE)
    assert response.status_code == 202, response.json


def test_quota_of_images_counts_the_new_job(client):
    response = client.post("/api/v1/jobs", headers=as_(ALICE),
                           json={"urls": [f"https://a.example/{n}.jpg" for n in range(10)]})
    assert response.status_code == 202
    response = client.post("/api/v1/jobs", headers=as_(ALICE),
                           json={"urls": [f"https://a.example/{n}.jpg" for n in range(3)]})
    assert response.status_code == 429
    assert "10 images waiting and this job adds 3" in response.json["error"]["message"]


# -- listing, renaming, deleting, stats ------------------------------------------------------
def test_list_is_paginated_newest_first_and_filters_by_status(make_app):
    app = make_app(max_files_per_job=10)
    client = app.test_client()
    try:
        ids = [client.post("/api/v1/jobs", json={"urls": ["https://a.example/x.jpg"]}).json["job_id"]
               for _ in range(7)]
        finish(app, ids[1])
        seen, url = [], "/api/v1/jobs?limit=3"
        while url:
            page = client.get(url).json
            assert len(page["jobs"]) <= 3
            seen += [j["job_id"] for j in page["jobs"]]
            url = page["links"]["next"]
        assert seen == [j.job_id for j in sorted((app.extensions["imageflow"].backends.jobs.get_job(i) for i in ids),
                                                 key=lambda j: (j.created_at, j.job_id), reverse=True)]
        assert [j["job_id"] for j in client.get("/api/v1/jobs?status=completed").json["jobs"]] == [ids[1]]
        assert client.get("/api/v1/jobs?status=nope").status_code == 400
        assert client.get("/api/v1/jobs?limit=1000").status_code == 400
        assert client.get("/api/v1/jobs?cursor=garbage").status_code == 400
    finally:
        app.extensions["imageflow"].backends.close()


def test_jobs_created_in_the_same_millisecond_are_all_listed(make_app):
    app = make_app(max_files_per_job=10)
    jobs = app.extensions["imageflow"].backends.jobs
    try:
        ids = sorted(domain.new_id() for _ in range(5))
        for job_id in ids:
            jobs.create_job(domain.Job(job_id=job_id, created_at="2030-01-01T00:00:00.000Z"), [])
        client, seen, url = app.test_client(), [], "/api/v1/jobs?limit=2"
        while url:
            page = client.get(url).json
            seen += [j["job_id"] for j in page["jobs"]]
            url = page["links"]["next"]
        assert sorted(seen) == ids and len(seen) == 5
    finally:
        app.extensions["imageflow"].backends.close()


def test_rename(client):
    job_id = upload(client, ALICE).json["job_id"]
    response = client.patch(f"/api/v1/jobs/{job_id}", headers=as_(ALICE), json={"name": "  Summer\x07 shoot "})
    assert response.status_code == 200 and response.json["name"] == "Summer shoot"
    assert client.get(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).json["name"] == "Summer shoot"
    assert client.patch(f"/api/v1/jobs/{job_id}", headers=as_(ALICE), json={"name": "x" * 201}).status_code == 400
    assert client.patch(f"/api/v1/jobs/{job_id}", headers=as_(ALICE), json=["x"]).status_code == 400


def test_delete_removes_files_and_documents_of_a_finished_job_only(app, client, tmp_path):
    job_id = upload(client, ALICE, files=(("a.png", png()), ("b.png", png()))).json["job_id"]
    response = client.delete(f"/api/v1/jobs/{job_id}", headers=as_(ALICE))
    assert response.status_code == 409 and response.json["error"]["code"] == "job_active"
    finish(app, job_id)
    backends = app.extensions["imageflow"].backends
    assert len(backends.blobs.list(f"{job_id}/")) == 4
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).status_code == 204
    assert backends.blobs.list(f"{job_id}/") == [] and not (tmp_path / "data" / "blobs" / job_id).exists()
    assert backends.jobs.get_job(job_id) is None and backends.jobs.list_images(job_id) == []
    assert client.get(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).status_code == 404
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=as_(ALICE)).status_code == 404


def test_stats_count_the_callers_jobs_images_bytes_and_failures(app, client):
    first = upload(client, ALICE, files=(("a.png", png()), ("b.png", png()))).json["job_id"]
    finish(app, first, errors={"b.png": "corrupt"})
    upload(client, ALICE)
    upload(client, BOB)
    stats = client.get("/api/v1/stats", headers=as_(ALICE)).json
    assert stats["jobs"] == 2 and stats["images"] == 3 and stats["succeeded"] == 1 and stats["failed"] == 1
    assert stats["pending"] == 1
    assert stats["jobs_by_status"]["completed_with_errors"] == 1 and stats["jobs_by_status"]["queued"] == 1
    assert stats["bytes"]["input"] == 3 * len(png()) and stats["bytes"]["output"] == len(png((8, 6)))
    assert client.get("/api/v1/stats", headers=as_(BOB)).json["jobs"] == 1


def test_webhook_secret_is_shown_once_and_the_delivery_state_on_get(client):
    response = upload(client, ALICE, webhook_url="https://hooks.example/imageflow")
    secret = response.json["webhook_secret"]
    assert len(secret) == 64
    job = client.get(f"/api/v1/jobs/{response.json['job_id']}", headers=as_(ALICE)).json
    assert secret not in json.dumps(job)
    assert job["webhook_status"] == "pending" and job["webhook_attempts"] == []
    chosen = upload(client, ALICE, webhook_url="https://hooks.example/x", webhook_secret="my-own-secret-12345")
    assert chosen.json["webhook_secret"] == "my-own-secret-12345"
    assert upload(client, ALICE, webhook_url="https://h.example/", webhook_secret="short").status_code == 400
