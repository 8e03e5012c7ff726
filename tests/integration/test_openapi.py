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
