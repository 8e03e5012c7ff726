"""Every request body is bounded (image-handler over the local adapters, Flask test client):
chunked bodies, PATCH, encoded bodies, URL lists past the job limit, and error details."""
from __future__ import annotations

import io
import json
import time

import pytest

from services.image_handler.app import create_app


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "max_files_per_job": 100, "max_urls_per_job": 100,
                      "max_request_bytes": 4_000_000,
                      "max_json_bytes": 64 * 1024, "rate_limit_per_second": 0})
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def client(app):
    return app.test_client()


def chunked(client, method: str, path: str, body: bytes, content_type: str = "application/json", **headers):
    """A request whose body has no Content-Length (Transfer-Encoding: chunked, as gunicorn hands it on)."""
    return client.open(path, method=method, input_stream=io.BytesIO(body), content_type=content_type,
                       headers={"Transfer-Encoding": "chunked", **headers},
                       environ_overrides={"wsgi.input_terminated": True})


def url_job(client, urls) -> dict:
    return client.post("/api/v1/jobs", json={"urls": urls}).json


def test_a_chunked_json_body_past_the_json_limit_is_413(client):
    """200 KB of JSON with no Content-Length, against a 64 KB JSON limit (the multipart limit is 4 MB)."""
    body = json.dumps({"urls": ["https://example.com/a.png"], "name": "n" * 200_000}).encode()
    response = chunked(client, "POST", "/api/v1/jobs", body)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "request_too_large" and "64 KB" in response.json["error"]["message"]


def test_a_json_body_declaring_more_than_the_limit_is_413(client):
    body = json.dumps({"urls": ["https://example.com/a.png"], "name": "n" * 200_000})
    response = client.post("/api/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 413 and response.json["error"]["code"] == "request_too_large"


def test_patch_bodies_are_bounded(client):
    job_id = client.post("/api/v1/jobs", json={"urls": ["https://example.com/a.png"]}).json["job_id"]
    body = json.dumps({"name": "a" * 500_000}).encode()
    for response in (client.patch(f"/api/v1/jobs/{job_id}", data=body, content_type="application/json"),
                     chunked(client, "PATCH", f"/api/v1/jobs/{job_id}", body)):
        assert response.status_code == 413 and response.json["error"]["code"] == "request_too_large"
    assert client.patch(f"/api/v1/jobs/{job_id}", json={"name": "ok"}).json["name"] == "ok"


def test_encoded_bodies_are_refused_not_decompressed(client):
    response = client.post("/api/v1/jobs", data=b"\x1f\x8b" + b"\0" * 100, content_type="application/json",
                           headers={"Content-Encoding": "gzip"})
    assert response.status_code == 415 and response.json["error"]["code"] == "unsupported_content_encoding"


def test_a_huge_csv_stops_parsing_at_the_job_limit(client):
    """2 MB of one-character rows (about a million) against 100 URLs per job: refused at row 102, answer small."""
    csv = b"x\n" * (1024 * 1024 - 1)
    started = time.monotonic()
    response = client.post("/api/v1/jobs", data={"csv": (io.BytesIO(csv), "urls.csv")},
                           content_type="multipart/form-data")
    elapsed = time.monotonic() - started
    assert response.status_code == 413, response.data[:300]
    assert response.json["error"]["code"] == "too_many_urls" and "100" in response.json["error"]["message"]
    assert len(response.data) < 2000
    assert elapsed < 10  # a generous bound against parsing and echoing every row (was about 10 s, 139 MB)


def test_a_json_url_list_past_the_job_limit_is_413(client):
    response = client.post("/api/v1/jobs", json={"urls": ["https://example.com/a.png"] * 101})
    assert response.status_code == 413 and response.json["error"]["code"] == "too_many_urls"


def test_error_details_are_cut_to_the_first_entries_with_a_count_of_the_rest(client):
    response = client.post("/api/v1/jobs", json={"urls": [f"ftp://example.com/{i}.png" for i in range(50)]})
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "no_valid_urls"
    assert [d["row"] for d in error["details"]] == list(range(1, 21))
    assert error["details_omitted"] == 30


def test_parallel_submissions_cannot_pass_the_quota_together(tmp_path):
    """QUOTA_ACTIVE_JOBS=2 and 12 submissions at once (3 got through before quotas were reserved atomically)."""
    from concurrent.futures import ThreadPoolExecutor

    app = create_app({"data_dir": tmp_path / "quota", "quota_active_jobs": 2, "rate_limit_per_second": 0})
    try:
        def submit(i):
            with app.test_client() as client:
                return client.post("/api/v1/jobs", json={"urls": [f"https://example.com/{i}.png"]}).status_code

        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(submit, range(12)))
        assert sorted(codes) == [202, 202] + [429] * 10, codes
        refused = app.test_client().post("/api/v1/jobs", json={"urls": ["ftp://example.com/x.png"]})
        assert refused.status_code == 400  # a refused job holds no quota...
        with app.test_client() as client:
            assert client.post("/api/v1/jobs", json={"urls": ["https://example.com/z.png"]}).status_code == 429
    finally:
        app.extensions["imageflow"].backends.close()
