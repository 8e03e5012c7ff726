"""Request budgets on the real image-handler server (gunicorn with services.image_handler.server.Worker,
8 threads): bodies that trickle in on every route, and chunked bodies past the limit. The server must
answer them with a JSON error, close them, and keep serving everyone else.
"""
from __future__ import annotations

import io
import json
import os
import re
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from devtools.stack import Stack
from imageflow.bus.sqlite import SqliteBus
from imageflow.settings import Settings

BUDGETS = {"REQUEST_BODY_TIMEOUT": "2", "REQUEST_BODY_MIN_BYTES_PER_SECOND": "1000", "REQUEST_HEADER_TIMEOUT": "3",
           "MAX_JSON_BYTES": str(64 * 1024), "MAX_REQUEST_BYTES": str(2 * 1024 * 1024), "RATE_LIMIT_PER_SECOND": "0"}


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    """image-handler alone, as ./scripts.sh up runs it (its command line from devtools.stack)."""
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("budgets") / "data", env=BUDGETS)
    stack.data_dir.mkdir(parents=True)
    stack.start_process("image-handler")
    end = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{stack.base_url}/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < end and stack.procs["image-handler"].poll() is None, \
            (stack.log_dir / "image-handler.log").read_text()[-2000:]
        time.sleep(0.2)
    yield stack
    stack.stop_process("image-handler")


def trickle(port: int, head: bytes, interval: float, limit: float) -> tuple[bytes, float]:
    """Send ``head`` (request line and headers), then one body byte every ``interval`` s; return what the
    server answered and after how many seconds it closed the connection (``limit`` if it never did)."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as conn:
        conn.sendall(head)
        conn.settimeout(interval)
        while time.monotonic() - started < limit:
            try:
                conn.sendall(b"1\r\nx\r\n" if b"chunked" in head else b"x")
            except OSError:
                pass  # the server closed its side: read what it said
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                return answer, time.monotonic() - started
            answer += data
    return answer, limit


def heads(port: int, job_id: str) -> dict[str, bytes]:
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    return {
        "JSON POST /api/v1/jobs": b"POST /api/v1/jobs HTTP/1.1\r\n" + host
        + b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
        "multipart POST /api/v1/jobs": b"POST /api/v1/jobs HTTP/1.1\r\n" + host
        + b"Content-Type: multipart/form-data; boundary=b0\r\nContent-Length: 100000\r\n\r\n",
        "chunked POST /api/v1/jobs": b"POST /api/v1/jobs HTTP/1.1\r\n" + host
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        "PATCH /api/v1/jobs/<id>": f"PATCH /api/v1/jobs/{job_id} HTTP/1.1\r\n".encode() + host
        + b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
        "POST /healthz (a route that never reads its body)": b"POST /healthz HTTP/1.1\r\n" + host
        + b"Content-Length: 60000\r\n\r\n",
    }


def test_slow_request_bodies_are_answered_408_and_do_not_stall_the_api(handler, record):
    """Ten connections (against 8 threads) send complete headers, then their bodies one byte every 0.5 s, on every
    kind of route: a JSON POST, a multipart POST, a chunked POST, a PATCH and a route that ignores its body.
    The body budget here is 2 s per read and 2 s + size at 1000 bytes/s in all."""
    job_id = requests.post(f"{handler.base_url}/api/v1/jobs", json={"urls": ["https://example.com/a.png"]},
                           timeout=10).json()["job_id"]
    kinds = heads(handler.port, job_id)
    plan = [name for _ in range(2) for name in kinds]
    with ThreadPoolExecutor(len(plan)) as pool:
        futures = [pool.submit(trickle, handler.port, kinds[name], 0.5, 30) for name in plan]
        time.sleep(1)
        started = time.monotonic()
        try:
            health = requests.get(f"{handler.base_url}/healthz", timeout=15).status_code
        except requests.RequestException as exc:
            health = repr(exc)
        latency = time.monotonic() - started
        results = [f.result() for f in futures]
    slowest = max(elapsed for _, elapsed in results)
    record.figure("slow bodies: connections / server threads", f"{len(plan)} / 8")
    record.figure("another client's /healthz latency meanwhile (s)", round(latency, 1))
    record.figure("slow bodies closed by the server after, max (s)", round(slowest, 1))
    record.expect(health == 200 and latency < 10, "another client is served while slow bodies trickle in",
                  (health, round(latency, 1)))
    record.expect(slowest < 15, "the server closes every slow body within its budget (not 30 s later)",
                  [(name, round(e, 1)) for name, (_, e) in zip(plan, results)])
    for name, (answer, _) in zip(plan, results):
        if "healthz" in name:
            continue  # answered at once (it never reads its body), then closed or drained
        record.expect(answer.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in answer,
                      "a slow body gets 408 with the JSON error request_timeout", (name, answer[:200]))
    record.expect(requests.get(f"{handler.base_url}/api/v1/operations", timeout=5).status_code == 200,
                  "the API answers normally afterwards")


def test_chunked_body_past_the_limit_is_413_on_the_real_server(handler, record):
    """A chunked JSON body of 1 MB against the 64 KB JSON limit, and a chunked PATCH of 1 MB."""
    def body():
        yield b'{"urls": ["https://example.com/a.png"], "name": "'
        for _ in range(16):
            yield b"n" * 65536
        yield b'"}'

    response = requests.post(f"{handler.base_url}/api/v1/jobs", data=body(),
                             headers={"Content-Type": "application/json"}, timeout=30)
    record.expect(response.status_code == 413 and response.json()["error"]["code"] == "request_too_large",
                  "a chunked body past the limit is refused with 413 request_too_large",
                  f"{response.status_code} {response.text[:200]}")
    job_id = requests.post(f"{handler.base_url}/api/v1/jobs", json={"urls": ["https://example.com/a.png"]},
                           timeout=10).json()["job_id"]
    response = requests.patch(f"{handler.base_url}/api/v1/jobs/{job_id}", data=body(),
                              headers={"Content-Type": "application/json"}, timeout=30)
    record.expect(response.status_code == 413, "so is a chunked PATCH", f"{response.status_code} {response.text[:200]}")
    renamed = requests.patch(f"{handler.base_url}/api/v1/jobs/{job_id}", data=json.dumps({"name": "ok"}),
                             headers={"Content-Type": "application/json"}, timeout=10)
    record.expect(renamed.status_code == 200 and renamed.json()["name"] == "ok", "a normal PATCH still works")


def test_fifty_slow_uploads_within_the_rules_hold_no_thread(handler, record):
    """Fifty clients on a slow uplink each send a 60 KB JSON body at 2,000 bytes/s (above the minimum rate
    here, so no deadline cuts them: 30 s each), against image-handler's 8 threads. A request reaches a thread
    only once its body has arrived, so another client's /healthz is answered at once meanwhile (before, the
    8 threads waited on the first 8 bodies and /healthz waited a minute)."""
    head = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{handler.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n").encode()
    conns = [socket.create_connection(("127.0.0.1", handler.port), timeout=10) for _ in range(50)]
    stop = threading.Event()

    def send_slowly():
        for conn in conns:
            conn.sendall(head)
        while not stop.wait(0.1):
            for conn in conns:
                try:
                    conn.sendall(b"x" * 200)  # 2,000 bytes/s per client
                except OSError:
                    pass

    sender = threading.Thread(target=send_slowly, daemon=True)
    sender.start()
    try:
        time.sleep(1)
        latencies = []
        for _ in range(5):
            started = time.monotonic()
            try:
                ok = requests.get(f"{handler.base_url}/healthz", timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append(round(time.monotonic() - started, 3) if ok else None)
            time.sleep(0.5)
        record.figure("/healthz latency with 50 slow uploads in progress, max of 5 (s)", max(
            (x for x in latencies if x is not None), default=None))
        record.expect(None not in latencies and max(latencies) < 1,
                      "another client's /healthz answers in under 1 s while 50 slow uploads arrive", latencies)
        still_open = 0
        for conn in conns:
            conn.setblocking(False)
            try:
                still_open += conn.recv(1) == b""
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        record.expect(still_open == 50, "the slow uploads (within the minimum rate) are not cut off", still_open)
    finally:
        stop.set()
        sender.join(timeout=10)
        for conn in conns:
            conn.close()


def test_a_body_sent_after_100_continue_is_answered_once(handler, record):
    """curl sends ``Expect: 100-continue`` for bodies over 1 MB and waits for the interim answer before the
    body. The server answers it while the body is still to come, and only once."""
    body = json.dumps({"urls": ["https://example.com/a.png"], "name": "c" * 40000}).encode()
    with socket.create_connection(("127.0.0.1", handler.port), timeout=10) as conn:
        conn.sendall(f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
                     .encode())
        interim = conn.recv(4096)
        record.expect(interim.startswith(b"HTTP/1.1 100 Continue"), "100 Continue before the body", interim[:80])
        conn.sendall(body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    record.expect(answer.count(b"100 Continue") == 0 and answer.startswith(b"HTTP/1.1 "),
                  "then one final answer, with no second 100 Continue", answer[:120])
    record.expect(answer.startswith(b"HTTP/1.1 202") and b'"job_id"' in answer,
                  "the request was read whole and the job accepted", answer[:200])


def test_pipelined_requests_after_a_large_body_are_each_answered(handler, record):
    """Two requests sent back to back on one connection, the first a multipart upload of a 300 KB image (kept
    in a temporary file while it arrives): both are answered, in order, and the image is stored whole."""
    noise = Image.frombytes("RGB", (320, 320), os.urandom(320 * 320 * 3))
    png = io.BytesIO()
    noise.save(png, "PNG")
    upload = requests.Request("POST", f"{handler.base_url}/api/v1/jobs",
                              files={"files": ("noise.png", png.getvalue(), "image/png")}).prepare()
    first = (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {upload.headers['Content-Type']}"
             f"\r\nContent-Length: {len(upload.body)}\r\n\r\n").encode() + upload.body
    second = b"GET /api/v1/operations HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", handler.port), timeout=20) as conn:
        conn.sendall(first + second)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    record.expect(statuses == [b"202", b"200"], "the upload and the GET behind it are both answered, in order",
                  (statuses, answer[:300]))
    job_id = json.loads(answer.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1 ", 1)[0])["job_id"]
    stored = requests.get(f"{handler.base_url}/api/v1/jobs/{job_id}/images", timeout=10).json()["images"][0]
    original = requests.get(stored["input_url"], timeout=10)
    record.expect(original.content == png.getvalue(), "the image is stored byte for byte",
                  (len(original.content), len(png.getvalue())))


def test_a_direct_upload_cut_off_mid_file_resumes_where_it_stopped(handler, record):
    """A 1.5 MB file sent to its upload link in one chunk; the connection drops after 600 KB. The client asks
    how far it got (Content-Range: bytes */<size>) and sends only the rest: the stored file is the original."""
    data = os.urandom(1_500_000)
    job_id = requests.post(f"{handler.base_url}/api/v1/jobs", json={"open": True}, timeout=10).json()["job_id"]
    [upload] = requests.post(f"{handler.base_url}/api/v1/jobs/{job_id}/files", timeout=10, json={
        "files": [{"filename": "raw.png", "bytes": len(data), "content_type": "image/png"}]}).json()["uploads"]
    path = "/" + upload["url"].split("/", 3)[3]
    with socket.create_connection(("127.0.0.1", handler.port), timeout=10) as conn:
        conn.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                     f"Content-Range: bytes 0-{len(data) - 1}/{len(data)}\r\nContent-Length: {len(data)}\r\n\r\n"
                     .encode() + data[:600_000])
        time.sleep(0.5)
    status = None
    for _ in range(50):  # the server notices the drop and keeps what arrived
        status = requests.put(upload["url"], headers={"Content-Range": f"bytes */{len(data)}"}, timeout=10)
        if status.status_code == 308 and status.headers.get("Range"):
            break
        time.sleep(0.2)
    kept = int(status.headers["Range"].rsplit("-", 1)[1]) + 1
    record.figure("bytes kept of the 600,000 sent before the drop", kept)
    record.expect(status.status_code == 308 and 0 < kept <= 600_000, "the status query says how far it got",
                  (status.status_code, status.headers.get("Range")))
    rest = requests.put(upload["url"], data=data[kept:], timeout=30,
                        headers={"Content-Range": f"bytes {kept}-{len(data) - 1}/{len(data)}", "Content-Type": "image/png"})
    record.expect(rest.status_code == 200, "the rest completes the file", (rest.status_code, rest.text[:200]))
    closed = requests.post(f"{handler.base_url}/api/v1/jobs/{job_id}/close", timeout=10).json()
    [image] = requests.get(f"{handler.base_url}/api/v1/jobs/{job_id}/images", timeout=10).json()["images"]
    stored = requests.get(image["input_url"], timeout=10).content
    record.expect(closed["total"] == 1 and stored == data, "the job holds the file, byte for byte",
                  (closed["total"], len(stored)))


# -- bombs on the whole stack ---------------------------------------------------------------------
def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the processor's render workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _peak_rss_mb(pid: int) -> int:
    """The largest peak resident memory (VmHWM) of ``pid`` or any process below it."""
    peaks = [0]
    for each in _descendants(pid):
        try:
            for line in open(f"/proc/{each}/status"):
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) // 1024)
        except OSError:
            pass
    return max(peaks)


def _png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def _gif(frames: int, size=(10, 10), later_size=None) -> bytes:
    images = [Image.new("RGB", size if i == 0 or not later_size else later_size, ((i * 37) % 256, 90, 50))
              for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=40, loop=0)
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", *size)  # the logical screen stays small: the canvas grows on seek
    return bytes(data)


# (name, file bytes, operations): the issue's memory bombs, each valid and far under every input limit
BOMBS = [
    ("watermark-1000.png", _png(), [{"op": "watermark", "text": "W" * 200, "size": 1000}]),
    ("watermark-2000.png", _png(), [{"op": "watermark", "text": "W" * 200, "size": 2000}]),
    ("upscaled-animation.gif", _gif(100), [{"op": "resize", "width": 7000, "height": 7000, "fit": "fill",
                                            "upscale": True}, {"op": "format", "format": "gif"}]),
    ("padded-animation.gif", _gif(100), [{"op": "pad", "width": 7000, "height": 7000},
                                         {"op": "format", "format": "gif"}]),
    ("growing-canvas.gif", _gif(20, later_size=(3000, 3000)), [{"op": "format", "format": "gif"}]),
]


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory):
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("bombs") / "data", processors=1,
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "RATE_LIMIT_PER_SECOND": "0",
                                     "PROCESSOR_CONCURRENCY": "2"})
    stack.start()
    yield stack
    stack.stop()


# Issue 22: a valid GIF whose frames extend past its canvas renders, clipped (it used to fail with
# libwebp's words, or as a bomb once its frames held more than the render budget in all).
CLIPPED_TO_THE_CANVAS = {"growing-canvas.gif"}


def test_memory_bombs_fail_on_their_first_attempt_within_every_process_budget(full_stack, record):
    """The issue's bombs, one job each, on the whole local stack (the processor at its default budgets: 768 MB per
    render worker, 100 megapixels per render): a 200-character watermark at 1000 and 2000 px on a 16x16 PNG, a
    100-frame 10x10 GIF resized (fill, upscale) and padded to 7000x7000, and a GIF whose 19 later frames of
    3000x3000 grow its 10x10 canvas on seek; then a job with a bad URL host (a..b)."""
    stack = full_stack
    started = time.monotonic()
    jobs = {}
    for name, data, operations in BOMBS:
        response = requests.post(f"{stack.base_url}/api/v1/jobs", files=[("files", (name, data, "image/png"))],
                                 data={"operations": json.dumps(operations)}, timeout=30)
        record.expect(response.status_code == 202, f"{name} is accepted (valid and under the input limits)",
                      response.text[:300])
        jobs[name] = response.json()["job_id"]
    outcomes = {}
    for name, job_id in jobs.items():
        end = time.monotonic() + 240
        while time.monotonic() < end:
            job = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
            if job["status"] in ("completed", "completed_with_errors", "failed"):
                break
            time.sleep(0.5)
        outcomes[name] = job
    record.figure("bombs: time until every job finished (s)", round(time.monotonic() - started, 1))
    for name, job in outcomes.items():
        [image] = job["images"]
        if name in CLIPPED_TO_THE_CANVAS:
            record.expect(job["status"] == "completed" and (image["width"], image["height"]) == (10, 10),
                          "frames past a GIF's canvas are clipped to it, as browsers show them: the growing canvas "
                          "renders at its 10x10 (each big frame decoded once, within the budget)",
                          (name, job["status"], image.get("width"), image.get("height"), image.get("error")))
            continue
        record.expect(job["status"] == "failed" and image["status"] == "failed" and image["error"],
                      "each bomb is a failed image with a readable reason", (name, job["status"], image.get("error")))
        record.figure(f"{name}: reason", image["error"])
        record.expect(requests.delete(f"{stack.base_url}/api/v1/jobs/{job['job_id']}", timeout=10).status_code == 204,
                      "a finished bomb job can be deleted", name)
    bus = SqliteBus(stack.data_dir / "bus.sqlite3")
    try:
        record.expect(bus.backlog(Settings.from_env({}).topics.tasks_dlq_sub) == 0,
                      "no bomb was retried to the dead-letter topic: each failed on its first attempt")
    finally:
        bus.close()
    bad_url = requests.post(f"{stack.base_url}/api/v1/jobs", json={"urls": ["http://a..b/x.png"]}, timeout=10)
    record.expect(bad_url.status_code == 400 and bad_url.json()["error"]["details"][0]["error"]["code"] == "invalid_url",
                  "a URL whose host no DNS can hold (a..b) is refused at once as invalid_url (it used to jam the "
                  "job pipeline)", bad_url.text[:300])
    record.expect(all(proc.poll() is None for proc in stack.procs.values()), "no process died",
                  {n: p.poll() for n, p in stack.procs.items()})
    limits_mb = {"image-handler": 768, "interaction-manager": 512, "image-processor": 1536}
    for name, proc in stack.procs.items():
        peak = _peak_rss_mb(proc.pid)
        record.figure(f"peak memory during the bombs: {name} (MB)", peak)
        if name in limits_mb:
            record.expect(peak < limits_mb[name], f"{name} stayed under its Kubernetes memory limit "
                                                  f"({limits_mb[name]} Mi)", peak)


# -- URL downloads on the whole stack --------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    """The current resident memory (VmRSS) of ``pid`` alone, in MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _unread_bytes_from(port: int) -> tuple[int, int]:
    """(connections, bytes received and not yet read) of the sockets connected to 127.0.0.1:``port``
    (from /proc/net/tcp: the downloads' side of the image server's connections)."""
    connections = unread = 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        remote, state, queues = fields[2], fields[3], fields[4]
        if remote == f"0100007F:{port:04X}" and state == "01":  # ESTABLISHED, to the server
            connections += 1
            unread += int(queues.split(":")[1], 16)
    return connections, unread


URL_DOWNLOADS = 8
URL_FILE_SIZE = (2880, 2880)  # a noise PNG of about 24.9 MB, under FETCH_MAX_BYTES (25 MiB)


@pytest.fixture(scope="module")
def image_server():
    from tests.http_servers import ImageServer, noise_png

    server = ImageServer({f"/big-{i}.png": (noise_png(URL_FILE_SIZE, seed=i), "image/png")
                          for i in range(URL_DOWNLOADS)})
    yield server
    server.release.set()
    server.stop()


@pytest.fixture(scope="module")
def url_stack(tmp_path_factory):
    stack = Stack.on_free_ports(tmp_path_factory.mktemp("urls") / "data", processors=1,
                                env={"PROGRESS_FLUSH_SECONDS": "0.3", "RATE_LIMIT_PER_SECOND": "0",
                                     "PROCESSOR_CONCURRENCY": "2", "FETCH_ALLOW_CIDRS": "127.0.0.1/32",
                                     "FETCH_TIMEOUT_SECONDS": "120", "DEDUPE_OUTPUTS": "0"})
    stack.start()
    yield stack
    stack.stop()


def test_concurrent_large_url_downloads_stream_to_storage(url_stack, image_server, record):
    """A job of 8 URLs of 24.9 MB each (noise PNGs, cheap to render) on the whole local stack, from an image server
    on 127.0.0.1 that sends each file but its last 64 KiB, then holds them: all 8 downloads are in flight in one
    processor at once, with nearly all their bytes received. The processor's resident memory is taken then (after
    the processor has read every byte the server sent), and its peak over the whole job once the server lets the
    downloads finish."""
    from tests.http_servers import HELD_BYTES

    stack, server = url_stack, image_server
    processor = stack.procs["image-processor"]
    server.release.clear()
    baseline = _rss_mb(processor.pid)
    urls = [server.url(f"/held/big-{i}.png") for i in range(URL_DOWNLOADS)]
    response = requests.post(f"{stack.base_url}/api/v1/jobs", timeout=30,
                             json={"urls": urls, "operations": [{"op": "resize", "width": 256}]})
    record.expect(response.status_code == 202, "the URL job is accepted", response.text[:300])
    job_id = response.json()["job_id"]
    sent = URL_DOWNLOADS * (len(server.files["/big-0.png"][0]) - HELD_BYTES)
    try:
        end = time.monotonic() + 240
        state = (0, 0, 0)
        while time.monotonic() < end:
            connections, unread = _unread_bytes_from(server.port)
            state = (server.holding, connections, unread)
            if state == (URL_DOWNLOADS, URL_DOWNLOADS, 0):
                break
            time.sleep(0.2)
        record.expect(state == (URL_DOWNLOADS, URL_DOWNLOADS, 0),
                      "all 8 downloads are in flight at once in one processor, every byte sent so far read", state)
        during = _rss_mb(processor.pid)
    finally:
        server.release.set()
    record.figure("URL downloads in flight at once (one processor)", URL_DOWNLOADS)
    record.figure("bytes received by the processor when sampled (MB)", round(sent / 1e6, 1))
    record.figure("processor resident memory before the job (MB)", round(baseline))
    record.figure("processor resident memory with 8 x 24.9 MB downloads in flight (MB)", round(during))
    end = time.monotonic() + 300
    while time.monotonic() < end:
        job = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("completed", "completed_with_errors", "failed"):
            break
        time.sleep(0.5)
    main_peak = _peak_rss_mb_of(processor.pid)
    record.figure("processor main process peak memory over the job (MB)", main_peak)
    for name, proc in stack.procs.items():
        record.figure(f"peak memory during the URL job: {name} (MB)", _peak_rss_mb(proc.pid))
    record.expect(job["status"] == "completed" and job["succeeded"] == URL_DOWNLOADS,
                  "every download is stored and rendered", (job["status"], [i.get("error") for i in job["images"]]))
    record.expect(during - baseline < 48, "the downloads in flight add less than 48 MB to the processor's memory "
                  f"(holding them would take {sent / 1e6:.0f} MB): they stream to storage",
                  f"{during - baseline:.0f} MB more")


def _peak_rss_mb_of(pid: int) -> int:
    """The peak resident memory (VmHWM) of ``pid`` alone."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0
