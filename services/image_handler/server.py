"""gunicorn's threaded worker, but a request gets a thread only once its headers are complete.

The stock gthread worker hands a connection to a thread as soon as its first bytes arrive,
and the thread then blocks until the rest of the headers come. A few clients that send half
a request and stall (slowloris) hold every thread, and image-handler stops answering anyone.
Here the worker first peeks at what the client sent: until the blank line that ends the
headers is there, the connection waits in gunicorn's poller (no thread held), where a
client that goes quiet is closed after the keep-alive timeout; one still trickling after
``REQUEST_HEADER_TIMEOUT`` seconds (default 10) is answered 408 and closed. Bodies are read
by the application once the headers are in, within the upload size limits.

    gunicorn 'services.image_handler.app:create_app()' --worker-class services.image_handler.server.Worker
"""
from __future__ import annotations

import os
import socket
import time

from gunicorn.workers.gthread import _DEFER, ThreadWorker

PEEK_BYTES = 64 * 1024  # headers beyond this are gunicorn's to refuse (limit_request_line / field sizes)
_TIMEOUT_BODY = (b'{"error": {"code": "request_timeout", "message": "the request headers took too long to arrive", '
                 b'"details": null}}')
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)


def headers_complete(conn) -> bool | None:
    """True when the next request's headers are all there, False when not yet, None when the
    socket has nothing to say (closed or errored: gunicorn deals with it as usual)."""
    buffered = conn.parser.unreader.buf.getvalue() if conn.initialized and conn.parser else b""
    try:
        peeked = conn.sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        peeked = b""
    except OSError:
        return None
    if not peeked and not buffered:
        return False if _still_open(conn.sock) else None
    data = buffered + peeked
    return b"\r\n\r\n" in data or b"\n\n" in data or len(peeked) >= PEEK_BYTES


def _still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class Worker(ThreadWorker):
    def init_process(self):
        self.header_timeout = float(os.environ.get("REQUEST_HEADER_TIMEOUT") or 10)
        super().init_process()

    def handle(self, conn):
        complete = headers_complete(conn)
        if complete is False:
            started = getattr(conn, "headers_started", None)
            if started is None:
                conn.headers_started = time.monotonic()
            elif time.monotonic() - started > self.header_timeout:
                self.log.info("answering 408 to %s: no complete request headers in %.0f s", conn.client,
                              self.header_timeout)
                try:
                    conn.sock.send(TIMEOUT_RESPONSE, socket.MSG_DONTWAIT)
                except OSError:
                    pass
                return False  # gunicorn closes the connection
            conn.data_ready = False
            return _DEFER  # back to the poller until more bytes arrive (or the keep-alive timeout)
        conn.headers_started = None
        return super().handle(conn)
