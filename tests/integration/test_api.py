"""image-handler's REST API over the real local adapters (Flask test client)."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from imageflow.bus.sqlite import SqliteBus
from imageflow.messages import JobSubmitted, Result


def png(size=(64, 48), color=(0, 128, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app_config():
    return {"max_upload_bytes": 200_000, "max_files_per_job": 5, "max_request_bytes": 2_000_000}


def post(client, files, **data):
    payload = {"files": [(io.BytesIO(content), name) for name, content in files], **data}
    return client.post("/api/v1/jobs", data=payload, content_type="multipart/form-data")


def test_create_job_stores_originals_and_announces_it(app, client, tmp_path):
    response = post(client, [("a.png", png()), ("b.png", png((10, 10)))],
                    operations=json.dumps([{"op": "grayscale"}]), email="me@example.com")
    assert response.status_code == 202
    body = response.json
    assert body["status"] == "queued" and body["total"] == 2 and body["rejected"] == []
    assert body["links"]["results_page"] == f"https://imageflow.example/jobs/{body['job_id']}"
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{body['job_id']}")
    backends = app.extensions["imageflow"].backends
    assert len(backends.blobs.list(f"{body['job_id']}/input/")) == 2
    [message] = backends.bus.pull("imageflow-jobs-im", max_messages=5)
    assert JobSubmitted.decode(message.data).job_id == body["job_id"]


def test_status_shows_each_image(client):
    job_id = post(client, [("a.png", png())], preset="thumbnail").json["job_id"]
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["status"] == "queued" and status["pending"] == 1 and status["preset"] == "thumbnail"
    [image] = status["images"]
    assert image["status"] == "queued" and image["output_url"] is None
    assert client.get(image["input_url"].replace("http://localhost", "")).data == png()
    output = client.get(f"/api/v1/jobs/{job_id}/images/{image['image_id']}/output")
    assert output.status_code == 404 and output.json["error"]["code"] == "output_not_ready"


def test_a_bad_file_does_not_sink_the_good_ones(client):
    response = post(client, [("good.png", png()), ("fake.png", b"GIF89a but not really"),
                             ("huge.png", png((2000, 2000), None) + b"\0" * 200_001)])
    assert response.status_code == 202
    rejected = {r["filename"]: r["error"] for r in response.json["rejected"]}
    assert set(rejected) == {"fake.png", "huge.png"}
    assert rejected["huge.png"]["code"] == "file_too_large"
    assert rejected["fake.png"]["code"] == "unsupported_image"
    assert [i["filename"] for i in response.json["images"]] == ["good.png"]


def test_only_bad_files_is_415_naming_each(client):
    response = post(client, [("a.txt", b"hello"), ("b.jpg", b"\xff\xd8\xff nothing")])
    assert response.status_code == 415
    assert response.json["error"]["code"] == "no_valid_images"
    assert {d["filename"] for d in response.json["error"]["details"]} == {"a.txt", "b.jpg"}


def test_hostile_filenames_never_become_paths(app, client):
    response = post(client, [("../../../etc/passwd.png", png()), ("a\tb\x01<script>.png", png())])
    job_id = response.json["job_id"]
    paths = app.extensions["imageflow"].backends.blobs.list(f"{job_id}/")
    assert len(paths) == 2
    assert all(p.startswith(f"{job_id}/input/") and ".." not in p and "\t" not in p and "<" not in p for p in paths)
    # Names come back as data: no directories, no control characters.
    assert [i["filename"] for i in response.json["images"]] == ["passwd.png", "a b <script>.png"]


@pytest.mark.parametrize("data, status, code, words", [
    ({"operations": "[{not json"}, 400, "malformed_operations", "not valid JSON"),
    ({"operations": json.dumps([{"op": "resize", "width": 0}])}, 422, "invalid_operations", "width"),
    ({"operations": json.dumps([{"op": "explode"}])}, 422, "invalid_operations", "explode"),
    ({"preset": "nope"}, 422, "invalid_operations", "nope"),
    ({"email": "x@example.com\r\nBcc: victim@example.com"}, 400, "invalid_email", "email"),
    ({"email": "not-an-address"}, 400, "invalid_email", "email"),
    ({"webhook_url": "ftp://example.com/hook"}, 400, "invalid_webhook_url", "http"),
])
def test_invalid_requests_are_refused_before_storing(app, client, data, status, code, words):
    response = post(client, [("a.png", png())], **data)
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code
    assert words in response.json["error"]["message"]
    assert app.extensions["imageflow"].backends.blobs.list("") == []


def test_too_many_files(client):
    response = post(client, [(f"{i}.png", png()) for i in range(6)])
    assert response.status_code == 413 and response.json["error"]["code"] == "too_many_files"


def test_request_over_the_limit_is_413(client):
    response = post(client, [("big.png", b"\0" * 2_100_000)])
    assert response.status_code == 413 and response.json["error"]["code"] == "request_too_large"


def test_not_multipart_and_no_files(client):
    files_as_json = client.post("/api/v1/jobs", json={"files": []})  # a field only multipart has
    assert files_as_json.status_code == 400 and files_as_json.json["error"]["code"] == "unknown_field"
    assert client.post("/api/v1/jobs", data=b"files", content_type="text/plain").status_code == 415
    response = client.post("/api/v1/jobs", data={"preset": "web"}, content_type="multipart/form-data")
    assert response.status_code == 400 and response.json["error"]["code"] == "no_files"


@pytest.mark.parametrize("path", ["/api/v1/jobs/0123456789abcdef0123456789abcdef", "/api/v1/jobs/..%2f..%2fetc",
                                  "/api/v1/jobs/x/archive.zip", "/api/v1/jobs/x/images/y/input"])
def test_unknown_jobs_are_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.json["error"]["code"] in ("job_not_found", "not_found")


def test_archive_and_outputs_after_results(app, client):
    job_id = post(client, [("a.png", png()), ("b.png", png())]).json["job_id"]
    backends = app.extensions["imageflow"].backends
    images = backends.jobs.list_images(job_id)
    assert client.get(f"/api/v1/jobs/{job_id}/archive.zip").status_code == 404
    out = f"{job_id}/output/{images[0].image_id}-a.png"
    backends.blobs.put(out, png((5, 5)), "image/png")
    backends.jobs.record_results([
        Result(job_id=job_id, image_id=images[0].image_id, status="succeeded", output_path=out,
               content_type="image/png", width=5, height=5, bytes=10),
        Result(job_id=job_id, image_id=images[1].image_id, status="failed", error="cannot decode")])
    status = client.get(f"/api/v1/jobs/{job_id}").json
    assert status["status"] == "completed_with_errors" and status["succeeded"] == 1 and status["failed"] == 1
    failed = client.get(f"/api/v1/jobs/{job_id}/images/{images[1].image_id}/output")
    assert failed.status_code == 404 and "cannot decode" in failed.json["error"]["message"]
    got = client.get(f"/api/v1/jobs/{job_id}/images/{images[0].image_id}/output")
    assert got.status_code == 200 and got.mimetype == "image/png" and got.data == png((5, 5))
    archive = client.get(f"/api/v1/jobs/{job_id}/archive.zip")
    assert archive.status_code == 200 and archive.mimetype == "application/zip"
    import zipfile
    assert zipfile.ZipFile(io.BytesIO(archive.data)).namelist() == ["a.png"]


def test_health_readiness_metrics_and_schema(client):
    assert client.get("/healthz").json["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and set(ready.json["checks"]) == {"blobstore", "jobstore", "bus"}
    post(client, [("a.png", png())])
    assert b"imageflow_jobs_created_total" in client.get("/metrics").data
    ops = client.get("/api/v1/operations").json
    assert {"thumbnail", "web", "compress"} <= set(ops["presets"]) and ops["limits"]["max_files_per_job"] == 5
    assert ops["schema"]


def test_readyz_names_a_broken_backend(app, client):
    app.extensions["imageflow"].backends.bus.close()
    bus = app.extensions["imageflow"].backends.bus
    bus.check = lambda: (_ for _ in ()).throw(RuntimeError("bus down"))
    response = client.get("/readyz")
    assert response.status_code == 503 and "bus" in response.json["failed"]


def test_unknown_routes_and_methods_are_json(client):
    assert client.delete("/healthz").status_code == 405
    assert client.get("/api/v1/nothing").json["error"]["code"] == "not_found"


def test_the_formats_pillow_reads_are_taken_and_listed(client):
    """Issue 26: TGA, JPEG 2000, ICO/CUR, Netpbm, SGI, DDS and PSD/PSB uploads are accepted with
    their sniffed type, and GET /operations lists their types for the page."""
    from tests.format_samples import samples
    files = [(f"file.{name}", data) for name, (data, _, _) in samples().items()]
    for start in range(0, len(files), 5):      # the app_config's MAX_FILES_PER_JOB
        chosen = dict(files[start:start + 5])
        response = post(client, list(chosen.items()))
        assert response.status_code == 202 and response.json["rejected"] == [], response.json
        assert {image["filename"] for image in response.json["images"]} == set(chosen)
    accepted = client.get("/api/v1/operations").json["limits"]["accepted_types"]
    for mime in ("image/x-tga", "image/jp2", "image/x-icon", "image/x-portable-anymap", "image/sgi",
                 "image/vnd-ms.dds", "image/vnd.adobe.photoshop"):
        assert mime in accepted


@pytest.mark.parametrize("url, shown", [
    ("http://127.0.0.2/hook", "127.0.0.2"), ("http://[::1]:8080/hook", "::1"),
    ("http://169.254.169.254/computeMetadata/v1/", "169.254.169.254"), ("https://10.1.2.3/h", "10.1.2.3"),
    ("http://192.168.0.10/h", "192.168.0.10"), ("http://127.1/h", "127.1"), ("http://2130706433/h", "2130706433"),
    ("http://[::ffff:172.16.0.1]/h", "172.16.0.1"), ("http://localhost:9000/h", "localhost"),
    ("http://metadata.google.internal/h", "metadata.google.internal"), ("http://0.0.0.0/h", "0.0.0.0"),
])
def test_a_webhook_to_an_internal_address_is_refused_at_creation(app, client, url, shown):
    """The delivery's address rules, applied when the job is created: 400 naming the address (it
    used to be accepted, then refused at every delivery attempt)."""
    response = post(client, [("a.png", png())], webhook_url=url)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_webhook_url"
    assert shown in response.json["error"]["message"] and "public addresses" in response.json["error"]["message"]
    assert app.extensions["imageflow"].backends.blobs.list("") == []


def test_webhook_addresses_follow_the_fetch_allowances(make_app):
    """FETCH_ALLOW_CIDRS (tests' receivers on 127.0.0.1) lets exactly those addresses through, as at
    delivery; public addresses and host names (resolved at each delivery) are accepted."""
    client = make_app(fetch_allow_cidrs="127.0.0.1/32").test_client()
    assert post(client, [("a.png", png())], webhook_url="http://127.0.0.1:8123/hook").status_code == 202
    assert post(client, [("a.png", png())], webhook_url="http://127.0.0.2:8123/hook").status_code == 400
    assert post(client, [("a.png", png())], webhook_url="https://93.184.215.14/hook").status_code == 202
    assert post(client, [("a.png", png())], webhook_url="https://hooks.example/imageflow").status_code == 202


def test_outputs_have_one_name_in_the_zip_the_downloads_and_the_cli(app, client):
    """Two photos of one name, each with two variants: the zip, each download and the CLI's
    ``download`` name every output alike (domain.output_name), a repeated name numbered."""
    import re
    import zipfile

    from imageflow import domain
    from imageflow_cli import _output_name as cli_name

    job_id = post(client, [("photo.png", png()), ("photo.png", png())]).json["job_id"]
    backends = app.extensions["imageflow"].backends
    for image in backends.jobs.list_images(job_id):
        stem = domain.output_stem(job_id, image.image_id, image.filename)
        outputs = [{"path": domain.output_file(stem, "webp", variant), "content_type": "image/webp", "width": 5,
                    "height": 5, "bytes": 10, "variant": variant} for variant in ("w320", "w640")]
        for output in outputs:
            backends.blobs.put(output["path"], png((5, 5)), "image/webp")
        backends.jobs.record_results([Result(job_id=job_id, image_id=image.image_id, status="succeeded",
                                             output_path=outputs[0]["path"], content_type="image/webp",
                                             width=5, height=5, bytes=10, outputs=outputs)])
    archive = client.get(f"/api/v1/jobs/{job_id}/archive.zip")
    in_zip = zipfile.ZipFile(io.BytesIO(archive.data)).namelist()
    assert sorted(in_zip) == ["photo-w320-2.webp", "photo-w320.webp", "photo-w640-2.webp", "photo-w640.webp"]
    used: set[str] = set()
    images = client.get(f"/api/v1/jobs/{job_id}/images").json["images"]
    by_cli = [cli_name(image, output, used) for image in images for output in image["outputs"]]
    assert by_cli == in_zip   # the same names, in the same order (the images' order)
    for image in images:
        for output in image["outputs"]:
            got = client.get(output["url"])
            name = re.search(r'filename="?([^";]+)', got.headers["Content-Disposition"])[1]
            assert got.status_code == 200 and name == f"photo-{output['variant']}.webp"
