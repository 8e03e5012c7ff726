"""Blob store contract, for every adapter."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from imageflow.blobstore import BlobExists, BlobNotFound


@pytest.fixture
def prefix():
    return uuid.uuid4().hex


def test_put_get_roundtrip(blobstore, prefix):
    blobstore.put(f"{prefix}/input/a-photo.jpg", b"\xff\xd8data", "image/jpeg")
    assert blobstore.get(f"{prefix}/input/a-photo.jpg") == b"\xff\xd8data"
    with blobstore.open(f"{prefix}/input/a-photo.jpg") as fh:
        assert fh.read() == b"\xff\xd8data"
    assert blobstore.exists(f"{prefix}/input/a-photo.jpg")


def test_overwrite_replaces_whole_object(blobstore, prefix):
    path = f"{prefix}/output/x.png"
    blobstore.put(path, b"first version, longer", "image/png")
    blobstore.put(path, b"second", "image/png")
    assert blobstore.get(path) == b"second"


def test_missing_object(blobstore, prefix):
    with pytest.raises(BlobNotFound):
        blobstore.get(f"{prefix}/input/nothing.jpg")
    assert not blobstore.exists(f"{prefix}/input/nothing.jpg")


def test_list_and_delete_prefix(blobstore, prefix):
    for name in ("input/1-a.jpg", "input/2-b.jpg", "output/1-a.webp"):
        blobstore.put(f"{prefix}/{name}", b"x", "application/octet-stream")
    assert blobstore.list(f"{prefix}/input/") == [f"{prefix}/input/1-a.jpg", f"{prefix}/input/2-b.jpg"]
    assert len(blobstore.list(f"{prefix}/")) == 3
    assert blobstore.delete_prefix(f"{prefix}/") == 3
    assert blobstore.list(f"{prefix}/") == []


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/path", "a/../../b", "a/./b", "a\\b", "a\x00b"])
def test_paths_never_escape(blobstore, bad):
    with pytest.raises(ValueError):
        blobstore.put(bad, b"x", "text/plain")


def test_check_passes(blobstore):
    blobstore.check()


def test_put_stream_writes_the_chunks_as_one_object(blobstore, prefix):
    """A download streamed in: past the resumable threshold on Cloud Storage (9 MiB in 64 KiB chunks)."""
    path = f"{prefix}/input/a-big.png"
    chunk = bytes(range(256)) * 256
    size = blobstore.put_stream(path, (chunk for _ in range(144)), "image/png")
    assert size == 144 * len(chunk) == 9 * 1024 * 1024
    data = blobstore.get(path)
    assert len(data) == size and data == chunk * 144
    assert blobstore.list(f"{prefix}/") == [path]


class Aborted(Exception):
    pass


def test_an_aborted_stream_leaves_nothing_behind(blobstore, prefix):
    """A download that fails half-way (too large, cut short): no partial object, and an object already
    at the path (an earlier write) stays whole."""
    def chunks():
        yield b"\x89PNG\r\n\x1a\n" + b"x" * 70_000
        yield b"y" * 70_000
        raise Aborted("the file is larger than the limit")

    path = f"{prefix}/input/b-cut.png"
    with pytest.raises(Aborted):
        blobstore.put_stream(path, chunks(), "image/png")
    assert not blobstore.exists(path) and blobstore.list(f"{prefix}/") == []
    blobstore.put(f"{prefix}/output/c.png", b"the earlier object", "image/png")
    with pytest.raises(Aborted):
        blobstore.put_stream(f"{prefix}/output/c.png", chunks(), "image/png")
    assert blobstore.get(f"{prefix}/output/c.png") == b"the earlier object"
    assert blobstore.list(f"{prefix}/") == [f"{prefix}/output/c.png"]


def test_a_write_once_put_leaves_an_existing_object_alone(blobstore, prefix):
    """``if_absent``: the first write lands with its metadata; any later one raises BlobExists, put or
    streamed, and the object (bytes and metadata) stays the first one."""
    path = f"{prefix}/input/d-once.png"
    blobstore.put(path, b"the first file", "image/png", metadata={"filename": "d.png"}, if_absent=True)
    with pytest.raises(BlobExists):
        blobstore.put(path, b"<html>a replayed link</html>", "image/png", metadata={"filename": "x"}, if_absent=True)
    with pytest.raises(BlobExists):
        blobstore.put_stream(path, iter([b"<html>", b"streamed</html>"]), "image/png", if_absent=True)
    assert blobstore.get(path) == b"the first file"
    assert blobstore.metadata(path) == {"filename": "d.png"}
    assert blobstore.list(f"{prefix}/") == [path]
    # a plain put still replaces (outputs are rewritten on retries)
    blobstore.put(path, b"replaced", "image/png")
    assert blobstore.get(path) == b"replaced"


def test_of_racing_write_once_puts_exactly_one_lands(blobstore, prefix):
    """Eight writers race for one path with different bytes: one succeeds, the other seven are told
    the object exists, and the object holds the winner's bytes whole."""
    path = f"{prefix}/input/e-raced.png"
    start = threading.Barrier(8)

    def write(n: int):
        body = f"writer {n} ".encode() * 4000
        start.wait(timeout=60)
        try:
            blobstore.put(path, body, "image/png", metadata={"writer": str(n)}, if_absent=True)
            return body
        except BlobExists:
            return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(8)))
    winners = [body for body in results if body is not None]
    assert len(winners) == 1
    assert blobstore.get(path) == winners[0]
    assert blobstore.metadata(path) == {"writer": str(results.index(winners[0]))}
    assert blobstore.list(f"{prefix}/") == [path]
