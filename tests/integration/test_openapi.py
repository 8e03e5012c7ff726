"""The OpenAPI document (GET /api/v1/openapi.json) against the routes that really exist and
the bodies the API really validates."""
from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import validate

from services.image_handler.app import create_app
from services.image_handler.openapi import openapi_path

# The web page's routes (served HTML and assets), not the API.
PAGE_ENDPOINTS = {"index", "job_page", "jobs_page", "assets", "top_level_file"}


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "api_keys": "alice=k-alice-0123456789abcdef"})
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def spec(app):
    response = app.test_client().get("/api/v1/openapi.json")  # no key: the document is public
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    assert spec["security"] == [{"apiKey": []}], "keys are required on this server"


def test_every_route_is_documented_and_every_documented_route_exists(app, spec):
    served = {(openapi_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              if rule.endpoint not in PAGE_ENDPOINTS for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served - documented == set(), "add the new route to services/image_handler/openapi.py ROUTES"
    assert documented - served == set(), "the document names routes that do not exist"


def test_public_routes_are_marked_and_really_need_no_key(app, spec):
    client = app.test_client()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == [] and "{" not in path:
                assert client.open(path, method=method.upper()).status_code != 401, path
    assert client.get("/api/v1/jobs").status_code == 401
    assert "401" in spec["paths"]["/api/v1/jobs"]["get"]["responses"]


def _resolver(spec):
    return {"$ref": "#/components/schemas/Operations", "components": spec["components"]}


def test_the_operations_schema_is_the_engines_and_validates_what_the_api_accepts(app, spec):
    schema = _resolver(spec)
    good = [{"op": "resize", "width": 100, "fit": "cover"}, {"op": "format", "format": "webp", "quality": 80}]
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"op": "melt"}], schema)
    served = app.test_client().get("/api/v1/operations").get_json()["schema"]
    assert set(served["$defs"]) <= set(spec["components"]["schemas"])


def test_rerun_body_schema_matches_the_route(spec):
    body = spec["paths"]["/api/v1/jobs/{job_id}/rerun"]["post"]["requestBody"]["content"]["application/json"]
    rerun = spec["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert rerun["properties"]["only"]["enum"] == ["all", "failed", "succeeded"]
    answer = spec["paths"]["/api/v1/jobs/{job_id}/rerun"]["post"]["responses"]["202"]["content"]
    created = spec["components"]["schemas"][answer["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert {"job_id", "parent_job_id"} <= set(created["required"])


def test_the_estimate_answer_is_documented_as_served(app, spec, tmp_path):
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (120, 80), (1, 2, 3)).save(buf, "PNG")
    client = app.test_client()
    answer = client.post("/api/v1/jobs", headers={"Authorization": "Bearer k-alice-0123456789abcdef"},
                         data={"files": [(io.BytesIO(buf.getvalue()), "a.png")], "estimate": "true",
                               "preset": "web"}, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    ref = spec["paths"]["/api/v1/jobs"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(answer.get_json(), {**ref, "components": spec["components"]})


def test_a_job_answer_matches_its_documented_schema(app, spec):
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (120, 80), (1, 2, 3)).save(buf, "PNG")
    client = app.test_client()
    key = {"Authorization": "Bearer k-alice-0123456789abcdef"}
    created = client.post("/api/v1/jobs", headers=key, data={"files": [(io.BytesIO(buf.getvalue()), "a.png")]},
                          content_type="multipart/form-data")
    paths = spec["paths"]

    def check(body, path, method, status):
        ref = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
        jsonschema.validate(body, {**ref, "components": spec["components"]})

    check(created.get_json(), "/api/v1/jobs", "post", "202")
    job_id = created.get_json()["job_id"]
    check(client.get(f"/api/v1/jobs/{job_id}", headers=key).get_json(), "/api/v1/jobs/{job_id}", "get", "200")
    check(client.get("/api/v1/jobs", headers=key).get_json(), "/api/v1/jobs", "get", "200")
    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=key)
    check(cancelled.get_json(), "/api/v1/jobs/{job_id}/cancel", "post", "202")
    missing = client.get(f"/api/v1/jobs/{'0' * 32}", headers=key)
    check(missing.get_json(), "/api/v1/jobs/{job_id}", "get", "404")


def test_an_images_bytes_are_documented_with_their_own_type(app, spec):
    """Schemathesis (tests/e2e/test_api_contract.py) found GET .../output answering image/png where
    the document said application/octet-stream only."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (12, 8), (1, 2, 3)).save(buf, "PNG")
    client = app.test_client()
    key = {"Authorization": "Bearer k-alice-0123456789abcdef"}
    created = client.post("/api/v1/jobs", headers=key, data={"files": [(io.BytesIO(buf.getvalue()), "a.png")]},
                          content_type="multipart/form-data").get_json()
    answer = client.get(f"/api/v1/jobs/{created['job_id']}/images/{created['images'][0]['image_id']}/input",
                        headers=key)
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    for which in ("input", "output"):
        content = spec["paths"][f"/api/v1/jobs/{{job_id}}/images/{{image_id}}/{which}"]["get"]["responses"]["200"]
        assert set(content["content"]) == {"image/*", "application/octet-stream"}


def test_every_request_body_refuses_fields_it_does_not_name(spec):
    """The document says what the server does: a field no model names is a 400 unknown_field."""
    schemas = spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for media in operation.get("requestBody", {}).get("content", {}).values():
                model = schemas[media["schema"]["$ref"].rsplit("/", 1)[-1]]
                for member in [schemas[ref["$ref"].rsplit("/", 1)[-1]] for ref in model.get("anyOf", [])] or [model]:
                    assert member["additionalProperties"] is False, (method, path)
                assert "400" in operation["responses"], (method, path)


def test_the_answers_the_server_gives_are_documented(spec):
    """201 for an open job, 200 (not 202) for /files, 200 with a body for an upload PUT (issue 22)."""
    paths = spec["paths"]
    assert paths["/api/v1/jobs"]["post"]["responses"]["201"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/OpenedJob"}
    assert set(paths["/api/v1/jobs/{job_id}/files"]["post"]["responses"]) >= {"200", "400", "409"}
    assert "202" not in paths["/api/v1/jobs/{job_id}/files"]["post"]["responses"]
    assert "200" in paths["/api/v1/jobs/{job_id}/uploads/{image_id}"]["put"]["responses"]
    assert "304" in paths["/api/v1/jobs/{job_id}"]["get"]["responses"]
