"""Blob store contract, for every adapter."""
from __future__ import annotations

import multiprocessing
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from imageflow.blobstore import DELETE, BlobExists, BlobNotFound


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


# -- transition: the conditional write that claims are built on ---------------------------------

def _reopen(spec):
    cls, args = spec
    return cls(*args)


def test_transition_writes_deletes_or_leaves_what_change_decides(blobstore, prefix):
    path = f"{prefix}/claims/a.json"
    seen = []

    def create(current):
        seen.append(current)
        return b"mine" if current is None else None

    assert blobstore.transition(path, create, "application/json") is True
    assert blobstore.get(path) == b"mine"
    assert blobstore.transition(path, create, "application/json") is False, "change declined: nothing written"
    assert seen == [None, b"mine"], "change sees what is stored"
    assert blobstore.get(path) == b"mine"
    assert blobstore.transition(path, lambda current: current + b", again", "application/json") is True
    assert blobstore.get(path) == b"mine, again"
    assert blobstore.transition(path, lambda current: DELETE, "application/json") is True
    assert not blobstore.exists(path)
    assert blobstore.transition(path, lambda current: DELETE, "application/json") is False, "nothing to delete"
    assert blobstore.list(f"{prefix}/") == [], "no lock or temporary files are listed"


def test_one_of_many_handles_racing_for_a_claim_wins(blobstore, prefix):
    """Twelve separate handles (as many processor replicas) claim the same path at once: exactly one
    write happens, and what is stored is the winner's."""
    path = f"{prefix}/claims/b.json"
    handles = [_reopen(blobstore.reopen_spec) for _ in range(12)]
    start = threading.Barrier(len(handles))

    def claim(index: int) -> bool:
        start.wait(timeout=60)
        return handles[index].transition(path, lambda current: None if current else f"{index}".encode(),
                                         "application/json")

    try:
        with ThreadPoolExecutor(len(handles)) as pool:
            won = list(pool.map(claim, range(len(handles))))
    finally:
        for handle in handles:
            handle.close()
    assert won.count(True) == 1, won
    assert blobstore.get(path) == str(won.index(True)).encode()


def _count(spec, path: str, times: int, ready) -> None:
    store = _reopen(spec)
    ready.wait(timeout=120)
    for _ in range(times):
        store.transition(path, lambda current: str(int(current or b"0") + 1).encode(), "text/plain")
    store.close()


def test_transitions_from_separate_processes_never_lose_an_update(blobstore, prefix):
    """Three OS processes each add 1 ten times to the same object: every read-change-write counts."""
    path = f"{prefix}/claims/counter"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(3)
    workers = [ctx.Process(target=_count, args=(blobstore.reopen_spec, path, 10, ready)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert blobstore.get(path) == b"30"


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
