"""Security headers on every image-handler response (issue 24): on GKE /api/ reaches the
image-handler without nginx, so what it serves (JSON, an uploaded original, an output) must carry
them itself. And cursors past SQLite's integers are a 400, not a 500."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from services.image_handler.app import API_CSP, PAGE_CSP, create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(tmp_path):
    app = create_app({"data_dir": tmp_path / "data"})
    yield app.test_client()
    app.extensions["imageflow"].backends.close()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def assert_hardened(response, csp: str) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == csp
    assert response.headers["X-Frame-Options"] == "DENY"


def test_json_errors_the_page_and_stored_originals_carry_the_headers(client):
    assert_hardened(client.get("/api/v1/operations"), API_CSP)
    assert_hardened(client.get("/api/v1/jobs/" + "0" * 32), API_CSP)  # a 404 too
    assert_hardened(client.get("/"), PAGE_CSP)
    created = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(png()), "a.png")], "preset": "thumbnail"},
                          content_type="multipart/form-data").json
    original = client.get(f"/api/v1/jobs/{created['job_id']}/images/{created['images'][0]['image_id']}/input")
    assert original.status_code == 200
    assert_hardened(original, API_CSP)


def test_the_page_policy_is_nginx_s_policy():
    conf = (ROOT / "frontend/nginx/security-headers.conf").read_text()
    assert re.search(r'Content-Security-Policy "([^"]+)"', conf).group(1) == PAGE_CSP


@pytest.mark.parametrize("seq", [2 ** 63, 2 ** 70, -1])
def test_a_cursor_outside_the_stores_integers_is_a_400(client, seq):
    created = client.post("/api/v1/jobs", json={"open": True, "preset": "thumbnail"}).json
    cursor = base64.urlsafe_b64encode(json.dumps({"seq": seq}).encode()).decode().rstrip("=")
    answer = client.get(f"/api/v1/jobs/{created['job_id']}/images?cursor={cursor}")
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_cursor"
