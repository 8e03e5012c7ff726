"""Jobs of any size (issue 12) over the real local adapters: open jobs filled by many requests,
paging through a job's images, streamed archive and report, previews, the limits' messages.

The image-handler runs as the Flask app; the interaction manager's coordinator and the
processor run in-process on the same data directory, driven message by message."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from imageflow import domain
from imageflow.links import LinkSigner
from imageflow.messages import JobCompleted, Task
from services.image_handler.app import create_app
from services.image_processor.job_gate import JobGate
from services.image_processor.processing import Processor
from services.interaction_manager.coordinator import Coordinator


def png(size=(64, 48), color=(0, 128, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "max_files_per_job": 6, "max_upload_bytes": 200_000,
                      "max_request_bytes": 2_000_000, "public_base_url": "https://imageflow.example"})
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stack(app):
    """The interaction manager's and the processor's handlers on the app's backends."""
    c = app.extensions["imageflow"]
    return Coordinator(c.settings, c.backends.jobs, c.backends.bus, c.backends.blobs), \
        Processor(c.settings, c.backends.blobs, c.backends.bus)


def idle_closing(coordinator: Coordinator) -> Coordinator:
    """The same manager with OPEN_JOB_IDLE_SECONDS=0 (its settings are read once, as in the service)."""
    return Coordinator(coordinator.settings.with_overrides(open_job_idle_seconds=0), coordinator.jobs,
                       coordinator.bus, coordinator.blobs)


def bus(app):
    return app.extensions["imageflow"].backends.bus


def topics(app):
    return app.extensions["imageflow"].settings.topics


def open_job(client, **fields):
    response = client.post("/api/v1/jobs", json={"open": True, "preset": "thumbnail", **fields})
    assert response.status_code == 201, response.json
    return response.json


def upload(client, job_id, files):
    payload = {"files": [(io.BytesIO(content), name) for name, content in files]}
    return client.post(f"/api/v1/jobs/{job_id}/files", data=payload, content_type="multipart/form-data")


def run_tasks(app, stack) -> list[Task]:
    """Process the tasks on the bus and fold their results, as the two services would. Images that
    joined an open job reach the bus through the manager (fair share: it releases them within the
    key's share on the job.submitted the upload sent), so that message is delivered first."""
    coordinator, processor = stack
    deliver_job_messages(app, stack)
    messages = bus(app).pull(topics(app).tasks_sub, max_messages=100)
    tasks = [Task.decode(m.data) for m in messages]
    coordinator.fold([processor.process(task) for task in tasks])
    for message in messages:
        message.ack()
    return tasks


def deliver_job_messages(app, stack) -> None:
    coordinator, _ = stack
    for message in bus(app).pull(topics(app).jobs_sub, max_messages=10):
        coordinator.handle_job_submitted(message)


def completions(app) -> list[JobCompleted]:
    return [JobCompleted.decode(m.data) for m in bus(app).pull(topics(app).notifications_sub, max_messages=10)]


def path_of(url: str) -> str:
    """The path and query of an absolute link the API returned (the test client takes paths)."""
    return "/" + url.split("/", 3)[3]


def test_an_open_job_processes_each_upload_at_once_and_completes_after_close(app, client, stack):
    created = open_job(client, email="me@example.com")
    job_id = created["job_id"]
    assert created["status"] == "open" and created["total"] == 0
    links = created["links"]
    assert links["files"].endswith(f"/api/v1/jobs/{job_id}/files") and links["close"].endswith("/close")
    assert links["results_page"] == f"https://imageflow.example/jobs/{job_id}"

    first = upload(client, job_id, [("a.png", png()), ("b.png", png((20, 20)))])
    assert first.status_code == 200 and [i["filename"] for i in first.json["images"]] == ["a.png", "b.png"]
    # Processing starts before the job is closed: the tasks are on the bus now.
    assert sorted(t.image_id for t in run_tasks(app, stack)) == sorted(i["image_id"] for i in first.json["images"])
    job = client.get(f"/api/v1/jobs/{job_id}").json
    assert (job["status"], job["succeeded"], job["total"]) == ("open", 2, 2)
    assert completions(app) == [], "an open job never completes"

    second = upload(client, job_id, [("c.png", png()), ("not-an-image.png", b"hello")])
    assert second.status_code == 200 and [i["filename"] for i in second.json["images"]] == ["c.png"]
    assert second.json["rejected"][0]["error"]["code"] == "unsupported_image"

    closed = client.post(f"/api/v1/jobs/{job_id}/close")
    assert closed.status_code == 200 and closed.json["status"] == "processing" and closed.json["total"] == 3
    deliver_job_messages(app, stack)
    assert completions(app) == []
    run_tasks(app, stack)
    [event] = completions(app)
    assert (event.job_id, event.status, event.total, event.succeeded, event.email) == \
        (job_id, "completed", 3, 3, "me@example.com")
    # Late files are refused, and nothing is announced twice.
    late = upload(client, job_id, [("d.png", png())])
    assert late.status_code == 409 and late.json["error"]["code"] == "job_closed"
    deliver_job_messages(app, stack)
    assert completions(app) == []


def test_a_job_closed_after_its_last_result_is_announced_by_the_manager(app, client, stack):
    job_id = open_job(client)["job_id"]
    upload(client, job_id, [("a.png", png())])
    run_tasks(app, stack)
    assert client.post(f"/api/v1/jobs/{job_id}/close").json["status"] == "completed"
    deliver_job_messages(app, stack)
    [event] = completions(app)
    assert event.job_id == job_id and event.total == 1
    assert client.post(f"/api/v1/jobs/{job_id}/close").status_code == 200  # closing twice is harmless
    deliver_job_messages(app, stack)
    assert completions(app) == []


def test_the_file_limit_counts_every_request_and_names_itself(client):
    job_id = open_job(client)["job_id"]
    assert upload(client, job_id, [(f"{i}.png", png()) for i in range(4)]).status_code == 200
    refused = upload(client, job_id, [(f"x{i}.png", png()) for i in range(3)])
    assert refused.status_code == 413 and refused.json["error"]["code"] == "too_many_files"
    assert "MAX_FILES_PER_JOB" in refused.json["error"]["message"] and "room for 2 more" in \
        refused.json["error"]["message"]
    assert client.get(f"/api/v1/jobs/{job_id}").json["total"] == 4


def test_uploads_to_unknown_or_not_open_jobs(client):
    assert upload(client, "0" * 32, [("a.png", png())]).status_code == 404
    small = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(png()), "a.png")]},
                        content_type="multipart/form-data").json
    refused = upload(client, small["job_id"], [("b.png", png())])
    assert refused.status_code == 409 and refused.json["error"]["code"] == "job_closed"


def test_an_idle_open_job_closes_itself(app, client, stack, tmp_path):
    coordinator, _ = stack
    job_id = open_job(client)["job_id"]
    upload(client, job_id, [("a.png", png())])
    coordinator.sweep()
    assert client.get(f"/api/v1/jobs/{job_id}").json["status"] == "open"  # within OPEN_JOB_IDLE_SECONDS
    coordinator = idle_closing(coordinator)
    coordinator.sweep(older_than_seconds=0)
    assert client.get(f"/api/v1/jobs/{job_id}").json["status"] == "processing"
    run_tasks(app, stack)
    [event] = completions(app)
    assert event.job_id == job_id and event.status == "completed"


def test_the_manager_publishes_tasks_an_upload_request_left_unpublished(app, client, stack):
    """A handler that died between recording the images and publishing their tasks."""
    coordinator, _ = stack
    jobs = app.extensions["imageflow"].backends.jobs
    job_id = open_job(client)["job_id"]
    images = upload(client, job_id, [("a.png", png()), ("b.png", png())]).json["images"]
    deliver_job_messages(app, stack)
    bus(app).pull(topics(app).tasks_sub, max_messages=10)[0].ack()  # as if only one had been published...
    with jobs.db.transaction() as conn:  # ...and none recorded
        conn.execute("UPDATE images SET tasked = 0 WHERE job_id = ?", (job_id,))
    coordinator.sweep(older_than_seconds=0)
    assert sorted(t.image_id for t in run_tasks(app, stack)) == sorted(i["image_id"] for i in images)
    coordinator.sweep(older_than_seconds=0)
    assert run_tasks(app, stack) == [], "published once"


def test_a_big_job_is_read_page_by_page(app, client, stack):
    jobs = app.extensions["imageflow"].backends.jobs
    job_id = open_job(client)["job_id"]
    upload(client, job_id, [(f"p{i}.png", png()) for i in range(5)])
    client.post(f"/api/v1/jobs/{job_id}/close")
    deliver_job_messages(app, stack)
    messages = bus(app).pull(topics(app).tasks_sub, max_messages=10)
    coordinator, processor = stack
    results = [processor.process(Task.decode(m.data)) for m in messages]
    results[1] = type(results[1])(job_id=job_id, image_id=results[1].image_id, status="failed", error="broken")
    coordinator.fold(results)

    page = client.get(f"/api/v1/jobs/{job_id}/images?limit=2").json
    names = [i["filename"] for i in page["images"]]
    while page["links"]["next"]:
        page = client.get(path_of(page["links"]["next"])).json
        names += [i["filename"] for i in page["images"]]
    assert names == [f"p{i}.png" for i in range(5)]
    failed = client.get(f"/api/v1/jobs/{job_id}/images?status=failed").json
    assert [i["error"] for i in failed["images"]] == ["broken"] and failed["links"]["next"] is None
    assert client.get(f"/api/v1/jobs/{job_id}/images?cursor=nope").json["error"]["code"] == "invalid_cursor"
    assert client.get(f"/api/v1/jobs/{job_id}/images?limit=0").status_code == 400
    assert client.get(f"/api/v1/jobs/{job_id}/images?status=done").status_code == 400
    # The job view carries the first page only, with the link to the rest.
    first = client.get(f"/api/v1/jobs/{job_id}").json
    assert len(first["images"]) == 5 and first["links"]["next"] is None
    assert len(jobs.list_images(job_id)) == 5


def test_job_view_pages_past_the_default(app, client):
    import services.image_handler.routes.jobs as api
    job_id = open_job(client)["job_id"]
    upload(client, job_id, [(f"p{i}.png", png()) for i in range(3)])
    original = api.DEFAULT_IMAGE_PAGE
    try:
        api.DEFAULT_IMAGE_PAGE = 2
        first = client.get(f"/api/v1/jobs/{job_id}").json
    finally:
        api.DEFAULT_IMAGE_PAGE = original
    assert [i["filename"] for i in first["images"]] == ["p0.png", "p1.png"]
    rest = client.get(path_of(first["links"]["next"])).json
    assert [i["filename"] for i in rest["images"]] == ["p2.png"]


def test_previews_archive_and_report(app, client, stack):
    job_id = open_job(client, preset=None, operations=[{"op": "grayscale"}])["job_id"]
    upload(client, job_id, [("big.png", png((900, 600))), ("same.png", png()), ("same.png", png((30, 30)))])
    client.post(f"/api/v1/jobs/{job_id}/close")
    run_tasks(app, stack)
    images = client.get(f"/api/v1/jobs/{job_id}").json["images"]
    for image in images:
        for key in ("input_preview_url", "output_preview_url"):
            preview = Image.open(io.BytesIO(client.get(path_of(image[key])).data))
            assert preview.format == "WEBP" and max(preview.size) <= 320
    big = next(i for i in images if i["filename"] == "big.png")
    assert Image.open(io.BytesIO(client.get(path_of(big["input_preview_url"])).data)).size == (320, 213)
    # Signed URLs are reused while fresh (a polling page hits the browser's cache).
    assert client.get(f"/api/v1/jobs/{job_id}").json["images"][0]["input_preview_url"] == images[0]["input_preview_url"]

    archive = client.get(f"/api/v1/jobs/{job_id}/archive.zip")
    assert archive.status_code == 200 and archive.is_streamed
    names = zipfile.ZipFile(io.BytesIO(archive.data)).namelist()
    assert sorted(names) == ["big.png", "same-2.png", "same.png"]

    report = client.get(f"/api/v1/jobs/{job_id}/report.csv")
    assert report.is_streamed
    rows = list(csv.DictReader(io.StringIO(report.data.decode("utf-8-sig"))))
    assert [r["filename"] for r in rows] == ["big.png", "same.png", "same.png"]
    assert all(r["status"] == "succeeded" for r in rows)


def test_resume_the_image_list_says_which_files_the_job_holds(client):
    job_id = open_job(client)["job_id"]
    upload(client, job_id, [("a.png", png()), ("b.png", png())])
    held = {i["filename"] for i in client.get(f"/api/v1/jobs/{job_id}/images?limit=1000").json["images"]}
    assert held == {"a.png", "b.png"}


def test_413s_name_the_limit_that_was_hit(app, client):
    too_many = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(b"x"), f"{i}.png") for i in range(60)]},
                           content_type="multipart/form-data")
    assert too_many.status_code == 413 and too_many.json["error"]["code"] == "too_many_files"
    assert "at most 6 (MAX_FILES_PER_JOB)" in too_many.json["error"]["message"]
    too_big = client.post("/api/v1/jobs", data={"files": [(io.BytesIO(b"\0" * 2_100_000), "a.png")]},
                          content_type="multipart/form-data")
    assert too_big.status_code == 413 and "MAX_REQUEST_BYTES" in too_big.json["error"]["message"]
    field = client.post("/api/v1/jobs", data={"operations": "x" * 1_100_000}, content_type="multipart/form-data")
    assert field.status_code == 413 and field.json["error"]["code"] == "form_too_large"


def test_url_jobs_have_their_own_limit(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "max_urls_per_job": 3, "max_files_per_job": 1})
    try:
        client = app.test_client()
        ok = client.post("/api/v1/jobs", json={"urls": [f"https://a.example/{i}.jpg" for i in range(3)]})
        assert ok.status_code == 202 and ok.json["total"] == 3
        refused = client.post("/api/v1/jobs", json={"urls": [f"https://a.example/{i}.jpg" for i in range(4)]})
        assert refused.status_code == 413 and refused.json["error"]["code"] == "too_many_urls"
        assert "at most 3 per job (MAX_URLS_PER_JOB)" in refused.json["error"]["message"]
        assert json.loads(client.get("/api/v1/operations").data)["limits"]["max_urls_per_job"] == 3
    finally:
        app.extensions["imageflow"].backends.close()


# -- direct uploads (local: an image-handler URL, the local store's object-finalize event) ----
def deliver_object_events(app, stack) -> list[str | None]:
    coordinator, _ = stack
    outcomes = []
    for message in bus(app).pull(topics(app).uploads_sub, max_messages=50):
        outcomes.append(coordinator.join_uploaded(message.attributes, message.data))
        message.ack()
    return outcomes


def test_direct_uploads_join_the_job_when_their_object_lands(app, client, stack):
    job_id = open_job(client, email="me@example.com")["job_id"]
    good, bad = png((40, 30)), b"definitely not a picture"
    answer = client.post(f"/api/v1/jobs/{job_id}/files", json={"files": [
        {"filename": "photos/cat.png", "bytes": len(good), "content_type": "image/png"},
        {"filename": "fake.png", "bytes": len(bad)},
        {"filename": "huge.png", "bytes": 10 ** 9},
        {"filename": "notes.txt", "bytes": 10}]})
    assert answer.status_code == 200, answer.json
    uploads = answer.json["uploads"]
    assert [u["filename"] for u in uploads] == ["cat.png", "fake.png"]
    assert {r["error"]["code"] for r in answer.json["rejected"]} == {"file_too_large", "unsupported_image"}
    cat, fake = uploads
    assert set(cat) == {"image_id", "filename", "url", "method", "headers", "expires_at"} and cat["method"] == "PUT"
    # Nothing joins the job until its object lands.
    assert client.get(f"/api/v1/jobs/{job_id}").json["total"] == 0
    put = client.put(path_of(cat["url"]), data=good, headers=cat["headers"])
    assert put.status_code == 200, put.json
    assert client.put(path_of(fake["url"]), data=bad, headers=fake["headers"]).status_code == 200
    assert sorted(deliver_object_events(app, stack)) == ["failed", "joined"]
    job = client.get(f"/api/v1/jobs/{job_id}").json
    assert (job["total"], job["failed"]) == (2, 1)
    refused = next(i for i in job["images"] if i["filename"] == "fake.png")
    assert refused["status"] == "failed" and refused["error_code"] == "unsupported" and "not an image" in refused["error"]
    # The task was published when the object landed; a redelivered event changes nothing.
    [task] = run_tasks(app, stack)
    assert task.image_id == cat["image_id"]
    # A replayed link is refused (write-once): no second object event, the file stays as it was.
    replay = client.put(path_of(cat["url"]), data=good, headers=cat["headers"])
    assert replay.status_code == 409 and replay.json["error"]["code"] == "already_uploaded"
    assert deliver_object_events(app, stack) == []
    client.post(f"/api/v1/jobs/{job_id}/close")
    deliver_job_messages(app, stack)
    [event] = completions(app)
    assert (event.status, event.total, event.succeeded, event.failed) == ("completed_with_errors", 2, 1, 1)


def test_direct_upload_links_bind_the_file_and_expire_with_the_job(app, client, stack):
    job_id = open_job(client)["job_id"]
    data = png()
    [target] = client.post(f"/api/v1/jobs/{job_id}/files",
                           json={"files": [{"filename": "a.png", "bytes": len(data)}]}).json["uploads"]
    tampered = path_of(target["url"]).replace("name=a.png", "name=b.png")
    assert client.put(tampered, data=data).json["error"]["code"] == "invalid_upload_link"
    short = client.put(path_of(target["url"]), data=data[:-1])
    assert short.status_code == 400 and short.json["error"]["code"] == "wrong_size"
    assert deliver_object_events(app, stack) == []
    # The link is refused once the job is closed; an object that still lands after the close (an
    # upload under way while the client closed) does not join and is deleted.
    client.post(f"/api/v1/jobs/{job_id}/close")
    assert client.put(path_of(target["url"]), data=data).status_code == 409
    backends = app.extensions["imageflow"].backends
    backends.blobs.put(domain.input_path(job_id, target["image_id"], "a.png"), data, "image/png",
                       metadata=domain.direct_upload_metadata("a.png"))
    assert deliver_object_events(app, stack) == ["late"]
    assert backends.blobs.list(f"{job_id}/input/") == []
    assert client.get(f"/api/v1/jobs/{job_id}").json["total"] == 0


def test_close_right_after_the_last_direct_upload_loses_nothing(app, client, stack):
    """A client that does what docs/api.md says (ask for targets, PUT every file, close at once)
    gets every file in the job, although no finalize event has been handled yet; the events
    that arrive after the close find their images there and delete nothing."""
    job_id = open_job(client, email="me@example.com")["job_id"]
    files = {f"p{i}.png": png((40 + i, 30), (i * 40, 90, 200)) for i in range(5)}
    targets = client.post(f"/api/v1/jobs/{job_id}/files", json={"files": [
        {"filename": name, "bytes": len(data)} for name, data in files.items()]}).json["uploads"]
    for target in targets:
        assert client.put(path_of(target["url"]), data=files[target["filename"]],
                          headers=target["headers"]).status_code == 200
    closed = client.post(f"/api/v1/jobs/{job_id}/close")
    assert closed.status_code == 200 and closed.json["total"] == 5
    assert sorted(deliver_object_events(app, stack)) == ["duplicate"] * 5
    assert sorted(t.image_id for t in run_tasks(app, stack)) == sorted(t["image_id"] for t in targets)
    deliver_job_messages(app, stack)
    [event] = completions(app)
    assert (event.status, event.total, event.succeeded) == ("completed", 5, 5)
    backends = app.extensions["imageflow"].backends
    assert len(backends.blobs.list(f"{job_id}/input/")) == 5


def test_cancel_right_after_a_direct_upload_keeps_it_as_skipped(app, client, stack):
    """Found by the model-based test (tests/e2e/test_model_based.py): a cancel closes an open job,
    and it lost the uploads the store had acknowledged whose events were still on the bus (no
    outcome at all); they join first, as with close, and are skipped by the cancel."""
    job_id = open_job(client, email="me@example.com")["job_id"]
    data = png()
    [target] = client.post(f"/api/v1/jobs/{job_id}/files",
                           json={"files": [{"filename": "a.png", "bytes": len(data)}]}).json["uploads"]
    assert client.put(path_of(target["url"]), data=data, headers=target["headers"]).status_code == 200
    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json["total"] == 1
    assert deliver_object_events(app, stack) == ["duplicate"]
    coordinator, processor = stack
    processor.gate = JobGate(app.extensions["imageflow"].backends.blobs, ttl=0)  # as the service runs it
    run_tasks(app, stack)
    job = client.get(f"/api/v1/jobs/{job_id}").json
    assert (job["status"], job["total"], job["skipped"]) == ("cancelled", 1, 1)
    assert [(i["image_id"], i["status"]) for i in job["images"]] == [(target["image_id"], "skipped")]
    [event] = completions(app)
    assert (event.status, event.total, event.skipped) == ("cancelled", 1, 1)


def test_an_idle_open_job_that_closes_itself_keeps_its_landed_uploads(app, client, stack):
    job_id = open_job(client)["job_id"]
    data = png()
    [target] = client.post(f"/api/v1/jobs/{job_id}/files",
                           json={"files": [{"filename": "a.png", "bytes": len(data)}]}).json["uploads"]
    assert client.put(path_of(target["url"]), data=data).status_code == 200
    coordinator, _ = stack
    coordinator = idle_closing(coordinator)
    coordinator.sweep(older_than_seconds=0)
    job = client.get(f"/api/v1/jobs/{job_id}").json
    assert job["status"] != "open" and job["total"] == 1
    assert deliver_object_events(app, stack) == ["duplicate"]


def test_an_upload_link_writes_its_file_once(app, client, stack):
    """A replayed link cannot swap an accepted file for other bytes of the same length (served
    afterwards as the original's type), whether its image has joined yet or not; of two PUTs
    racing for one target exactly one is stored."""
    job_id = open_job(client)["job_id"]
    photo, other = png((40, 30)), png((40, 30), (250, 0, 0))
    html = b"<html>" + b"x" * (len(photo) - 13) + b"</html>"
    assert len(html) == len(photo)
    first, second, third = client.post(f"/api/v1/jobs/{job_id}/files", json={"files": [
        {"filename": name, "bytes": len(photo)} for name in ("a.png", "b.png", "c.png")]}).json["uploads"]
    assert client.put(path_of(first["url"]), data=photo, headers=first["headers"]).status_code == 200
    landed = client.put(path_of(first["url"]), data=html, headers=first["headers"])   # landed, not joined yet
    assert landed.status_code == 409 and landed.json["error"]["code"] == "already_uploaded"
    assert "a.png" in landed.json["error"]["message"]
    assert deliver_object_events(app, stack) == ["joined"]
    joined = client.put(path_of(first["url"]), data=html, headers=first["headers"])
    assert joined.status_code == 409 and joined.json["error"]["code"] == "already_uploaded"
    served = client.get(f"/api/v1/jobs/{job_id}/images/{first['image_id']}/input")
    assert served.status_code == 200 and served.data == photo
    # Racing PUTs for one target: one 200, the rest 409, and the stored file is the winner's.
    start = threading.Barrier(4)

    def put(data):
        start.wait(timeout=60)
        return client.put(path_of(second["url"]), data=data, headers=second["headers"]).status_code

    bodies = [photo, other, other, photo]  # all pictures: the winner joins whichever it is
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(put, bodies))
    assert sorted(codes) == [200, 409, 409, 409]
    stored = app.extensions["imageflow"].backends.blobs.get(domain.input_path(job_id, second["image_id"], "b.png"))
    assert stored == bodies[codes.index(200)]
    assert deliver_object_events(app, stack) == ["joined"]
    # the third link is untouched by all that
    assert client.put(path_of(third["url"]), data=other, headers=third["headers"]).status_code == 200


def test_a_direct_upload_may_be_as_large_as_max_upload_bytes(tmp_path):
    """The local PUT is bounded by the link's own size (up to MAX_UPLOAD_BYTES), not by the JSON body
    limit: a file between MAX_JSON_BYTES and MAX_UPLOAD_BYTES used to answer 413."""
    app = create_app({"data_dir": tmp_path / "data", "max_upload_bytes": 400_000, "max_json_bytes": 64_000,
                      "public_base_url": "https://imageflow.example"})
    try:
        client = app.test_client()
        noise = Image.frombytes("RGB", (200, 200), bytes((i * 7919) % 251 for i in range(200 * 200 * 3)))
        buf = io.BytesIO()
        noise.save(buf, "PNG", compress_level=0)
        data = buf.getvalue()
        assert 64_000 < len(data) < 400_000
        job_id = open_job(client)["job_id"]
        [target] = client.post(f"/api/v1/jobs/{job_id}/files", json={"files": [
            {"filename": "big.png", "bytes": len(data)}]}).json["uploads"]
        put = client.put(path_of(target["url"]), data=data, headers=target["headers"])
        assert put.status_code == 200, put.json
        assert put.json["bytes"] == len(data)
        # a PUT body larger than MAX_UPLOAD_BYTES is still refused before it is read
        too_big = client.put(path_of(target["url"]), data=b"x" * 400_001, headers=target["headers"])
        assert too_big.status_code == 413
        # and JSON bodies keep their own limit
        assert client.post(f"/api/v1/jobs/{job_id}/files", json={"files": [
            {"filename": "x" * 70_000, "bytes": 1}]}).status_code == 413
    finally:
        app.extensions["imageflow"].backends.close()


def test_nobody_can_mint_an_upload_link(app, client, tmp_path):
    """With URL_SIGNING_SECRET unset (and keys off) the signing key was sha256("imageflow-links:"), a
    public constant: anyone could sign a PUT into any open job. Now such a link is refused; the
    secret is the data directory's generated one."""
    job_id = open_job(client)["job_id"]
    data = png()
    forged = LinkSigner(hashlib.sha256(b"imageflow-links:").digest()).sign_for(
        f"https://imageflow.example/api/v1/jobs/{job_id}/uploads/{domain.new_id()}?"
        f"name=x.png&bytes={len(data)}&type=image%2Fpng", 600)
    refused = client.put(path_of(forged), data=data)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "invalid_upload_link"
    assert (tmp_path / "data" / "url-signing-secret").is_file()
