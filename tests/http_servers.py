"""Test servers on 127.0.0.1 for the import-by-URL and webhook tests: an image server with
misbehaving routes, and a webhook receiver that records what it gets."""
from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


def png(size=(40, 30), color=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def noise_png(size: tuple[int, int], seed: int = 0) -> bytes:
    """A PNG of random pixels: about 3 bytes a pixel (noise does not compress), cheap to render."""
    import random

    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def jpeg(size=(64, 48), color=(10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class _Server:
    def __init__(self, handler_class):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _ImageHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/octet-stream", **headers):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's naming
        server = self.server.owner
        server.hits.append(self.path)
        path, _, query = self.path.partition("?")
        if path in server.files:
            body, content_type = server.files[path]
            return self._send(200, body, content_type)
        if path == "/redirect":                         # /redirect?<absolute or relative target>
            return self._send(302, b"", Location=query)
        if path == "/loop":
            return self._send(302, b"", Location="/loop")
        if path == "/huge-declared":                    # says it is huge before sending anything
            self.send_response(200)
            self.send_header("Content-Length", str(10 ** 9))
            self.end_headers()
            return
        if path == "/huge-chunked":                     # no length, starts like a PNG, keeps streaming
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                head = png()[:16] + chunk
                self.wfile.write(b"%x\r\n%s\r\n" % (len(head), head))
                for _ in range(200):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            return
        if path == "/truncated":                        # a PNG that stops after 300 KB of the 2 MB it declares
            self.send_response(200)
            self.send_header("Content-Length", str(2_000_000))
            self.end_headers()
            self.wfile.write(png()[:16] + b"\0" * 300_000)
            return
        if path.startswith("/held/") and path[5:] in server.files:  # a file whose last 64 KiB wait for ``release``
            body = server.files[path[5:]][0]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body[:-HELD_BYTES])
                self.wfile.flush()
                with server.lock:
                    server.holding += 1
                server.release.wait(120)
                self.wfile.write(body[-HELD_BYTES:])
            except OSError:
                pass
            return
        if path == "/slow":                             # drips one byte per 0.3 s
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass
            return
        return self._send(404, b"not found", "text/plain")


HELD_BYTES = 64 * 1024


class ImageServer(_Server):
    """Serves ``files`` (path -> (bytes, content type)) and a few hostile routes; ``hits``
    lists every path requested. ``/held/<path>`` serves a file but its last HELD_BYTES only once
    ``release`` is set; ``holding`` counts the responses that got that far."""

    def __init__(self, files: dict[str, tuple[bytes, str]] | None = None):
        self.files = dict(files or {})
        self.hits: list[str] = []
        self.lock = threading.Lock()
        self.holding = 0
        self.release = threading.Event()
        super().__init__(_ImageHandler)


class _HookHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        server = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with server.lock:
            status = server.statuses.pop(0) if server.statuses else 200
            server.received.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                    "status": status, "at": time.time()})
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookReceiver(_Server):
    """Records every POST; answers with ``statuses`` in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.received: list[dict] = []
        self.lock = threading.Lock()
        super().__init__(_HookHandler)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} webhook calls, got {len(self.received)}")


class StallingProxy:
    """A TCP proxy on 127.0.0.1 in front of a local server whose uplink stalls: it forwards the
    first ``budget`` bytes clients send (answers always pass), then holds everything they send
    (or lets ``trickle`` bytes through every 50 ms) until :meth:`release`. A client mid-upload is then stuck as behind a dead or very slow
    link, without any timing in the test. ``release()`` closes the connections it held (the
    server sees their requests cut off) and forwards everything from then on."""

    def __init__(self, target_port: int, budget: int, trickle: int = 0):
        import socket

        self.target_port = target_port
        self.trickle = trickle      # once the budget is spent: this many bytes a connection every 50 ms
        self.budget: int | None = budget
        self.forwarded = 0          # client bytes passed on so far
        self.generation = 0         # connections of an older generation are cut
        self.cond = threading.Condition()
        self.connections: list[tuple[int, object, object]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        # a fixed small receive buffer (no autotuning): a stalled client cannot park megabytes here
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.port = self.listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.cond:
                generation = self.generation
                self.connections.append((generation, client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, generation, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, generation, False), daemon=True).start()

    def _pump(self, src, dst, generation: int, metered: bool) -> None:
        try:
            while True:
                want = 65536
                if metered:
                    with self.cond:
                        while (self.budget is not None and self.budget <= 0 and generation == self.generation
                               and not self.trickle):
                            self.cond.wait()
                        if generation != self.generation:
                            return
                        slow = self.budget is not None and self.budget <= 0
                        if self.budget is not None and not slow:
                            want = min(want, self.budget)
                    if slow:  # a crawling uplink, not a dead one
                        time.sleep(0.05)
                        want = self.trickle
                data = src.recv(want)
                if not data:
                    return
                if metered:
                    with self.cond:
                        self.forwarded += len(data)
                        if self.budget is not None:
                            self.budget -= len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _hang_up(sock)

    def release(self) -> None:
        with self.cond:
            self.generation += 1
            self.budget = None
            held, self.connections = self.connections, []
            self.cond.notify_all()
        for _generation, client, upstream in held:
            for sock in (client, upstream):
                _hang_up(sock)

    def stop(self) -> None:
        self.listener.close()
        self.release()


def _hang_up(sock) -> None:
    """Shut down first: that wakes a thread blocked reading the socket, a plain close does not."""
    import socket

    for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            step()
        except OSError:
            pass
