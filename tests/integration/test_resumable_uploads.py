"""Resumable direct uploads on the local store (services/image_handler/resumable.py): the same
protocol as a Cloud Storage resumable session, so one client serves both backends. Driven through
the Flask app; the manager's join runs in-process on the same data directory."""
from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from services.image_handler.app import create_app

from .test_open_jobs import path_of


def photo(seed: int = 1) -> bytes:
    """A noisy PNG of about 190 KB, so chunks of 64 KB make several."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "max_upload_bytes": 1_000_000})
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def client(app):
    return app.test_client()


def target(client, data: bytes, name: str = "big.png") -> tuple[str, dict]:
    job_id = client.post("/api/v1/jobs", json={"open": True, "preset": "thumbnail"}).json["job_id"]
    answer = client.post(f"/api/v1/jobs/{job_id}/files",
                         json={"files": [{"filename": name, "bytes": len(data), "content_type": "image/png"}]})
    assert answer.status_code == 200, answer.json
    [upload] = answer.json["uploads"]
    return job_id, upload


def put(client, upload, body: bytes = b"", content_range: str | None = None):
    headers = dict(upload["headers"])
    if content_range:
        headers["Content-Range"] = content_range
    return client.put(path_of(upload["url"]), data=body, headers=headers)


def join_and_read(app, job_id: str, client) -> bytes:
    assert client.post(f"/api/v1/jobs/{job_id}/close").status_code == 200  # close joins what landed
    [image] = client.get(f"/api/v1/jobs/{job_id}").json["images"]
    return client.get(path_of(image["input_url"])).data


def test_a_file_sent_in_chunks_is_stored_whole_and_joins(app, client):
    data = photo()
    job_id, upload = target(client, data)
    size, step = len(data), 64 * 1024
    for first in range(0, size, step):
        last = min(first + step, size) - 1
        answer = put(client, upload, data[first:last + 1], f"bytes {first}-{last}/{size}")
        if last < size - 1:
            assert answer.status_code == 308 and answer.headers["Range"] == f"bytes=0-{last}"
        else:
            assert answer.status_code == 200 and answer.json["bytes"] == size
    assert join_and_read(app, job_id, client) == data


def test_after_a_drop_the_client_asks_how_far_and_sends_only_the_rest(app, client):
    data = photo()
    job_id, upload = target(client, data)
    size = len(data)
    query = put(client, upload, content_range=f"bytes */{size}")
    assert query.status_code == 308 and "Range" not in query.headers  # nothing kept yet
    assert put(client, upload, data[:100_000], f"bytes 0-99999/{size}").status_code == 308
    query = put(client, upload, content_range=f"bytes */{size}")
    assert query.status_code == 308 and query.headers["Range"] == "bytes=0-99999"
    # the answer to the next chunk was lost: the client resends from 50,000; the known part is skipped
    resent = put(client, upload, data[50_000:150_000], f"bytes 50000-149999/{size}")
    assert resent.status_code == 308 and resent.headers["Range"] == "bytes=0-149999"
    # a chunk past what was kept is not kept; the answer says where to start
    gap = put(client, upload, data[160_000:], f"bytes 160000-{size - 1}/{size}")
    assert gap.status_code == 308 and gap.headers["Range"] == "bytes=0-149999"
    done = put(client, upload, data[150_000:], f"bytes 150000-{size - 1}/{size}")
    assert done.status_code == 200
    # once stored: a status query says so, a chunk is refused (write-once)
    assert put(client, upload, content_range=f"bytes */{size}").status_code == 200
    again = put(client, upload, data[:10], f"bytes 0-9/{size}")
    assert again.status_code == 409 and again.json["error"]["code"] == "already_uploaded"
    assert join_and_read(app, job_id, client) == data


def test_bad_ranges_are_refused_with_a_reason(client):
    data = photo()
    _, upload = target(client, data)
    size = len(data)
    for header, code in ((f"bytes 0-9/{size + 1}", "wrong_size"), ("bytes 5-2/100", "invalid_content_range"),
                         (f"bytes 0-{size}/{size}", "invalid_content_range"), ("items 0-9/10", "invalid_content_range")):
        answer = put(client, upload, b"x" * 10, header)
        assert answer.status_code == 400 and answer.json["error"]["code"] == code, (header, answer.json)
        assert "Content-Range" in answer.json["error"]["message"] or "bytes" in answer.json["error"]["message"]
    short = put(client, upload, b"x" * 5, f"bytes 0-9/{size}")
    assert short.status_code == 400 and short.json["error"]["code"] == "wrong_size"


def test_close_drops_an_unfinished_chunked_upload(app, client):
    data = photo()
    job_id, upload = target(client, data)
    assert put(client, upload, data[:1000], f"bytes 0-999/{len(data)}").status_code == 308
    partial = app.extensions["imageflow"].settings.data_dir / "partial-uploads" / job_id
    assert partial.is_dir()
    closed = client.post(f"/api/v1/jobs/{job_id}/close")
    assert closed.status_code == 200 and closed.json["total"] == 0
    assert not partial.exists()
    late = put(client, upload, data[1000:], f"bytes 1000-{len(data) - 1}/{len(data)}")
    assert late.status_code == 409 and late.json["error"]["code"] == "job_closed"
