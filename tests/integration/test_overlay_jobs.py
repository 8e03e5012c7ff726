"""Overlay through the API and the processor: the logo file is sent with the job in the
``overlay`` field, stored once under ``<job_id>/input/``, and composited by the processor;
a URL overlay is fetched under the URL-import rules, once per job."""
from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from imageflow import domain
from imageflow.messages import Result, Task
from imageflow.safe_http import FetchPolicy, parse_networks
from services.image_handler.app import create_app
from services.image_processor.processing import Processor
from tests.http_servers import ImageServer

GREY = (128, 128, 128)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


PHOTO = png(Image.new("RGB", (100, 80), GREY))
LOGO = png(Image.new("RGBA", (10, 10), (255, 0, 0, 255)))
OVERLAY_OP = {"op": "overlay", "image": "logo.png", "position": "northeast", "margin": 4}


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "max_upload_bytes": 200_000, "max_files_per_job": 5,
                      "max_request_bytes": 2_000_000})
    yield app
    app.extensions["imageflow"].backends.close()


def post(app, operations, overlays=(), files=(("a.png", PHOTO), ("b.png", PHOTO))):
    payload = {"files": [(io.BytesIO(data), name) for name, data in files],
               "operations": json.dumps(operations)}
    if overlays:
        payload["overlay"] = [(io.BytesIO(data), name) for name, data in overlays]
    return app.test_client().post("/api/v1/jobs", data=payload, content_type="multipart/form-data")


def tasks_of(app, job_id):
    jobs = app.extensions["imageflow"].backends.jobs
    return [Task(job_id=job_id, image_id=image.image_id, input_path=image.input_path,
                 output_path=domain.output_stem(job_id, image.image_id, image.filename),
                 operations=jobs.get_job(job_id).operations) for image in jobs.list_images(job_id)]


def output_image(blobs, result) -> Image.Image:
    return Image.open(io.BytesIO(blobs.get(result.output_path))).convert("RGB")


def test_an_uploaded_logo_is_stored_once_and_lands_on_every_image(app):
    response = post(app, [OVERLAY_OP], overlays=[("logo.png", LOGO)])
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    context = app.extensions["imageflow"]
    blobs = context.backends.blobs
    stored = [path for path in blobs.list(f"{job_id}/input/") if "/input/overlay-" in path]
    assert stored == [domain.overlay_path(job_id, "logo.png")] and blobs.get(stored[0]) == LOGO
    assert len(response.json["images"]) == 2                      # the logo is not an image of the job
    processor = Processor(context.settings, blobs, context.backends.bus)
    for task in tasks_of(app, job_id):
        result = processor.process(task)
        assert result.status == "succeeded", result.error
        image = output_image(blobs, result)
        assert image.getpixel((100 - 4 - 5, 4 + 5)) == (255, 0, 0)      # inside the logo, top right
        assert image.getpixel((100 - 4 - 11, 4 + 5)) == GREY            # just left of it
        assert result.choices["overlay"]["box"] == [100 - 4 - 10, 4, 100 - 4, 14]
        context.backends.jobs.record_results([Result.decode(result.encode())])   # as the coordinator folds it
    # the API and the report show the placeholders and the choices
    client = app.test_client()
    view = client.get(f"/api/v1/jobs/{job_id}").json
    for image in view["images"]:
        assert image["dominant_color"] == "#808080" and image["blurhash"]
        assert image["choices"]["overlay"]["image"] == "logo.png"
    report = client.get(f"/api/v1/jobs/{job_id}/report.csv").data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(report)))
    assert rows[0]["dominant_color"] == "#808080" and rows[0]["blurhash"] == view["images"][0]["blurhash"]
    assert json.loads(rows[0]["choices"])["overlay"]["copies"] == 1


def test_an_overlay_named_but_not_sent_is_422_and_nothing_is_stored(app):
    response = post(app, [OVERLAY_OP])
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "invalid_operations" and "'logo.png' was not sent" in error["message"]
    assert error["details"][0]["field"] == "image"
    assert app.extensions["imageflow"].backends.blobs.list("") == []


def test_an_overlay_sent_but_not_named_or_not_an_image_is_refused(app):
    unused = post(app, [{"op": "grayscale"}], overlays=[("logo.png", LOGO)])
    assert unused.status_code == 422 and "not named by any overlay operation" in unused.json["error"]["message"]
    broken = post(app, [OVERLAY_OP], overlays=[("logo.png", b"%PDF-1.4 not a logo")])
    assert broken.status_code == 415 and broken.json["error"]["code"] == "invalid_overlay"
    assert "PDF" in broken.json["error"]["message"]


@pytest.fixture
def logo_server():
    server = ImageServer({"/logo.png": (LOGO, "image/png")})
    yield server
    server.stop()


def test_a_url_overlay_is_fetched_once_per_job_under_the_import_rules(app, logo_server, loopback_only):
    url = logo_server.url("/logo.png")
    response = post(app, [{**OVERLAY_OP, "image": url}])
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    context = app.extensions["imageflow"]
    policy = FetchPolicy(timeout=5.0, allow=parse_networks("127.0.0.1/32"))
    processor = Processor(context.settings, context.backends.blobs, context.backends.bus, fetch_policy=policy)
    for task in tasks_of(app, job_id):
        result = processor.process(task)
        assert result.status == "succeeded", result.error
        assert output_image(context.backends.blobs, result).getpixel((100 - 4 - 5, 9)) == (255, 0, 0)
    assert logo_server.hits == ["/logo.png"]                   # stored for the job after the first fetch
    assert context.backends.blobs.get(domain.overlay_path(job_id, url)) == LOGO


def test_a_url_overlay_that_cannot_be_fetched_fails_the_image_with_the_reason(app, logo_server):
    response = post(app, [{**OVERLAY_OP, "image": logo_server.url("/logo.png")}], files=[("a.png", PHOTO)])
    context = app.extensions["imageflow"]
    # the default policy: loopback addresses are not public, so the import rules refuse it
    processor = Processor(context.settings, context.backends.blobs, context.backends.bus)
    [task] = tasks_of(app, response.json["job_id"])
    result = processor.process(task)
    assert result.status == "failed" and "could not fetch the overlay" in result.error
    assert logo_server.hits == []


def test_an_open_job_takes_its_logo_when_it_is_opened_and_every_upload_gets_it(app):
    """Multipart ``open=true`` with the ``overlay`` file: stored before any image can render."""
    client = app.test_client()
    opened = client.post("/api/v1/jobs", content_type="multipart/form-data", data={
        "open": "true", "operations": json.dumps([OVERLAY_OP]), "overlay": [(io.BytesIO(LOGO), "logo.png")]})
    assert opened.status_code == 201, opened.json
    assert opened.json["status"] == "open"
    job_id = opened.json["job_id"]
    context = app.extensions["imageflow"]
    blobs = context.backends.blobs
    assert blobs.get(domain.overlay_path(job_id, "logo.png")) == LOGO
    added = client.post(opened.json["links"]["files"], content_type="multipart/form-data",
                        data={"files": [(io.BytesIO(PHOTO), "a.png")]})
    assert added.status_code == 200 and len(added.json["images"]) == 1
    processor = Processor(context.settings, blobs, context.backends.bus)
    [task] = tasks_of(app, job_id)
    result = processor.process(task)
    assert result.status == "succeeded", result.error
    assert output_image(blobs, result).getpixel((100 - 4 - 5, 4 + 5)) == (255, 0, 0)


def test_an_open_job_naming_a_logo_it_was_not_sent_is_422_and_takes_no_files_with_it(app):
    client = app.test_client()
    missing = client.post("/api/v1/jobs", json={"open": True, "operations": [OVERLAY_OP]})
    assert missing.status_code == 422 and "'logo.png' was not sent" in missing.json["error"]["message"]
    with_files = client.post("/api/v1/jobs", content_type="multipart/form-data", data={
        "open": "true", "operations": json.dumps([OVERLAY_OP]), "overlay": [(io.BytesIO(LOGO), "logo.png")],
        "files": [(io.BytesIO(PHOTO), "a.png")]})
    assert with_files.status_code == 400 and "links.files" in with_files.json["error"]["message"]
    assert app.extensions["imageflow"].backends.blobs.list("") == []


def test_an_estimate_renders_its_samples_with_the_logo_sent_with_it(app):
    payload = {"files": [(io.BytesIO(PHOTO), "a.png")], "operations": json.dumps([OVERLAY_OP]), "estimate": "true",
               "overlay": [(io.BytesIO(LOGO), "logo.png")]}
    answer = app.test_client().post("/api/v1/jobs", data=payload, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.json
    assert answer.json["accepted"] is True
    assert "error" not in answer.json["samples"][0], answer.json["samples"]
    assert answer.json["totals"]["predicted_bytes_out"] > 0
    assert app.extensions["imageflow"].backends.blobs.list("") == []          # an estimate stores nothing


def test_a_csv_job_takes_its_logo_in_the_same_request(app, logo_server):
    response = app.test_client().post(
        "/api/v1/jobs", content_type="multipart/form-data",
        data={"csv": (io.BytesIO(f"url\n{logo_server.url('/logo.png')}\n".encode()), "urls.csv"),
              "operations": json.dumps([OVERLAY_OP]), "overlay": [(io.BytesIO(LOGO), "logo.png")]})
    assert response.status_code == 202, response.json
    assert app.extensions["imageflow"].backends.blobs.get(domain.overlay_path(response.json["job_id"],
                                                                               "logo.png")) == LOGO


FOUR = tuple((f"p{i}.png", PHOTO) for i in range(4))


def url_overlay_processor(app):
    context = app.extensions["imageflow"]
    policy = FetchPolicy(timeout=30.0, allow=parse_networks("127.0.0.1/32"))
    return Processor(context.settings, context.backends.blobs, context.backends.bus, fetch_policy=policy)


@pytest.mark.parametrize("path, words", [("/gone.png", "404"), ("/page.html", "not a usable image")])
def test_a_failing_overlay_url_is_requested_once_and_fails_every_image_with_its_reason(app, logo_server, path, words):
    """A logo URL answering 404 (or a web page) was requested once per image (10,000 images:
    10,000 requests to that host); now once per job, and each image names the reason."""
    logo_server.files["/page.html"] = (b"<!doctype html><html>a page</html>", "text/html")
    response = post(app, [{**OVERLAY_OP, "image": logo_server.url(path)}], files=FOUR)
    processor = url_overlay_processor(app)
    results = [processor.process(task) for task in tasks_of(app, response.json["job_id"])]
    assert [r.status for r in results] == ["failed"] * 4
    assert all(words in r.error and logo_server.url(path) in r.error for r in results), results[0].error
    assert logo_server.hits == [path]
    assert not [p for p in app.extensions["imageflow"].backends.blobs.list("") if "/input/overlay-" in p]


def test_tasks_in_flight_share_one_download_of_a_url_overlay(app, logo_server):
    """The tasks in flight each downloaded the logo (16 downloads of an 18.8 MB logo, held whole in
    the processor's memory); now the first streams it to storage and the others wait for it."""
    response = post(app, [{**OVERLAY_OP, "image": logo_server.url("/held/logo.png")}], files=FOUR)
    processor = url_overlay_processor(app)
    tasks = tasks_of(app, response.json["job_id"])
    with ThreadPoolExecutor(len(tasks)) as pool:
        running = [pool.submit(processor.process, task) for task in tasks]
        deadline = time.monotonic() + 120
        while not (logo_server.holding == 1 and processor.overlay_fetches.waiting == len(tasks) - 1):
            assert time.monotonic() < deadline, (logo_server.holding, processor.overlay_fetches.waiting)
            time.sleep(0.02)
        assert logo_server.hits == ["/held/logo.png"]
        logo_server.release.set()
        results = [future.result(timeout=120) for future in running]
    assert [r.status for r in results] == ["succeeded"] * len(tasks), [r.error for r in results]
    assert logo_server.hits == ["/held/logo.png"]
    blobs = app.extensions["imageflow"].backends.blobs
    assert blobs.get(domain.overlay_path(response.json["job_id"], logo_server.url("/held/logo.png"))) == LOGO
