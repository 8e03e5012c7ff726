"""The processor on in-memory ports: a task in, the outputs written and one result out;
bad images fail with their code, trouble with storage is retried."""
from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from imageflow.messages import Result, Task
from imageflow.settings import Settings
from services.image_processor.processing import Processor
from tests.unit.fakes import FakeBlobStore, FakeBus, FakeMessage, Outage

SETTINGS = Settings()
JOB, IMAGE = "ab" * 16, "cd" * 16


def png(size=(40, 30)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def task(operations=()) -> Task:
    return Task(job_id=JOB, image_id=IMAGE, input_path=f"{JOB}/input/{IMAGE}-a.png",
                output_path=f"{JOB}/output/{IMAGE}-a", operations=list(operations))


@pytest.fixture
def ports():
    return FakeBlobStore(), FakeBus()


def run(ports, message_task: Task) -> tuple[FakeMessage, list[Result]]:
    blobs, bus = ports
    message = FakeMessage(message_task.encode())
    Processor(SETTINGS, blobs, bus).handle_message(message)
    return message, bus.messages(SETTINGS.topics.results, Result)


def test_a_task_writes_its_output_and_publishes_one_result(ports):
    blobs, _ = ports
    blobs.put(task().input_path, png(), "image/png")
    message, [result] = run(ports, task([{"op": "resize", "width": 20}, {"op": "format", "format": "webp"}]))
    assert message.acked
    assert (result.status, result.width, result.height, result.content_type) == ("succeeded", 20, 15, "image/webp")
    assert result.output_path == f"{JOB}/output/{IMAGE}-a.webp" and result.error_code is None
    data, content_type = blobs.objects[result.output_path]
    assert content_type == "image/webp" and len(data) == result.bytes
    assert PILImage.open(io.BytesIO(data)).size == (20, 15)


def test_a_bad_image_fails_with_its_code_and_is_not_retried(ports):
    blobs, _ = ports
    blobs.put(task().input_path, png()[:60], "image/png")  # truncated
    message, [result] = run(ports, task())
    assert message.acked and result.status == "failed" and result.error_code == "corrupt" and result.error


def test_a_missing_original_fails_with_its_code(ports):
    message, [result] = run(ports, task())
    assert message.acked and (result.status, result.error_code) == ("failed", "missing_input")
    assert result.error == "the original upload is missing from storage"


def test_storage_trouble_raises_so_the_task_is_retried(ports):
    blobs, bus = ports
    blobs.put(task().input_path, png(), "image/png")
    blobs.down = True
    message = FakeMessage(task().encode())
    with pytest.raises(Outage):
        Processor(SETTINGS, blobs, bus).handle_message(message)
    assert not message.acked and bus.published[SETTINGS.topics.results] == []


def test_a_malformed_task_is_dropped(ports):
    blobs, bus = ports
    message = FakeMessage(b'{"v": 1, "job_id": "x"}')
    Processor(SETTINGS, blobs, bus).handle_message(message)
    assert message.acked and not bus.published


def test_an_overlay_failure_is_remembered_for_a_while_then_fetched_again():
    """A retried job whose logo host was fixed gets a fresh fetch once the failure is old enough."""
    from imageflow.engine import ImageError
    from services.image_processor.url_fetch import OnePerJob

    now = [100.0]
    calls = []
    once = OnePerJob(remember_seconds=60, clock=lambda: now[0])

    def failing():
        calls.append(1)
        raise ImageError("invalid", "could not fetch the overlay u: the server answered 404")

    for _ in range(3):
        with pytest.raises(ImageError, match="404"):
            once.run(("job", "u"), failing)
    assert len(calls) == 1
    once.run(("other-job", "u"), lambda: calls.append(2))   # another job fetches for itself
    now[0] += 61
    once.run(("job", "u"), lambda: calls.append(3))
    assert calls == [1, 2, 3]
