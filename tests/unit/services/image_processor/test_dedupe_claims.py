"""Dedupe claims (issue 22): a copy waits for the task that claimed its key and copies its
output; a claimant that fails or crashes never leaves a copy waiting for ever or without an
image; a redelivery of the claimant's own task takes its claim back; copies that find every
waiting place taken come back later instead of holding a handler thread."""
from __future__ import annotations

import io
import json
import threading
import time

import pytest
from PIL import Image as PILImage

from imageflow.messages import Result, Task
from imageflow.settings import Settings
from services.image_processor.dedupe import OutputIndex
from services.image_processor.processing import COPY_DEFER_SECONDS, Processor
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeMessage

SETTINGS = Settings()
CALLER = "c" * 64


def png() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (40, 30), (20, 140, 40)).save(out, "PNG")
    return out.getvalue()


def task(n: int) -> Task:
    job, image = f"{n:02d}" * 16, "cd" * 16
    return Task(job_id=job, image_id=image, input_path=f"{job}/input/{image}-a.png",
                output_path=f"{job}/output/{image}-a", operations=[{"op": "grayscale"}], caller=CALLER)


@pytest.fixture
def blobs():
    return FakeBlobStore()


@pytest.fixture
def processors(blobs):
    made = []

    def make(settings=SETTINGS, **index) -> Processor:
        processor = Processor(settings, blobs, FakeBus(), dedupe=OutputIndex(blobs, **index))
        made.append(processor)
        return processor
    yield make
    for processor in made:
        processor.close()


def upload(blobs, *tasks: Task, data: bytes) -> None:
    for t in tasks:
        blobs.put(t.input_path, data, "image/png")


def handle(processor: Processor, t: Task, delivery_attempt: int = 1) -> tuple[FakeMessage, threading.Thread]:
    message = FakeMessage(t.encode(), delivery_attempt=delivery_attempt)
    thread = threading.Thread(target=processor.handle_message, args=(message,), daemon=True)
    thread.start()
    return message, thread


def wait_until(condition, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.02)


def result(processor: Processor) -> Result:
    [out] = processor.bus.messages(SETTINGS.topics.results, Result)
    return out


def test_a_copy_waits_for_the_claimant_and_copies_its_output_and_a_redelivery_takes_its_claim_back(blobs, processors):
    first, copy = task(1), task(2)
    upload(blobs, first, copy, data=png())
    claimant = OutputIndex(blobs)  # another replica claimed the key for ``first``, then went away
    assert claimant.claim(claimant.key(first, png()))
    waiter = processors()
    message, thread = handle(waiter, copy)
    wait_until(lambda: waiter.waiting == 1)
    assert not message.acked and not waiter.bus.published, "the copy waits while the claim is held"
    again = processors()  # the claimant's own task, redelivered: its claim is its own
    again.handle_message(FakeMessage(first.encode(), delivery_attempt=2))
    assert result(again).status == "succeeded" and result(again).duplicate_of is None
    thread.join(timeout=60)
    assert message.acked and result(waiter).duplicate_of == f"{first.job_id}/{first.image_id}"
    assert blobs.get(result(waiter).output_path) == blobs.get(result(again).output_path)
    assert blobs.list("dedupe/claim/") == [], "released"


def test_a_claimant_that_fails_leaves_the_key_to_the_copy_which_renders_itself(blobs, processors):
    first, copy = task(1), task(2)
    broken = png()[:60]  # truncated: the render fails with "corrupt"
    upload(blobs, first, copy, data=broken)
    index = OutputIndex(blobs)
    assert index.claim(index.key(first, broken))
    waiter = processors()
    message, thread = handle(waiter, copy)
    wait_until(lambda: waiter.waiting == 1)
    claimant = processors()
    claimant.handle_message(FakeMessage(first.encode(), delivery_attempt=2))
    assert (result(claimant).status, result(claimant).error_code) == ("failed", "corrupt")
    thread.join(timeout=60)
    assert message.acked, "the copy did not wait for ever"
    assert (result(waiter).status, result(waiter).error_code) == ("failed", "corrupt"), "its own outcome"


def test_the_claim_of_a_claimant_that_crashed_expires_and_the_copy_renders(blobs, processors):
    """A crashed claimant renews nothing: once its claim is past its expiry the copy takes it."""
    copy = task(2)
    upload(blobs, copy, data=png())
    index = OutputIndex(blobs)
    key = index.key(copy, png())
    blobs.put(key.claim, json.dumps({"holder": "ghost/replica", "expires_at": time.time() + 1.5}).encode(),
              "application/json")
    waiter = processors()
    message, thread = handle(waiter, copy)
    thread.join(timeout=60)
    assert message.acked and result(waiter).status == "succeeded" and result(waiter).duplicate_of is None
    assert blobs.list("dedupe/claim/") == []


def test_a_claimant_alive_keeps_its_claim_past_its_first_expiry(blobs):
    index = OutputIndex(blobs, claim_seconds=0.4)
    key = index.key(task(1), png())
    assert index.claim(key)
    time.sleep(1.2)  # three expiries: the keeper renews every claim_seconds / 4
    other = OutputIndex(blobs, claim_seconds=0.4)
    assert not other.claim(other.key(task(2), png())), "still held: renewed"
    index.release(key)
    assert other.claim(other.key(task(2), png()))


def test_a_copy_with_no_waiting_place_comes_back_later_and_waits_on_its_last_deliveries(blobs, processors):
    first, copy = task(1), task(2)
    upload(blobs, first, copy, data=png())
    index = OutputIndex(blobs)
    assert index.claim(index.key(first, png()))
    # as many tasks in flight as render slots: no thread to spare for waiting
    waiter = processors(SETTINGS.with_overrides(processor_concurrency=2, processor_max_in_flight=2))
    assert waiter.max_waiting == 0
    message = FakeMessage(copy.encode())
    waiter.handle_message(message)
    assert message.extended == [COPY_DEFER_SECONDS] and not (message.acked or message.nacked)
    late, thread = handle(waiter, copy, delivery_attempt=SETTINGS.max_delivery_attempts - 1)
    time.sleep(0.5)
    assert thread.is_alive() and late.extended == [], "near the dead letter it waits instead"
    processors().handle_message(FakeMessage(first.encode(), delivery_attempt=2))
    thread.join(timeout=60)
    assert late.acked and result(waiter).duplicate_of == f"{first.job_id}/{first.image_id}"


def test_stopping_releases_a_waiting_copy_to_the_bus(blobs, processors):
    first, copy = task(1), task(2)
    upload(blobs, copy, data=png())
    index = OutputIndex(blobs)
    assert index.claim(index.key(first, png()))
    waiter = processors()
    message, thread = handle(waiter, copy)
    wait_until(lambda: waiter.waiting == 1)
    waiter.release_waiting()
    thread.join(timeout=30)
    assert message.nacked and not waiter.bus.published
