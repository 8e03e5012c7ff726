"""Abuse of the public API (image-handler) on the running local stack: oversized and
malformed requests, lying and hostile files, hostile filenames and email fields, foreign
origins, floods and slow clients. Each must get the right status and a clear JSON error;
the service must stay up, and a job accepted before the abuse must still come back whole.
"""
from __future__ import annotations

import io
import json
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager

from imageflow.bus.sqlite import SqliteBus
from imageflow.domain import display_name
from imageflow.messages import JobCompleted
from imageflow.settings import Settings
from tests.reliability.harness import ChaosStack, JobWatcher, make_batch, submit, verify_job

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"MAX_UPLOAD_BYTES": str(200 * 1024), "MAX_REQUEST_BYTES": str(2 * 1024 * 1024), "MAX_FILES_PER_JOB": "5",
          "MAX_IMAGE_PIXELS": "4000000", "RATE_LIMIT_PER_SECOND": "40", "RATE_LIMIT_BURST": "80",
          "REQUEST_HEADER_TIMEOUT": "3"}
# image-handler's worker with the header deadline (until the launcher passes --worker-class itself).
SERVER = {"GUNICORN_CMD_ARGS": "--worker-class services.image_handler.server.Worker"}


@pytest.fixture(scope="module")
def stack_options(sendgrid):
    return {"launcher": ChaosStack, "processors": 1,
            "env": {**sendgrid.env(), **LIMITS, "PROGRESS_FLUSH_SECONDS": "0.3"},
            "process_env": {"image-handler": SERVER}}


@pytest.fixture(scope="module")
def canary(stack):
    """A job accepted before the abuse starts; checked at the end of the module."""
    batch = make_batch(4, prefix="canary")
    return submit(stack.base_url, batch), batch


def png(size=(64, 48), color=(10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def post_job(stack, files, data=None, **kwargs) -> requests.Response:
    return requests.post(f"{stack.base_url}/api/v1/jobs", files=files, data=data or {}, timeout=30, **kwargs)


def expect_error(record, response: requests.Response, status: int, code: str | None, what: str) -> dict:
    """The answer is ``status`` with the JSON error shape (and ``code``), never a stack trace."""
    record.expect(response.status_code == status, f"{what}: answered {status}",
                  f"{response.status_code} {response.text[:300]}")
    record.expect(response.headers.get("Content-Type", "").startswith("application/json"),
                  f"{what}: the error is JSON", response.headers.get("Content-Type"))
    error = response.json()["error"]
    record.expect(bool(error["message"]) and (code is None or error["code"] == code),
                  f"{what}: the error says what is wrong ({code or error['code']})", error)
    record.expect("Traceback" not in response.text, f"{what}: no internals leak")
    return error


def raw_multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"xYzZy") -> tuple[bytes, str]:
    """A multipart body from (Content-Disposition header value, content) pairs, bytes as given."""
    body = b""
    for disposition, content in parts:
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\nContent-Type: image/png\r\n\r\n"
        body += content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


# -- sizes and counts -----------------------------------------------------------------------
def test_oversized_request_body(stack, canary, record):
    """A 3 MB multipart request against a 2 MB request limit."""
    big = [("files", (f"p{i}.png", png() + b"\0" * (190 * 1024), "image/png")) for i in range(16)]
    error = expect_error(record, post_job(stack, big), 413, "request_too_large", "an oversized request")
    record.expect("MB" in error["message"], "the message names the limit")


def test_oversized_file_is_refused_while_the_good_ones_go_through(stack, canary, record):
    """One 300 KB file (limit 200 KB) beside a good one, then the big file alone."""
    files = [("files", ("huge.png", png() + b"\0" * (300 * 1024), "image/png")), ("files", ("ok.png", png(), "image/png"))]
    response = post_job(stack, files)
    record.expect(response.status_code == 202, "a batch with one oversized file is accepted for the others",
                  response.text[:300])
    body = response.json()
    record.expect([i["filename"] for i in body["images"]] == ["ok.png"]
                  and body["rejected"][0]["error"]["code"] == "file_too_large",
                  "the oversized file is listed as rejected with file_too_large", body)
    expect_error(record, post_job(stack, files[:1]), 413, "no_valid_images", "a lone oversized file")


def test_too_many_files(stack, canary, record):
    """Six files against a limit of five per job."""
    files = [("files", (f"p{i}.png", png(), "image/png")) for i in range(6)]
    error = expect_error(record, post_job(stack, files), 413, "too_many_files", "too many files")
    record.expect("5" in error["message"], "the message gives the limit")


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims ``width`` x ``height`` over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


def test_decompression_bombs(stack, canary, record):
    """A 20000x20000 1-bit PNG (50 KB on the wire, 400 megapixels decoded) and a PNG header claiming
    65535x65535, against a 4-megapixel limit."""
    buf = io.BytesIO()
    Image.new("1", (20000, 20000), 0).save(buf, "PNG", optimize=True)
    record.figure("bomb size on the wire (KB)", len(buf.getvalue()) // 1024)
    started = time.monotonic()
    error = expect_error(record, post_job(stack, [("files", ("bomb.png", buf.getvalue(), "image/png"))]), 413,
                         "no_valid_images", "a decompression bomb")
    record.figure("time to refuse the bomb (s)", round(time.monotonic() - started, 2))
    record.expect("megapixels" in error["message"], "the message gives the size and the limit", error["message"])
    record.expect(time.monotonic() - started < 5, "the bomb is refused from its header, without decoding it")
    expect_error(record, post_job(stack, [("files", ("claims.png", _png_claiming(65535, 65535), "image/png"))]),
                 413, "no_valid_images", "a header claiming 4 gigapixels")


# -- lying files and hostile names ----------------------------------------------------------
def test_files_lying_about_their_type(stack, canary, record):
    """A text file and an HTML page named .jpg/.png and sent as images, and a real PNG sent as 'photo.jpg' with
    image/jpeg."""
    liars = [("files", ("notes.jpg", b"just some text, honestly", "image/jpeg")),
             ("files", ("page.png", b"<html><script>alert(1)</script></html>", "image/png"))]
    error = expect_error(record, post_job(stack, liars), 415, "no_valid_images", "files that are not images")
    record.expect(all(d["error"]["code"] == "unsupported_image" for d in error["details"]),
                  "each lying file is refused as not an image", error["details"])
    response = post_job(stack, [("files", ("photo.jpg", png(), "image/jpeg"))])
    record.expect(response.status_code == 202, "a real image with the wrong name and type is accepted")
    job = JobWatcher(stack.base_url, response.json()["job_id"], 1).wait(60)
    image = job["images"][0]
    record.expect(image["input_content_type"] == "image/png" and image["status"] == "succeeded",
                  "its real type is sniffed from the bytes (image/png) and it is processed", image)


HOSTILE_NAMES = ["../../../../etc/passwd.png", "..\\..\\windows\\win.png", "/abs/olute.png", "%2e%2e%2fenc.png",
                 "<img src=x onerror=alert(1)>.png", "name\u202egnp.exe", "   .png", "con.png"]


def test_path_traversal_and_control_characters_in_filenames(stack, canary, record):
    """Filenames with ../, backslashes, absolute paths, URL-encoded dots, script, a right-to-left override, and
    (in a hand-built multipart body) control characters and an embedded quote."""
    files = [("files", (name, png(color=(i * 20, 50, 90)), "image/png")) for i, name in enumerate(HOSTILE_NAMES[:5])]
    response = post_job(stack, files)
    record.expect(response.status_code == 202, "hostile names do not stop good images", response.text[:300])
    created = response.json()
    returned = [i["filename"] for i in created["images"]]
    record.expect(len(returned) == 5 and not any("/" in n or "\\" in n for n in returned)
                  and returned[0] == "passwd.png" and returned[4] == HOSTILE_NAMES[4] == display_name(HOSTILE_NAMES[4]),
                  "the API returns each name as JSON data: the client's name without its directories", returned)
    job_id = created["job_id"]
    body, content_type = raw_multipart([
        (b'form-data; name="files"; filename="ctl\x01\x1b[31mred\x7f.png"', png()),
        (b'form-data; name="files"; filename="quo\\"te.png"', png()),
        (b'form-data; name="files"; filename="' + HOSTILE_NAMES[5].encode() + b'"', png()),
    ])
    raw = requests.post(f"{stack.base_url}/api/v1/jobs", data=body, headers={"Content-Type": content_type}, timeout=30)
    record.expect(raw.status_code == 202, "control characters in names do not break the request", raw.text[:300])
    shown = [i["filename"] for i in raw.json()["images"]]
    record.expect(not any(ord(ch) < 32 or ord(ch) == 127 or 0x202A <= ord(ch) <= 0x202E for n in shown for ch in n),
                  "names are returned without control or bidi-override characters", shown)
    job = JobWatcher(stack.base_url, job_id, 5).wait(60)
    blobs_root = stack.data_dir / "blobs"
    stored = sorted(p.relative_to(blobs_root).as_posix() for p in blobs_root.rglob("*") if p.is_file())
    mine = [p for p in stored if p.startswith((job_id, raw.json()["job_id"]))]
    record.expect(all(p.split("/")[1] in ("input", "output", "preview") and len(p.split("/")) == 3 for p in mine),
                  "every stored object sits at <job>/input|output|preview/<id>-<safe name>", mine)
    record.expect(all(ch.isalnum() or ch in "._-/" for p in mine for ch in p),
                  "stored names are reduced to [A-Za-z0-9._-]", mine)
    outside = [p for p in stack.data_dir.rglob("*") if p.is_file() and not p.is_relative_to(blobs_root)
               and p.suffix not in (".sqlite3", ".log", ".json", "") and "-wal" not in p.name and "-shm" not in p.name
               and "email-sent" not in p.parts]
    record.expect(not outside, "nothing was written outside the blob store", outside[:5])
    for image in job["images"]:
        download = requests.get(image["input_url"], timeout=10)
        disposition = download.headers.get("Content-Disposition", "")
        record.expect(download.status_code == 200 and all(ch.isalnum() or ch in '._-;=" ' for ch in disposition),
                      "downloads carry a sanitised file name in Content-Disposition", disposition)
    record.expect(job["status"] == "completed", "the job with hostile names completed", job["status"])


def test_header_injection_through_the_email_field(stack, canary, sendgrid, record):
    """Email values with CRLF + Bcc, several addresses, a display name; and a job.completed carrying a CRLF address
    published straight onto the bus (past the API) to the email function."""
    for email in ["victim@example.com\r\nBcc: everyone@example.com", "a@example.com, b@example.com",
                  "Mallory <m@example.com>", "x" * 300 + "@example.com"]:
        response = post_job(stack, [("files", ("a.png", png(), "image/png"))], {"email": email})
        expect_error(record, response, 400, "invalid_email", "a hostile email field")
    bus = SqliteBus(stack.data_dir / "bus.sqlite3")
    rogue_id = "f" * 32
    event = JobCompleted(job_id=rogue_id, status="completed", total=1, succeeded=1, failed=0,
                         email="victim@example.com\r\nBcc: everyone@example.com", results_url="http://x/jobs/" + rogue_id)
    bus.publish(Settings.from_env({}).topics.notifications, event.encode(), {"job_id": rogue_id})
    bus.close()
    deadline = time.monotonic() + 30  # through the push bridge to the function: slower on a loaded machine
    while "refusing to mail invalid address" not in stack.log_text("email-function") and time.monotonic() < deadline:
        time.sleep(0.2)
    record.expect(not sendgrid.mails_for(rogue_id), "the email function refuses an address with a line break "
                                                    "even when the API is bypassed")
    log = stack.log_text("email-function")
    record.expect("refusing to mail invalid address" in log, "and logs why")


def test_script_in_filenames_is_data_not_markup(stack, canary, record):
    """A filename holding <svg onload> and <img onerror> markup: the API returns it as JSON data, and the frontend
    (frontend/src) renders names only as React text, with no raw-HTML sinks anywhere."""
    name = '<svg onload=alert(1)><img src=x onerror=alert(2)>.png'
    response = post_job(stack, [("files", (name, png(), "image/png"))])
    record.expect(response.status_code == 202 and response.json()["images"][0]["filename"] == name,
                  "the API keeps the name as data", response.text[:200])
    status = requests.get(f"{stack.base_url}/api/v1/jobs/{response.json()['job_id']}", timeout=10)
    record.expect(status.headers["Content-Type"].startswith("application/json") and name in status.json()
                  ["images"][0]["filename"], "the job document is served as application/json")
    sources = [p for p in (REPO_ROOT / "frontend" / "src").rglob("*") if p.suffix in (".js", ".jsx")
               and ".test." not in p.name and "test" not in p.parts]
    record.expect(len(sources) > 3, "the frontend sources are there to check", len(sources))
    sinks = ["dangerouslySetInnerHTML", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]
    found = [(p.name, s) for p in sources for s in sinks if s in p.read_text()]
    record.expect(not found, "the frontend has no raw-HTML sink (dangerouslySetInnerHTML, innerHTML, ...)", found)
    uses = [p.name for p in sources if "filename}" in p.read_text() or ".filename" in p.read_text()]
    record.expect(bool(uses), "the frontend does show file names (as JSX text)", uses)


# -- malformed requests ---------------------------------------------------------------------
def test_malformed_multipart_and_json(stack, canary, record):
    """A multipart body with no closing boundary, a multipart type with no boundary, a JSON body instead of
    multipart, operations that are not JSON, deeply nested JSON, and JSON of the wrong shape."""
    url = f"{stack.base_url}/api/v1/jobs"
    cut = b'--b0\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n' + png()[:40]
    response = requests.post(url, data=cut, headers={"Content-Type": "multipart/form-data; boundary=b0"}, timeout=30)
    record.expect(response.status_code in (400, 415) and response.json()["error"]["message"],
                  "a cut multipart body: 400 with a JSON error", f"{response.status_code} {response.text[:200]}")
    response = requests.post(url, data=b"garbage", headers={"Content-Type": "multipart/form-data"}, timeout=30)
    record.expect(response.status_code in (400, 415) and response.json()["error"]["message"],
                  "multipart without a boundary: 400 with a JSON error", f"{response.status_code} {response.text[:200]}")
    response = requests.post(url, json={"files": ["a.png"]}, timeout=30)
    record.expect(response.status_code in (400, 415) and response.json()["error"]["message"],
                  "a JSON body where multipart is expected is refused with a JSON error",
                  f"{response.status_code} {response.text[:200]}")
    files = [("files", ("a.png", png(), "image/png"))]
    expect_error(record, post_job(stack, files, {"operations": '[{"op": "resize", '}), 400, "malformed_operations",
                 "operations that are not JSON")
    expect_error(record, post_job(stack, files, {"operations": "[" * 50000 + "]" * 50000}), 400, None,
                 "operations nested 50000 deep")
    deep = requests.post(url, data='{"urls": ' + "[" * 50000 + "]" * 50000 + "}",
                         headers={"Content-Type": "application/json"}, timeout=30)
    record.expect(deep.status_code in (400, 415) and deep.json()["error"]["message"],
                  "a JSON body nested 50000 deep: refused with a JSON error, not a 500",
                  f"{deep.status_code} {deep.text[:200]}")
    expect_error(record, post_job(stack, files, {"operations": '{"op": "resize"}'}), 422, "invalid_operations",
                 "operations that are an object, not a list")
    expect_error(record, post_job(stack, files, {"operations": '[{"op": "resize", "width": "wide"}]'}), 422,
                 "invalid_operations", "an operation with a wrongly typed field")
    expect_error(record, requests.get(f"{stack.base_url}/api/v1/jobs/..%2F..%2Fetc%2Fpasswd", timeout=10), 404,
                 None, "a job id that is a path")


# -- origins, floods, slow clients ----------------------------------------------------------
def test_cors_from_a_foreign_origin(stack, canary, record):
    """Reads, preflights and posts carrying Origin: https://evil.example."""
    job_url = canary[0]["links"]["self"]
    headers = {"Origin": "https://evil.example"}
    read = requests.get(job_url, headers=headers, timeout=10)
    preflight = requests.options(f"{stack.base_url}/api/v1/jobs", timeout=10, headers={
        **headers, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    post = post_job(stack, [("files", ("a.png", png(), "image/png"))], headers=headers)
    for what, response in (("a read", read), ("a preflight", preflight), ("a post", post)):
        record.expect("Access-Control-Allow-Origin" not in response.headers
                      and "Access-Control-Allow-Credentials" not in response.headers,
                      f"{what} from a foreign origin gets no Access-Control-Allow-* header", dict(response.headers))


class SourceAddress(HTTPAdapter):
    """Send from another loopback address (a second client, as far as the server can tell)."""

    def __init__(self, source: str, **kwargs):
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **kwargs):
        self.poolmanager = PoolManager(num_pools=connections, maxsize=maxsize, block=block,
                                       source_address=(self.source, 0), **kwargs)


def test_request_flood_gets_429_and_others_are_still_served(stack, canary, record):
    """One client (127.0.0.2) floods the API with 600 requests on 16 connections; another (127.0.0.1) keeps using
    it meanwhile. The limit here is 40 requests/s with bursts of 80."""
    flooder = requests.Session()
    flooder.mount("http://", SourceAddress("127.0.0.2", pool_maxsize=16))
    job_url = canary[0]["links"]["self"]

    def hit(_):
        response = flooder.get(job_url, timeout=30)
        return response.status_code, response.headers.get("Retry-After"), response.text

    polite = []
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        future = pool.map(hit, range(600))
        while len(polite) < 10:
            t = time.monotonic()
            polite.append((requests.get(job_url, timeout=30).status_code, time.monotonic() - t))
            time.sleep(0.1)
        answers = list(future)
    elapsed = time.monotonic() - started
    codes = [a[0] for a in answers]
    limited = [a for a in answers if a[0] == 429]
    record.figure("flood: requests / answered 200 / answered 429", f"{len(codes)} / {codes.count(200)} / "
                                                                   f"{len(limited)}")
    record.figure("flood duration (s)", round(elapsed, 1))
    record.figure("other client's latency during the flood, max (ms)", round(max(p[1] for p in polite) * 1000))
    # how many are refused depends on how fast the server answers (a loaded machine is slower than
    # the limit); the bound that matters is the next one
    record.expect(set(codes) <= {200, 429} and len(limited) >= 1, "the flood is answered 429 past the limit",
                  {c: codes.count(c) for c in set(codes)})
    record.expect(codes.count(200) <= 80 + 40 * elapsed + 5, "the flooder got no more than its burst plus the rate")
    record.expect(all(a[1] and int(a[1]) >= 1 for a in limited), "each 429 carries Retry-After")
    record.expect(json.loads(limited[0][2])["error"]["code"] == "rate_limited", "and a JSON error rate_limited")
    record.expect(all(p[0] == 200 for p in polite), "another client is served normally during the flood", polite)
    time.sleep(2)
    record.expect(flooder.get(job_url, timeout=10).status_code == 200, "the flooder is served again after waiting")


def test_slow_clients_are_timed_out_and_do_not_block_others(stack, canary, record):
    """Twenty connections each send half a request's headers and then stall (slowloris), against image-handler's
    8 threads (services/image_handler/server.py, header deadline REQUEST_HEADER_TIMEOUT=3 s here); meanwhile another
    client calls the API; then a client sends its headers one byte every 0.5 s."""
    stalled = []
    for _ in range(20):
        conn = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
        conn.sendall(b"GET /api/v1/operations HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        stalled.append(conn)
    try:
        time.sleep(1)
        started = time.monotonic()
        try:
            ok = requests.get(f"{stack.base_url}/healthz", timeout=12).status_code == 200
        except requests.RequestException:
            ok = False
        latency = time.monotonic() - started
        record.figure("another client's /healthz latency with 20 stalled connections (s)", round(latency, 2))
        answers: dict[int, bytes] = {}
        closed_after = _time_until_closed(stalled, limit=15, answers=answers)
        record.figure("stalled connections closed by the server after (s)", closed_after)
        record.expect(ok and latency < 10, "other clients are served while slow clients stall", round(latency, 2))
        record.expect(closed_after is not None and closed_after < 10, "the server closes stalled connections",
                      closed_after)
        record.expect(all(a.startswith(b"HTTP/1.1 408") for a in answers.values()),
                      "a stalled connection gets a 408 or nothing, never a partial answer", list(answers.values())[:2])
        trickled = _trickle(stack.port, interval=0.5, limit=15)
        record.expect(trickled.startswith(b"HTTP/1.1 408") and b"request_timeout" in trickled,
                      "a client trickling its headers past the deadline is answered 408 with a JSON error", trickled)
        record.expect(requests.get(f"{stack.base_url}/api/v1/operations", timeout=5).status_code == 200,
                      "the API answers normally afterwards")
    finally:
        for conn in stalled:
            conn.close()


def _time_until_closed(conns: list[socket.socket], limit: float, answers: dict[int, bytes]) -> float | None:
    """Seconds until the server closed every connection (None if some stayed open past ``limit``);
    what each received before EOF goes into ``answers``."""
    started = time.monotonic()
    open_ = set(range(len(conns)))
    for conn in conns:
        conn.settimeout(0.05)
    while open_ and time.monotonic() - started < limit:
        for i in list(open_):
            try:
                data = conns[i].recv(4096)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if data:
                answers[i] = answers.get(i, b"") + data
            else:
                open_.discard(i)  # EOF: the server let go
    return None if open_ else round(time.monotonic() - started, 1)


def _trickle(port: int, interval: float, limit: float) -> bytes:
    """Send a request one byte every ``interval`` seconds; what the server answered (b"" if nothing)."""
    request = b"GET /api/v1/operations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as conn:
        started = time.monotonic()
        try:
            for byte in request:
                conn.sendall(bytes([byte]))
                time.sleep(interval)
                if time.monotonic() - started > limit:
                    break
        except OSError:
            pass  # the server closed the connection on us
        conn.settimeout(2)
        try:
            return conn.recv(4096)
        except OSError:
            return b""


# -- still standing -------------------------------------------------------------------------
def test_zz_service_still_up_and_nothing_accepted_was_lost(stack, canary, sendgrid, record):
    """After all of the above: the processes are the ones started at the beginning (none crashed), health is
    green, and the job accepted before the abuse came back whole, mailed once."""
    record.expect(all(proc.poll() is None for proc in stack.procs.values()), "no process crashed or was restarted",
                  {n: p.poll() for n, p in stack.procs.items()})
    record.expect(requests.get(f"{stack.base_url}/readyz", timeout=10).status_code == 200, "image-handler is ready")
    created, batch = canary
    job = JobWatcher(stack.base_url, created["job_id"], len(batch)).wait(60)
    verify_job(stack, job, batch, record, sendgrid=sendgrid)
