"""services.image_handler.server: where a request ends (so it reaches a thread only whole), and the byte
budget for incomplete bodies. The server itself is driven over real sockets in
tests/reliability/test_budgets.py."""
from __future__ import annotations

import io

from services.image_handler.server import (
    IN_MEMORY_BODY_BYTES,
    BufferBudget,
    PendingRequest,
)

HEAD = b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


class FakeUnreader:
    def __init__(self, rest: bytes = b""):
        self.buf, self.rest = io.BytesIO(), rest

    def chunk(self, size_hint=None):
        data, self.rest = self.rest, b""
        return data

    def unread(self, data: bytes) -> None:
        old = self.buf.getvalue()
        self.buf = io.BytesIO()
        self.buf.write(data + old)

    def read_all(self) -> bytes:
        data = self.buf.getvalue()
        while piece := self.chunk(1 << 20):
            data += piece
        return data


def pending(budget: int = 1 << 30) -> PendingRequest:
    return PendingRequest(BufferBudget(budget))


def test_a_body_is_complete_only_when_content_length_bytes_arrived():
    request = pending()
    request.feed(HEAD + b"Content-Length: 10\r\n\r\n12345")
    assert request.request is not None and not request.complete
    assert request.body_received == 5
    request.feed(b"67890")
    assert request.complete


def test_a_chunked_body_is_complete_at_its_last_chunk():
    request = pending()
    request.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert not request.complete
    request.feed(b"0\r\n\r\n")
    assert request.complete


def test_headers_split_across_reads_and_a_request_without_body():
    request = pending()
    request.feed(b"GET /healthz HTTP/1.1\r\nHo")
    assert request.request is None and not request.complete
    request.feed(b"st: x\r\n\r\n")
    assert request.complete


def test_malformed_requests_go_on_to_gunicorn_unjudged():
    request = pending()
    request.feed(b"NOT HTTP AT ALL\r\n\r\n")
    assert request.malformed


def test_expect_100_continue_is_seen_on_http_1_1_only():
    request = pending()
    request.feed(HEAD + b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert request.expects_continue()
    old = pending()
    old.feed(b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert not old.expects_continue()


def test_the_bytes_handed_over_are_exactly_those_received_small_and_large():
    for size in (10, IN_MEMORY_BODY_BYTES * 3):
        body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        pipelined = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
        request = pending()
        sent = HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body + pipelined
        for start in range(0, len(sent), 7000):
            request.feed(sent[start:start + 7000])
        assert request.complete
        unreader = FakeUnreader(rest=b"<socket>")
        kept = request.hand_over(unreader)
        assert unreader.read_all() == sent + b"<socket>"
        kept.close()


def test_what_a_request_leaves_unread_goes_to_gunicorns_buffer_for_the_next_request():
    body = b"y" * (IN_MEMORY_BODY_BYTES * 2)
    head = HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode()
    request = pending()
    request.feed(head + body + b"GET /next HTTP/1.1\r\n\r\n")
    unreader = FakeUnreader()
    kept = request.hand_over(unreader)
    assert kept.chunk(len(head)) .startswith(head)  # gunicorn reads some, then the request ends
    kept.close()
    assert unreader.buf.getvalue().endswith(b"GET /next HTTP/1.1\r\n\r\n")
    assert unreader.chunk() == b""  # and the unreader reads the socket again


def test_the_budget_refuses_bytes_past_it_and_gets_them_back_on_hand_over():
    budget = BufferBudget(1000)
    first = PendingRequest(budget)
    assert first.feed(HEAD + b"Content-Length: 5000\r\n\r\n" + b"z" * 800)
    second = PendingRequest(budget)
    assert not second.feed(HEAD + b"Content-Length: 5000\r\n\r\n" + b"z" * 800)  # the caller hands it on
    first.hand_over(FakeUnreader()).close()
    assert budget.used == 0
    third = PendingRequest(budget)
    assert third.feed(HEAD + b"Content-Length: 5\r\n\r\nzzzzz") and third.complete
