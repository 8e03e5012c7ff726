"""gunicorn's threaded worker, but a request gets a thread only once its headers are complete.

The stock gthread worker hands a connection to a thread as soon as its first bytes arrive,
and the thread then blocks until the rest of the headers come. A few clients that send half
a request and stall (slowloris) hold every thread, and image-handler stops answering anyone.
Here the worker reads what the client has sent so far without blocking and keeps it; until
the blank line that ends the headers is there, the connection waits in gunicorn's poller (no
thread held), where a client that goes quiet is closed after the keep-alive timeout, and one
still trickling after ``REQUEST_HEADER_TIMEOUT`` seconds (default 10) is answered 408 and
closed. The bytes read are handed to gunicorn's parser, which then parses the request as
usual; the body is read by the application within the upload size limits.

The body is then held to a deadline as well, on every route: each read waits at most
``REQUEST_BODY_TIMEOUT`` seconds (default 15), and the body as a whole may take that long
plus its size at ``REQUEST_BODY_MIN_BYTES_PER_SECOND`` (default 16 KiB/s). A client that
trickles its body slower is answered 408 and the connection is closed, so a few slow
uploads cannot hold every thread.

    gunicorn 'services.image_handler.app:create_app()' --worker-class services.image_handler.server.Worker
"""
from __future__ import annotations

import os
import socket
import time

from gunicorn.workers.gthread import _DEFER, ThreadWorker
from werkzeug.exceptions import RequestTimeout

from imageflow.settings import Settings

MAX_HEADER_BYTES = 64 * 1024  # past this gunicorn's own limits (request line, field sizes) decide
_TIMEOUT_BODY = (b'{"error": {"code": "request_timeout", "message": "the request headers took too long to arrive", '
                 b'"details": null}}')
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)


def read_available(sock: socket.socket, limit: int) -> tuple[bytes, bool]:
    """What the client has sent so far (up to ``limit`` bytes) without blocking, and whether it closed."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(limit - len(data), socket.MSG_DONTWAIT)
        except BlockingIOError:
            return data, False
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def headers_end(data: bytes) -> bool:
    return b"\r\n\r\n" in data or b"\n\n" in data


class BodyTooSlow(RequestTimeout):
    description = "the request body arrived too slowly; send it without pauses"


class BodyDeadline:
    """Holds one request's body reads (gunicorn's unreader, which every body read goes through) to
    a deadline: ``timeout`` seconds per read, and ``timeout`` + bytes received / ``min_rate`` in all.
    Past it a read by the application raises BodyTooSlow (answered 408); once the response is sent
    (``draining``: gunicorn discards the unread rest, which its own drain does not bound against a
    trickle) it raises socket.timeout, on which gunicorn closes the connection."""

    def __init__(self, unreader, sock: socket.socket, timeout: float, min_rate: float):
        self.unreader, self.sock, self.timeout, self.min_rate = unreader, sock, timeout, min_rate
        self.started, self.received, self.expired, self.draining = time.monotonic(), 0, False, False
        self._read = unreader.chunk
        unreader.chunk = self.chunk

    def _too_slow(self) -> Exception:
        self.expired = True
        return socket.timeout("request body too slow") if self.draining else BodyTooSlow()

    def chunk(self, size_hint=None) -> bytes:
        wait = min(self.timeout, self.started + self.timeout + self.received / self.min_rate - time.monotonic())
        if wait <= 0:
            raise self._too_slow()
        self.sock.settimeout(wait)
        try:
            data = self._read(size_hint)
        except socket.timeout:
            raise self._too_slow() from None
        finally:
            self.sock.settimeout(None)
        self.received += len(data)
        return data

    def remove(self) -> None:
        self.unreader.chunk = self._read


class Worker(ThreadWorker):
    def init_process(self):
        self.header_timeout = float(os.environ.get("REQUEST_HEADER_TIMEOUT") or 10)
        settings = Settings.from_env()
        self.body_timeout = settings.request_body_timeout_seconds
        self.body_min_rate = settings.request_body_min_bytes_per_second
        super().init_process()

    def handle_request(self, req, conn):
        deadline = conn.body_deadline = BodyDeadline(conn.parser.unreader, conn.sock, self.body_timeout,
                                                     self.body_min_rate)
        try:
            keepalive = super().handle_request(req, conn)
        finally:
            deadline.draining = True
        return keepalive and not deadline.expired  # a slow body's rest is not waited for: close

    def _keepalive_after(self, conn, keepalive):
        try:
            return super()._keepalive_after(conn, keepalive)  # drains the unread body, under the deadline
        finally:
            deadline = getattr(conn, "body_deadline", None)
            if deadline:
                deadline.remove()
                conn.body_deadline = None

    def handle(self, conn):
        if conn.is_http2:
            return super().handle(conn)
        # Bytes already received: read ahead by the parser (keep-alive) or kept here last time.
        held = conn.parser.unreader.take_buffered() if conn.parser else getattr(conn, "held", b"")
        new, closed = read_available(conn.sock, MAX_HEADER_BYTES - len(held))
        data = held + new
        if closed or len(data) >= MAX_HEADER_BYTES or headers_end(data):
            conn.held, conn.headers_started = b"", None
            conn.init()
            conn.parser.unreader.unread(data)
            conn.data_ready = True  # nothing to wait for: the parser has the headers
            return super().handle(conn)
        if conn.parser:
            conn.parser.unreader.unread(data)
        else:
            conn.held = data
        started = getattr(conn, "headers_started", None)
        if started is None:
            conn.headers_started = time.monotonic()
        elif time.monotonic() - started > self.header_timeout:
            self.log.info("answering 408 to %s: no complete request headers in %.0f s", conn.client,
                          self.header_timeout)
            try:
                conn.sock.send(TIMEOUT_RESPONSE, socket.MSG_DONTWAIT)
                conn.sock.shutdown(socket.SHUT_RDWR)  # so gunicorn's close does not linger on the main loop
            except OSError:
                pass
            return False
        conn.data_ready = False
        return _DEFER  # back to the poller until more bytes arrive (or the keep-alive timeout)
