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

    gunicorn 'services.image_handler.app:create_app()' --worker-class services.image_handler.server.Worker
"""
from __future__ import annotations

import os
import socket
import time

from gunicorn.workers.gthread import _DEFER, ThreadWorker

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


class Worker(ThreadWorker):
    def init_process(self):
        self.header_timeout = float(os.environ.get("REQUEST_HEADER_TIMEOUT") or 10)
        super().init_process()

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
