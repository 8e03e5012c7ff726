"""The editor's routes (services/image_handler/routes/editor.py) over the real local adapters:
operations checked before upload, presets saved per caller, and light polling of a job."""
from __future__ import annotations

import gzip
import io
import json

import pytest
from PIL import Image

from imageflow.messages import Result
from services.image_handler.app import create_app

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789ab"


def png(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (0, 128, 255)).save(buf, "PNG")
    return buf.getvalue()


def make_app(tmp_path, **config):
    return create_app({"data_dir": tmp_path / "data", "public_base_url": "https://imageflow.example", **config})


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def client(app):
    return app.test_client()


def as_(key):
    return {"Authorization": f"Bearer {key}"}


# -- POST /api/v1/operations/validate ---------------------------------------------------------

def test_valid_operations_come_back_resolved(client):
    response = client.post("/api/v1/operations/validate", json={"operations": [{"op": "resize", "width": 800},
                                                                               {"op": "format", "format": "jpeg"}]})
    assert response.status_code == 200
    resize, fmt = response.json["operations"]
    assert resize["op"] == "resize" and resize["width"] == 800 and resize["fit"] == "contain"
    assert fmt["format"] == "jpeg"


def test_a_preset_comes_back_as_its_operations(client):
    response = client.post("/api/v1/operations/validate", json={"preset": "compress"})
    assert response.status_code == 200
    assert response.json["operations"][0]["op"] == "format" and response.json["operations"][0]["quality"] == 50


def test_a_refused_setting_names_its_step_from_1_and_its_field(client):
    response = client.post("/api/v1/operations/validate", json={"operations": [
        {"op": "grayscale"}, {"op": "format", "format": "png", "background": "blurple"}]})
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "invalid_operations"
    assert error["message"].startswith("step 2 (format): background ")
    [detail] = error["details"]
    assert (detail["step"], detail["index"], detail["op"], detail["field"]) == (2, 1, "format", "background")


def test_an_unknown_preset_and_a_malformed_body_are_refused(client):
    response = client.post("/api/v1/operations/validate", json={"preset": "nope"})
    assert response.status_code == 422 and response.json["error"]["details"][0]["field"] == "preset"
    assert client.post("/api/v1/operations/validate", data="[1", content_type="application/json").status_code == 400
    assert client.post("/api/v1/operations/validate", json={}).status_code == 400


def test_validating_creates_nothing(app, client):
    client.post("/api/v1/operations/validate", json={"operations": [{"op": "grayscale"}]})
    assert app.extensions["imageflow"].backends.jobs.list_jobs() == []


# -- /api/v1/presets ------------------------------------------------------------------------

def test_presets_are_saved_listed_replaced_and_deleted(client):
    assert client.get("/api/v1/presets").json == {"presets": []}
    created = client.post("/api/v1/presets", json={"name": "Shop, small", "operations": [{"op": "resize", "width": 600}]})
    assert created.status_code == 201
    assert created.json["name"] == "Shop, small" and created.json["operations"][0]["fit"] == "contain"
    replaced = client.post("/api/v1/presets", json={"name": "Shop, small", "operations": [{"op": "grayscale"}]})
    assert replaced.status_code == 200
    [listed] = client.get("/api/v1/presets").json["presets"]
    assert listed["operations"] == [{"op": "grayscale"}] and listed["created_at"] == created.json["created_at"]
    assert client.delete("/api/v1/presets/Shop, small").status_code == 204
    assert client.delete("/api/v1/presets/Shop, small").status_code == 404
    assert client.get("/api/v1/presets").json == {"presets": []}


def test_a_preset_with_bad_steps_or_a_bad_name_is_refused(client):
    bad = client.post("/api/v1/presets", json={"name": "x", "operations": [{"op": "blur", "radius": -1}]})
    assert bad.status_code == 422 and bad.json["error"]["details"][0]["step"] == 1
    assert client.post("/api/v1/presets", json={"name": "", "operations": [{"op": "grayscale"}]}).status_code == 400
    assert client.post("/api/v1/presets", json={"name": "a" * 61, "operations": [{"op": "grayscale"}]}).status_code == 400
    assert client.post("/api/v1/presets", json={"name": "empty", "operations": []}).status_code == 422
    assert client.get("/api/v1/presets").json == {"presets": []}


def test_each_key_sees_only_its_own_presets(tmp_path):
    app = make_app(tmp_path, api_keys=f"alice={ALICE},bob={BOB}")
    try:
        client = app.test_client()
        assert client.get("/api/v1/presets").status_code == 401
        assert client.post("/api/v1/presets", headers=as_(ALICE),
                           json={"name": "Mine", "operations": [{"op": "grayscale"}]}).status_code == 201
        assert [p["name"] for p in client.get("/api/v1/presets", headers=as_(ALICE)).json["presets"]] == ["Mine"]
        assert client.get("/api/v1/presets", headers=as_(BOB)).json["presets"] == []
        assert client.delete("/api/v1/presets/Mine", headers=as_(BOB)).status_code == 404
        # Checking operations needs no key, as reading the schema needs none.
        assert client.post("/api/v1/operations/validate", json={"preset": "web"}).status_code == 200
    finally:
        app.extensions["imageflow"].backends.close()


# -- GET /api/v1/jobs/<job_id>: ETag, 304, gzip --------------------------------------------

def _job(client, n=12):
    files = [(io.BytesIO(png()), f"photo-{i}.png") for i in range(n)]
    response = client.post("/api/v1/jobs", data={"files": files, "preset": "thumbnail"},
                           content_type="multipart/form-data")
    assert response.status_code == 202
    return response.json


def test_an_unchanged_job_answers_304_and_a_changed_one_a_new_body(app, client):
    job = _job(client)
    first = client.get(f"/api/v1/jobs/{job['job_id']}")
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag
    again = client.get(f"/api/v1/jobs/{job['job_id']}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""

    image = job["images"][0]
    app.extensions["imageflow"].backends.jobs.record_results([Result(
        job_id=job["job_id"], image_id=image["image_id"], status="succeeded",
        output_path=f"{job['job_id']}/output/{image['image_id']}-photo-0.png", content_type="image/png",
        width=10, height=10, bytes=99)])
    changed = client.get(f"/api/v1/jobs/{job['job_id']}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json["succeeded"] == 1
    assert changed.headers["ETag"] != etag


def test_the_job_view_is_gzipped_for_clients_that_accept_it(client):
    job = _job(client)
    plain = client.get(f"/api/v1/jobs/{job['job_id']}")
    zipped = client.get(f"/api/v1/jobs/{job['job_id']}", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in plain.headers
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert len(zipped.data) < len(plain.data) / 3
    assert json.loads(gzip.decompress(zipped.data)) == plain.json
    # The gzipped body has its own validator, and it revalidates too.
    assert client.get(f"/api/v1/jobs/{job['job_id']}", headers={"Accept-Encoding": "gzip",
                      "If-None-Match": zipped.headers["ETag"]}).status_code == 304


def test_the_pages_of_a_job_s_images_are_gzipped_and_revalidate_too(client):
    # A big job's page polls them while it runs: 100 images are ~50 KB of JSON, ~6 KB gzipped.
    job = _job(client, n=30)
    url = f"/api/v1/jobs/{job['job_id']}/images?limit=25"
    plain = client.get(url)
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and len(zipped.data) < len(plain.data) / 3
    assert json.loads(gzip.decompress(zipped.data)) == plain.json and len(plain.json["images"]) == 25
    assert client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]}).status_code == 304


def test_errors_and_other_routes_keep_their_plain_answers(client):
    missing = client.get("/api/v1/jobs/" + "0" * 32, headers={"Accept-Encoding": "gzip"})
    assert missing.status_code == 404 and "ETag" not in missing.headers and "Content-Encoding" not in missing.headers
    operations = client.get("/api/v1/operations", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in operations.headers
