"""Import by URL against real HTTP servers on 127.0.0.1: limits, redirects, SSRF refusals,
and the processor's task that fetches its URL before rendering it.

Every test runs with a guard that fails it if anything tries to connect anywhere but
127.0.0.1: the refused addresses are refused before any packet is sent."""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from imageflow import domain
from imageflow.blobstore.local import LocalBlobStore
from imageflow.bootstrap import make_backends
from imageflow.messages import JobCompleted, Task
from imageflow.safe_http import CHUNK_BYTES, ByteBudget, FetchError, FetchPolicy, fetch, parse_networks
from services.image_handler.intake import Intake, JobRequest
from services.image_handler.url_lists import UrlEntry
from services.image_processor.processing import Processor
from services.image_processor.url_fetch import UrlFetcher
from services.interaction_manager.coordinator import Coordinator
from tests.http_servers import HELD_BYTES, ImageServer, jpeg, noise_png, png

HOSTS = {"images.test": ["127.0.0.1"], "internal.test": ["10.20.30.40"], "metadata.test": ["169.254.169.254"],
         "v6.test": ["::1"], "rebind.test": ["127.0.0.1", "192.168.0.10"]}


def no_dns(host, port):
    """Numeric forms (0x7f000002) are read by the system as it would; names are not looked up."""
    try:
        infos = socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise AssertionError(f"unexpected DNS lookup of {host}") from None
    return [info[4][0] for info in infos]


# Every connection these tests make must stay on 127.0.0.1 (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture(scope="module")
def server():
    srv = ImageServer({"/a.png": (png(), "image/png"), "/b.jpg": (jpeg(), "image/jpeg"),
                       "/page.html": (b"<html><body>not an image</body></html>", "text/html"),
                       "/fake.png": (b"<?php echo 'x'; ?>", "image/png"),
                       **{f"/noise-{i}.png": (noise_png((420, 420), seed=i), "image/png") for i in range(8)}})
    yield srv
    srv.stop()


@pytest.fixture
def policy():
    return FetchPolicy(timeout=2.0, max_bytes=300_000, max_redirects=3, allow=parse_networks("127.0.0.1/32"),
                       hosts=HOSTS, resolver=no_dns)


def test_fetches_an_image_by_address_and_by_name(server, policy):
    fetched = fetch(server.url("/a.png"), policy)
    assert fetched.data == png() and fetched.content_type == "image/png"
    by_name = fetch(f"http://images.test:{server.port}/b.jpg", policy)
    assert by_name.data == jpeg()


def test_follows_redirects_and_checks_each_one(server, policy):
    fetched = fetch(server.url("/redirect?/a.png"), policy)
    assert fetched.url == server.url("/a.png") and fetched.data == png()


@pytest.mark.parametrize("target", ["http://10.0.0.1/x.png", "http://internal.test/x.png",
                                    "http://metadata.test/computeMetadata/v1/", "http://169.254.169.254/latest/",
                                    "http://v6.test:{port}/a.png", "http://[::1]:{port}/a.png",
                                    "http://127.0.0.2:{port}/a.png", "http://rebind.test:{port}/a.png",
                                    "http://[::ffff:10.0.0.1]/x", "http://0x7f000002:{port}/a.png"])
def test_urls_and_redirects_into_private_addresses_are_refused(server, policy, target):
    target = target.format(port=server.port)
    for url in (target, server.url(f"/redirect?{target}")):
        with pytest.raises(FetchError) as err:
            fetch(url, policy)
        assert err.value.code in ("blocked_address", "dns_error"), err.value


def test_redirect_to_another_scheme_is_refused(server, policy):
    with pytest.raises(FetchError) as err:
        fetch(server.url("/redirect?file:///etc/passwd"), policy)
    assert err.value.code == "bad_redirect" and "only http and https" in err.value.reason


def test_redirect_loops_stop(server, policy):
    with pytest.raises(FetchError) as err:
        fetch(server.url("/loop"), policy)
    assert err.value.code == "too_many_redirects"


@pytest.mark.parametrize("path", ["/huge-declared", "/huge-chunked"])
def test_size_limit(server, policy, path):
    with pytest.raises(FetchError) as err:
        fetch(server.url(path), policy)
    assert err.value.code == "too_large"


def test_time_limit_covers_a_slow_drip(server, policy):
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        fetch(server.url("/slow"), policy)
    assert err.value.code == "timeout"
    assert time.monotonic() - started < policy.timeout + 1.5


def test_http_errors_are_reported(server, policy):
    with pytest.raises(FetchError) as err:
        fetch(server.url("/missing.png"), policy)
    assert err.value.code == "http_error" and "404" in err.value.reason


def run_tasks(settings, backends, processor, coordinator) -> list[Task]:
    """Process every task on the bus and fold the results, as the services would."""
    tasks = [Task.decode(m.data) for m in backends.bus.pull(settings.topics.tasks_sub, max_messages=50)]
    coordinator.fold([processor.process(task) for task in tasks])
    return tasks


def test_the_processor_fetches_inputs_and_fails_the_urls_that_cannot_be_imported(tmp_path, server, policy,
                                                                                  local_settings):
    backends = make_backends(local_settings)
    completed = []
    try:
        urls = {"good-png": server.url("/a.png"), "good-name": f"http://images.test:{server.port}/b.jpg",
                "private": "http://internal.test/secret.png", "metadata": "http://metadata.test/latest/meta-data/",
                "redirect": server.url("/redirect?http://10.1.1.1/x.png"), "html": server.url("/page.html"),
                "disguised": server.url("/fake.png"), "missing": server.url("/nope.png")}
        intake = Intake(local_settings, backends.blobs, backends.jobs, backends.bus)
        created = intake.create_url_job([UrlEntry(url, {"name": key}) for key, url in urls.items()], [],
                                        JobRequest(operations=[]))
        job_id = created.job.job_id
        assert backends.blobs.list(f"{job_id}/") == []          # nothing is fetched by the API
        coordinator = Coordinator(local_settings, backends.jobs, backends.bus, backends.blobs,
                                  on_completed=lambda job, event: completed.append(job.job_id))
        assert coordinator.fan_out(job_id) == 8                 # ... nor by the interaction manager
        processor = Processor(local_settings, backends.blobs, backends.bus,
                              fetcher=UrlFetcher(local_settings, backends.blobs, policy))
        tasks = run_tasks(local_settings, backends, processor, coordinator)
        assert {t.source_url for t in tasks} == set(urls.values())   # a task carries its URL
        images = {i.meta["name"]: i for i in backends.jobs.list_images(job_id)}
        assert backends.blobs.get(images["good-png"].input_path) == png()
        assert backends.blobs.get(images["good-name"].input_path) == jpeg()
        assert images["good-png"].input_content_type == "image/png" and images["good-png"].input_bytes == len(png())
        assert {n for n, i in images.items() if i.status == domain.IMAGE_SUCCEEDED} == {"good-png", "good-name"}
        errors = {name: image.error for name, image in images.items() if image.status == domain.IMAGE_FAILED}
        assert set(errors) == {"private", "metadata", "redirect", "html", "disguised", "missing"}
        assert "private, loopback, link-local" in errors["private"] and "10.20.30.40" in errors["private"]
        assert "169.254.169.254" in errors["metadata"] and "10.1.1.1" in errors["redirect"]
        assert "not an image: the content is text" in errors["html"]
        assert "usable image" in errors["disguised"] and "404" in errors["missing"]
        assert {i.error_code for i in images.values() if i.status == domain.IMAGE_FAILED} == {"fetch_failed"}
        job = backends.jobs.get_job(job_id)
        assert (job.status, job.failed, job.succeeded) == ("completed_with_errors", 6, 2)
        assert completed == [job_id]
        # A redelivered task renders from the stored input: the URL is not fetched again.
        hits = len(server.hits)
        good = next(t for t in tasks if t.image_id == images["good-png"].image_id)
        assert processor.process(good).status == "succeeded" and len(server.hits) == hits
    finally:
        backends.close()


def test_an_unexpected_error_while_fetching_is_a_failed_image(local_settings, backends, monkeypatch):
    import services.image_processor.url_fetch as url_fetch

    def broken(url, policy, budget=None):
        raise UnicodeError("label too long")

    monkeypatch.setattr(url_fetch, "download", broken)
    task = Task(job_id=domain.new_id(), image_id=domain.new_id(), input_path="j/input/i-x.png",
                output_path="j/output/i-x", source_url="http://images.test/x.png")
    result = Processor(local_settings, backends.blobs, backends.bus).process(task)
    assert result.status == "failed" and result.error == "could not fetch the URL: UnicodeError: label too long"


def test_a_job_whose_urls_all_fail_completes_as_failed(tmp_path, server, policy, local_settings):
    backends = make_backends(local_settings)
    try:
        intake = Intake(local_settings, backends.blobs, backends.jobs, backends.bus)
        created = intake.create_url_job([UrlEntry("http://internal.test/a.png")], [], JobRequest(operations=[]))
        coordinator = Coordinator(local_settings, backends.jobs, backends.bus, backends.blobs)
        assert coordinator.fan_out(created.job.job_id) == 1
        processor = Processor(local_settings, backends.blobs, backends.bus,
                              fetcher=UrlFetcher(local_settings, backends.blobs, policy))
        run_tasks(local_settings, backends, processor, coordinator)
        job = backends.jobs.get_job(created.job.job_id)
        assert job.status == domain.FAILED and job.notified_at
        [message] = backends.bus.pull(local_settings.topics.notifications_sub, max_messages=5)
        assert JobCompleted.decode(message.data).status == "failed"
    finally:
        backends.close()


def test_the_allow_list_is_exact(server):
    assert not any(ipaddress.ip_address("127.0.0.2") in net for net in parse_networks("127.0.0.1/32"))


class CountingStore(LocalBlobStore):
    """The filesystem store, counting the bytes each streamed write has taken so far."""

    def __init__(self, root):
        super().__init__(root)
        self.lock = threading.Lock()
        self.streamed: dict[str, int] = {}

    def put_stream(self, path, chunks, content_type, **kwargs):
        def counted():
            for chunk in chunks:
                yield chunk
                with self.lock:
                    self.streamed[path] = self.streamed.get(path, 0) + len(chunk)
        return super().put_stream(path, counted(), content_type, **kwargs)


def url_task(url: str, name: str = "x.png") -> Task:
    job_id, image_id = domain.new_id(), domain.new_id()
    return Task(job_id=job_id, image_id=image_id, input_path=domain.input_path(job_id, image_id, name),
                output_path=domain.output_stem(job_id, image_id, name), operations=[{"op": "grayscale"}],
                source_url=url)


def leftovers(settings, job_id: str) -> list[str]:
    """Every file under the job's folder on disk, temp files included (the blob listing hides those)."""
    folder = settings.data_dir / "blobs" / job_id
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("path, reason", [
    ("/huge-chunked", "larger than the 292 KB limit"),            # no length: stopped while streaming
    ("/huge-declared", "over the 292 KB limit"),                   # refused from its Content-Length
    ("/truncated", "closed after 300016 of 2000000 bytes"),        # cut short after 300 KB
    ("/page.html", "not an image: the content is text"),           # sniffed from the first bytes
])
def test_an_aborted_download_is_a_failed_image_and_leaves_no_input_object(server, policy, local_settings, backends,
                                                                           path, reason):
    task = url_task(server.url(path))
    big_policy = FetchPolicy(**{**policy.__dict__, "max_bytes": 3_000_000}) if path == "/truncated" else policy
    processor = Processor(local_settings, backends.blobs, backends.bus,
                          fetcher=UrlFetcher(local_settings, backends.blobs, big_policy))
    result = processor.process(task)
    assert result.status == "failed" and result.error_code == domain.ErrorCode.FETCH_FAILED
    assert reason in result.error, result.error
    assert not backends.blobs.exists(task.input_path) and backends.blobs.list(f"{task.job_id}/") == []
    assert leftovers(local_settings, task.job_id) == []   # no partial object, no temp file


def test_a_download_streams_into_storage_a_chunk_at_a_time(server, policy, local_settings, backends):
    """The stored input is the file, byte for byte, and the download never held more than one chunk."""
    budget = ByteBudget(64 * 1024 * 1024)
    fetcher = UrlFetcher(local_settings, backends.blobs, FetchPolicy(**{**policy.__dict__, "max_bytes": 2_000_000}),
                         budget)
    task = url_task(server.url("/noise-0.png"))
    result = Processor(local_settings, backends.blobs, backends.bus, fetcher=fetcher).process(task)
    assert result.status == "succeeded", result.error
    expected = server.files["/noise-0.png"][0]
    assert len(expected) > 2 * CHUNK_BYTES
    assert backends.blobs.get(task.input_path) == expected and result.input_bytes == len(expected)
    assert 0 < budget.peak <= CHUNK_BYTES and budget.in_flight == 0


def test_concurrent_downloads_share_the_byte_budget_and_wait_for_it(server, policy, local_settings, backends):
    """Eight downloads of 530 KB at once against a budget of two chunks: two read, six wait (none fails),
    and the bytes in flight never pass the budget; once the server lets them finish, all eight succeed."""
    budget = ByteBudget(2 * CHUNK_BYTES)
    blobs = CountingStore(local_settings.data_dir / "blobs")
    fetcher = UrlFetcher(local_settings, blobs,
                         FetchPolicy(**{**policy.__dict__, "max_bytes": 2_000_000, "timeout": 60}), budget)
    processor = Processor(local_settings, blobs, backends.bus, fetcher=fetcher)
    tasks = [url_task(server.url(f"/held/noise-{i}.png")) for i in range(8)]
    available = {t.input_path: len(server.files[f"/noise-{i}.png"][0]) - HELD_BYTES for i, t in enumerate(tasks)}
    server.release.clear()

    def at_hold() -> int:  # downloads that have stored all the server sent and wait on it, holding a chunk each
        with blobs.lock:
            return sum(blobs.streamed.get(path) == size for path, size in available.items())

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(processor.process, task) for task in tasks]
            end = time.monotonic() + 60
            while not (at_hold() == 2 and budget.waiting == 6) and time.monotonic() < end:
                time.sleep(0.05)
            state = (at_hold(), budget.waiting, budget.in_flight)
            server.release.set()
            results = [f.result(timeout=120) for f in futures]
    finally:
        server.release.set()
    assert state == (2, 6, budget.limit), "two downloads hold the whole budget while six wait for it"
    assert [r.status for r in results] == ["succeeded"] * 8, [r.error for r in results]
    for i, task in enumerate(tasks):
        assert backends.blobs.get(task.input_path) == server.files[f"/noise-{i}.png"][0]
    assert budget.peak == budget.limit and budget.in_flight == 0 and budget.waits >= 6
