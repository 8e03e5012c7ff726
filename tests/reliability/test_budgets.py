"""Request budgets on the real image-handler server (gunicorn with services.image_handler.server.Worker,
8 threads): bodies that trickle in on every route, and chunked bodies past the limit. The server must
answer them with a JSON error, close them, and keep serving everyone else.
"""
from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools.stack import Stack

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
