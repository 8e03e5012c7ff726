"""gunicorn's threaded worker, but a request gets a thread only once all of it has arrived.

The stock gthread worker hands a connection to a thread as soon as its first bytes arrive, and the
thread then blocks until the rest of the request comes. A few clients that send half a request, or a
body one byte at a time, and stall (slowloris) hold every thread, and image-handler stops answering
anyone. Here the worker reads what the client has sent so far without blocking and keeps it; while the
request is incomplete the connection waits in gunicorn's poller, where it holds no thread. Only a whole
request (headers and body, framed by Content-Length or chunked encoding as h11 reads them) goes to a
thread, which then parses it from what was kept: gunicorn's parser as usual, the body read by the
application within the upload size limits. This is what nginx's request buffering does in front of an
application, done in the server itself, so it holds wherever the image-handler runs (locally, and on
GKE, where ``/api/`` reaches it from the load balancer without nginx).

Budgets while a request is incomplete, each answered 408 with a JSON error and the connection closed:

- headers: complete within ``REQUEST_HEADER_TIMEOUT`` seconds (default 10) of the first byte;
- body: each wait for more bytes at most ``REQUEST_BODY_TIMEOUT`` seconds (default 15), and the whole
  body within that plus its size at ``REQUEST_BODY_MIN_BYTES_PER_SECOND`` (default 16 KiB/s).

A body is kept in memory up to ``IN_MEMORY_BODY_BYTES`` per connection, past that in a temporary file.
Bodies larger than any route accepts (a multipart body past ``MAX_REQUEST_BYTES``, another body past
``MAX_JSON_BYTES`` and ``MAX_UPLOAD_BYTES``), and bodies arriving while this process already keeps
``2 x MAX_REQUEST_BYTES`` of incomplete bodies, go to a thread at once: the application then refuses
the first before reading it, and the second is read by the thread under the same deadlines
(``BodyDeadline``), as before, so a flood of large bodies cannot fill the disk.

    gunicorn 'services.image_handler.app:create_app()' --worker-class services.image_handler.server.Worker
"""
from __future__ import annotations

import json
import socket
import tempfile
import threading
import time

import h11
from gunicorn.workers.gthread import _DEFER, ThreadWorker
from werkzeug.exceptions import RequestTimeout

from imageflow.settings import Settings

MAX_HEADER_BYTES = 64 * 1024  # past this gunicorn's own limits (request line, field sizes) decide
IN_MEMORY_BODY_BYTES = 64 * 1024  # per connection; 1,000 connections keep at most 64 MB in memory
READ_ROUND_BYTES = 1024 * 1024  # read per wake-up, so one fast upload does not keep a thread long
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"


def timeout_response(message: str) -> bytes:
    body = json.dumps({"error": {"code": "request_timeout", "message": message, "details": None}}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


HEADERS_TIMEOUT_RESPONSE = timeout_response("the request headers took too long to arrive")
BODY_TIMEOUT_RESPONSE = timeout_response("the request body arrived too slowly; send it without pauses")


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


class BufferBudget:
    """Bytes of incomplete request bodies this process keeps (memory and temporary files)."""

    def __init__(self, limit: int):
        self.limit, self.used, self._lock = limit, 0, threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self.used -= size


class PendingRequest:
    """One request arriving on a connection: its bytes as received (to hand to gunicorn's parser
    unchanged) and h11 reading the same bytes to tell where the request ends."""

    def __init__(self, budget: BufferBudget):
        self.framing = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        # Closed when the request is handed over or refused (it outlives this call).
        self.raw = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BODY_BYTES)  # noqa: SIM115
        self.budget, self.held = budget, 0
        self.started, self.body_started = time.monotonic(), None
        self.size = self.header_size = 0
        self.request: h11.Request | None = None
        self.complete = self.malformed = self.continue_sent = False

    def feed(self, data: bytes) -> bool:
        """Keep ``data``; False when the budget has no room for it (the caller hands the request on at
        once, with what it has: nothing received is dropped)."""
        room = self.budget.take(len(data))
        if room:
            self.held += len(data)
        self._keep(data)
        return room

    def _keep(self, data: bytes) -> None:
        self.raw.write(data)
        self.size += len(data)
        if self.complete or self.malformed:
            return  # bytes past the request (pipelined): gunicorn reads them after it
        try:
            self.framing.receive_data(data)
            while (event := self.framing.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                if isinstance(event, h11.Request):
                    self.request, self.body_started = event, time.monotonic()
                    self.header_size = self.size - len(self.framing.trailing_data[0])
                elif isinstance(event, h11.EndOfMessage):
                    self.complete = True
                    break
        except h11.RemoteProtocolError:
            self.malformed = True  # gunicorn's parser answers it in its own words

    @property
    def body_received(self) -> int:
        return self.size - self.header_size

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.request.headers if key == name), None) if self.request else None

    def expects_continue(self) -> bool:
        return (self.request is not None and self.request.http_version == b"1.1"
                and (self.header(b"expect") or b"").lower() == b"100-continue")

    def body_deadline(self, timeout: float, min_rate: float) -> float:
        return self.body_started + timeout + self.body_received / min_rate

    def release(self) -> None:
        self.budget.give_back(self.held)
        self.held = 0

    def hand_over(self, unreader) -> KeptBytes:
        """Give what was received to gunicorn's parser (``unreader``) and stop counting it."""
        self.release()
        self.raw.seek(0)
        return KeptBytes(self.raw, self.size, unreader)


class KeptBytes:
    """What was received before a request went to a thread: gunicorn's unreader reads it first, then
    the socket (pipelined requests, or a body that went on at once)."""

    def __init__(self, raw, size: int, unreader):
        self.raw, self.unreader, self.socket_chunk = raw, unreader, unreader.chunk
        if size <= IN_MEMORY_BODY_BYTES:  # still in memory: gunicorn's own buffer holds it
            unreader.unread(raw.read())
            raw.close()
        else:
            unreader.chunk = self.chunk

    def chunk(self, size_hint=None) -> bytes:
        if not self.raw.closed:
            if data := self.raw.read(max(size_hint or 0, 64 * 1024)):
                return data
            self.raw.close()
        return self.socket_chunk(size_hint)

    def close(self) -> None:
        """After the request: what is left in the file (the next requests, pipelined) goes behind what
        gunicorn read ahead into its buffer, where gunicorn looks for a next request, and the unreader
        reads the socket again."""
        if not self.raw.closed:
            self.unreader.buf.seek(0, 2)
            self.unreader.buf.write(self.raw.read())
            self.raw.close()
        self.unreader.chunk = self.socket_chunk


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
        settings = Settings.from_env()
        self.header_timeout = settings.request_header_timeout_seconds
        self.body_timeout = settings.request_body_timeout_seconds
        self.body_min_rate = settings.request_body_min_bytes_per_second
        self.multipart_limit = settings.max_request_bytes
        self.other_body_limit = max(settings.max_json_bytes, settings.max_upload_bytes)
        self.buffer_budget = BufferBudget(2 * settings.max_request_bytes)
        super().init_process()

    def handle_request(self, req, conn):
        if getattr(conn, "continue_sent", False):
            req._expected_100_continue = False  # sent while the body arrived; gunicorn would send a second
            conn.continue_sent = False
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
        if conn.is_http2 or self.cfg.is_ssl:
            return super().handle(conn)
        pending = getattr(conn, "pending", None)
        if pending is None:  # a new request: start with what the last one left (pipelined or read ahead)
            pending = conn.pending = PendingRequest(self.buffer_budget)
            leftover = conn.parser.unreader.take_buffered() if conn.parser else b""
            if leftover and not pending.feed(leftover):
                return self._hand_over(conn, pending)
        new, closed = read_available(conn.sock, READ_ROUND_BYTES)
        if closed or (new and not pending.feed(new)) or pending.complete or pending.malformed:
            return self._hand_over(conn, pending)
        now = time.monotonic()
        if pending.request is None:  # the headers are still arriving
            if pending.size >= MAX_HEADER_BYTES:
                return self._hand_over(conn, pending)
            if now - pending.started > self.header_timeout:
                self.log.info("answering 408 to %s: no complete request headers in %.0f s", conn.client,
                              self.header_timeout)
                return self._refuse(conn, HEADERS_TIMEOUT_RESPONSE)
            # Nothing yet: an idle connection waits the keep-alive timeout, as gunicorn's own does.
            conn.wait_until = pending.started + self.header_timeout if pending.size else None
        else:
            if self._past_any_limit(pending):
                return self._hand_over(conn, pending)  # refused by the application before it reads the body
            deadline = pending.body_deadline(self.body_timeout, self.body_min_rate)
            if now > deadline:
                self.log.info("answering 408 to %s: request body too slow (%d bytes in %.0f s)", conn.client,
                              pending.body_received, now - pending.body_started)
                return self._refuse(conn, BODY_TIMEOUT_RESPONSE)
            if pending.expects_continue() and not pending.continue_sent:
                pending.continue_sent = conn.continue_sent = True
                try:
                    conn.sock.send(CONTINUE_RESPONSE)
                except OSError:
                    return self._hand_over(conn, pending)
            conn.wait_until = min(now + self.body_timeout, deadline)
        conn.data_ready = False
        return _DEFER  # back to the poller until more bytes arrive (or conn.wait_until passes)

    def _past_any_limit(self, pending: PendingRequest) -> bool:
        multipart = (pending.header(b"content-type") or b"").lower().startswith(b"multipart/")
        limit = self.multipart_limit if multipart else self.other_body_limit
        declared = pending.header(b"content-length")
        return pending.body_received > limit or (declared is not None and declared.isdigit()
                                                 and int(declared) > limit)

    def _hand_over(self, conn, pending: PendingRequest):
        """The request (whole, or going on at once) to gunicorn's parser, in this thread."""
        conn.pending = conn.wait_until = None
        conn.init()
        kept = pending.hand_over(conn.parser.unreader)
        conn.data_ready = True
        try:
            return super().handle(conn)
        finally:
            kept.close()

    def _refuse(self, conn, response: bytes) -> bool:
        self._drop_pending(conn)
        try:
            conn.sock.send(response, socket.MSG_DONTWAIT)
            conn.sock.shutdown(socket.SHUT_RDWR)  # so gunicorn's close does not linger on the main loop
        except OSError:
            pass
        return False

    @staticmethod
    def _drop_pending(conn) -> None:
        pending = getattr(conn, "pending", None)
        if pending is not None:
            pending.release()
            pending.raw.close()
            conn.pending = None

    def finish_request(self, conn, fs):
        super().finish_request(conn, fs)
        wait_until = getattr(conn, "wait_until", None)
        if wait_until is not None and not fs.cancelled() and fs.exception() is None and fs.result() is _DEFER:
            conn.timeout = wait_until  # an incomplete request's own deadline, not the keep-alive timeout

    def murder_pending(self):
        """Close the waiting connections whose time is up; an incomplete request is answered 408 first.
        (gunicorn's own stops at the first connection not yet due: these deadlines are not in order.)"""
        now = time.monotonic()
        for conn in [c for c in self.pending_conns if c.timeout <= now]:
            self.pending_conns.remove(conn)
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            self.nr_conns -= 1
            pending = getattr(conn, "pending", None)
            if pending is not None and pending.size:
                self._refuse(conn, BODY_TIMEOUT_RESPONSE if pending.request else HEADERS_TIMEOUT_RESPONSE)
            self._drop_pending(conn)
            conn.close()
