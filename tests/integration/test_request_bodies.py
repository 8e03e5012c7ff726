"""Issue 22: a field no route knows is refused (400 unknown_field, naming it and the closest known
name) instead of ignored, and JSON that does not parse is 400 invalid_json, on every route that
takes a body (services/image_handler/bodies.py)."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (0, 128, 255)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def open_job(client) -> str:
    created = client.post("/api/v1/jobs", json={"open": True, "preset": "web"})
    assert created.status_code == 201, created.json
    return created.json["job_id"]


def test_a_typo_in_a_form_field_is_refused_and_nothing_is_created(client):
    """`-F 'operation=[...]'` (missing s) was answered 202 and rendered full-size copies."""
    response = client.post("/api/v1/jobs", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(png()), "a.png")], "operation": json.dumps([{"op": "resize", "width": 100}])})
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "unknown_field"
    assert error["message"] == "unknown field `operation`; did you mean `operations`?"
    assert error["details"] == [{"field": "operation", "did_you_mean": "operations"}]
    assert client.get("/api/v1/jobs").json["jobs"] == []


def test_the_same_form_with_the_right_name_is_accepted(client):
    response = client.post("/api/v1/jobs", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(png()), "a.png")], "operations": json.dumps([{"op": "resize", "width": 100}])})
    assert response.status_code == 202, response.json
    assert client.get(f"/api/v1/jobs/{response.json['job_id']}").json["operations"][0]["width"] == 100


def test_an_unknown_file_field_is_refused(client):
    response = client.post("/api/v1/jobs", content_type="multipart/form-data",
                           data={"file": [(io.BytesIO(png()), "a.png")]})
    assert response.status_code == 400
    assert response.json["error"]["message"] == "unknown field `file`; did you mean `files`?"


def test_with_no_close_name_the_message_lists_the_known_ones(client):
    response = client.post("/api/v1/operations/validate", json={"preset": "web", "zzz": 1})
    assert response.status_code == 400 and response.json["error"]["code"] == "unknown_field"
    assert response.json["error"]["message"] == \
        "unknown field `zzz`; the known fields are `operations`, `preset`"
    assert response.json["error"]["details"] == [{"field": "zzz", "did_you_mean": None}]


def _unknown(response, field: str, suggestion: str | None):
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "unknown_field"
    assert {"field": field, "did_you_mean": suggestion} in response.json["error"]["details"]


def test_every_route_with_a_body_refuses_unknown_fields(client, open_job):
    job = f"/api/v1/jobs/{open_job}"
    _unknown(client.post("/api/v1/jobs", json={"urls": ["https://example.com/a.jpg"], "preest": "web"}),
             "preest", "preset")
    _unknown(client.post("/api/v1/jobs", json={"open": True, "webhook": "https://example.com/hook"}),
             "webhook", "webhook_url")
    _unknown(client.patch(job, json={"nmae": "shoes"}), "nmae", "name")
    _unknown(client.post(f"{job}/rerun", json={"only": "failed", "operation": []}), "operation", "operations")
    _unknown(client.post("/api/v1/operations/validate", json={"operation": []}), "operation", "operations")
    _unknown(client.post("/api/v1/presets", json={"name": "Mine", "operations": [], "preset": "web"}),
             "preset", None)
    _unknown(client.post(f"{job}/files", content_type="multipart/form-data",
                         data={"files": [(io.BytesIO(png()), "a.png")], "fies": "x"}), "fies", "files")
    _unknown(client.post(f"{job}/files", json={"files": [{"filename": "a.png", "bytes": 10}], "file": []}),
             "file", "files")
    _unknown(client.post(f"{job}/files", json={"files": [{"filename": "a.png", "byte": 10, "bytes": 10}]}),
             "files[0].byte", "files[0].bytes")
    assert client.get(job).json["total"] == 0 and client.get(job).json["name"] is None


@pytest.mark.parametrize("method, path", [("post", "/api/v1/jobs"), ("patch", "{job}"), ("post", "{job}/rerun"),
                                          ("post", "{job}/files"), ("post", "/api/v1/operations/validate"),
                                          ("post", "/api/v1/presets")])
def test_malformed_json_is_400_invalid_json(client, open_job, method, path):
    """It was 415 "wrong media type" on POST /jobs, and a bare malformed_request elsewhere."""
    response = getattr(client, method)(path.format(job=f"/api/v1/jobs/{open_job}"), data='{"urls": [',
                                       content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_json"
    assert response.json["error"]["message"].startswith("the body is not valid JSON: ")


def test_a_json_object_without_urls_or_open_is_400_not_415(client):
    response = client.post("/api/v1/jobs", json={"preset": "web"})
    assert response.status_code == 400 and response.json["error"]["code"] == "malformed_request"
    assert client.post("/api/v1/jobs", json=["https://example.com/a.jpg"]).status_code == 400


def test_what_the_cli_and_the_page_send_is_accepted(client, open_job):
    """The field names the CLI (imageflow_cli) and the web page (frontend/src/lib) send."""
    job = f"/api/v1/jobs/{open_job}"
    rerun_body = {"only": "all", "operations": [{"op": "grayscale"}], "preset": None, "email": "a@example.com",
                  "webhook_url": "https://example.com/hook", "name": "again"}
    # a rerun of a job still open is a 409: the body itself was accepted
    assert client.post(f"{job}/rerun", json=rerun_body).json["error"]["code"] == "job_active"
    opened = client.post("/api/v1/jobs", json={"open": True, "operations": [{"op": "grayscale"}],
                                               "email": "a@example.com", "name": "n", "webhook_url":
                                               "https://example.com/hook"})
    assert opened.status_code == 201
    form = {"preset": "web", "email": "a@example.com", "name": "n", "webhook_url": "https://example.com/hook",
            "open": "true"}
    assert client.post("/api/v1/jobs", data=form, content_type="multipart/form-data").status_code == 201
    estimate = client.post("/api/v1/jobs", content_type="multipart/form-data",
                           data={"preset": "web", "estimate": "true", "files": [(io.BytesIO(png()), "a.png")]})
    assert estimate.status_code == 200 and estimate.json["estimate"] is True
    assert client.post(f"{job}/files", content_type="multipart/form-data",
                       data={"files": [(io.BytesIO(png()), "a.png")]}).status_code == 200
    assert client.post(f"{job}/close", json={}).status_code == 200


# -- what Schemathesis found (tests/e2e/test_api_contract.py), kept as explicit cases ------------
@pytest.mark.parametrize("option", ["webhook_secret", "email", "webhook_url", "name", "preset"])
def test_a_job_option_of_the_wrong_type_is_400_not_500(client, open_job, option):
    """{"open": true, "webhook_secret": false} was a 500: the options were used as strings unchecked."""
    for path, body in [("/api/v1/jobs", {"open": True}), ("/api/v1/jobs", {"urls": ["https://example.com/a.jpg"]}),
                       (f"/api/v1/jobs/{open_job}/rerun", {})]:
        response = client.post(path, json={**body, option: False})
        assert response.status_code == 400, (path, response.json)
        error = response.json["error"]
        assert error["code"] == "malformed_request" and error["details"] == [{"field": option}]
        assert error["message"].startswith(option)


def test_the_fields_in_the_readme_and_api_docs_are_ones_the_server_takes():
    """Every `-F name=` and every key of a one-line `-d '{...}'` in README.md and docs/api.md is a field
    of some request body (the docs' own unknown-field example excepted)."""
    import re
    from pathlib import Path

    from services.image_handler import openapi
    from services.image_handler.bodies import field_names
    root = Path(__file__).resolve().parents[2]
    text = (root / "README.md").read_text() + (root / "docs" / "api.md").read_text()
    multipart = field_names(openapi.MultipartJob) | field_names(openapi.MultipartFiles)
    json_fields = set().union(*(field_names(m) for m in (openapi.JsonJob, openapi.RerunRequest, openapi.RenameRequest,
                                                          openapi.ValidateRequest, openapi.PresetRequest,
                                                          openapi.DirectUploadRequest)))
    form_names = set(re.findall(r"-F '?([a-z_]+)=", text)) - {"operation"}
    assert form_names and form_names <= multipart, form_names - multipart
    bodies = [json.loads(body) for body in re.findall(r"-d '(\{.*\})'", text)]
    assert bodies and all(set(body) <= json_fields for body in bodies), bodies
