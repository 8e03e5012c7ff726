"""QUOTA_ACTIVE_COST on the local stack with API keys (issue 24): a key's unfinished images weigh
their output megapixels (imageflow.domain.image_cost); a job over the budget is refused with a
429 naming it, a job within it is admitted, files joining an open job count, and one key's work
does not use another's budget. The image-handler serves its real HTTP API on 127.0.0.1; the
processor and the interaction manager's coordinator run in-process on the same backends."""
from __future__ import annotations

import io
import json
import threading

import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server

from imageflow import domain
from imageflow.messages import Task
from services.image_handler.app import create_app
from services.image_processor.processing import Processor
from services.interaction_manager.coordinator import Coordinator

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"
BUDGET = 10                                           # output megapixels
FOUR_OUTPUTS = [{"op": "variants", "widths": [100, 200, 300, 400]}]


def png(width: int, height: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (seed * 40 % 256, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def app(tmp_path):
    app = create_app({"data_dir": tmp_path / "data", "api_keys": f"alice={ALICE},bob={BOB}",
                      "quota_active_cost": BUDGET, "public_base_url": "https://imageflow.example"})
    yield app
    app.extensions["imageflow"].backends.close()


@pytest.fixture
def base_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/v1"
    server.shutdown()
    thread.join(timeout=10)


def key(k: str) -> dict:
    return {"Authorization": f"Bearer {k}"}


def submit(base_url, n, operations, size=(1000, 1000), who=ALICE, seed=0):
    files = [("files", (f"photo-{seed}-{i}.png", png(*size, seed + i), "image/png")) for i in range(n)]
    return requests.post(f"{base_url}/jobs", files=files, data={"operations": json.dumps(operations)},
                         headers=key(who), timeout=60)


def stored_inputs(app) -> int:
    return len([p for p in app.extensions["imageflow"].backends.blobs.list("") if "/input/" in p])


def run_tasks(app) -> int:
    """Render the tasks on the bus (an open job's are published as its files join)."""
    c = app.extensions["imageflow"]
    coordinator = Coordinator(c.settings, c.backends.jobs, c.backends.bus, c.backends.blobs)
    processor = Processor(c.settings, c.backends.blobs, c.backends.bus)
    for message in c.backends.bus.pull(c.settings.topics.jobs_sub, max_messages=100):
        coordinator.handle_job_submitted(message)  # the manager releases what joined (fair share)
    messages = c.backends.bus.pull(c.settings.topics.tasks_sub, max_messages=100)
    coordinator.fold([processor.process(Task.decode(m.data)) for m in messages])
    for message in messages:
        message.ack()
    return len(messages)


def test_a_job_over_the_cost_budget_is_refused_with_the_limit_named(app, base_url):
    # 3 images of 1 megapixel x 4 outputs = 12 output megapixels, over 10
    refused = submit(base_url, 3, FOUR_OUTPUTS)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and "QUOTA_ACTIVE_COST" in error["message"]
    assert "output megapixels" in error["message"] and "'alice'" in error["message"]
    assert error["details"] == {"limit": "active_cost", "quota": BUDGET, "active": 0.0, "requested": 12.0,
                                "room": 10.0}
    assert stored_inputs(app) == 0                                     # nothing of it is kept
    assert requests.get(f"{base_url}/jobs", headers=key(ALICE), timeout=30).json()["jobs"] == []


def test_a_job_within_the_budget_is_admitted_and_reports_its_cost(base_url):
    created = submit(base_url, 2, FOUR_OUTPUTS)                       # 2 x 1 MP x 4 = 8
    assert created.status_code in (201, 202), created.text
    job = requests.get(f"{base_url}/jobs/{created.json()['job_id']}", headers=key(ALICE), timeout=30).json()
    assert (job["cost"], job["unfinished_cost"]) == (8.0, 8.0)
    over = submit(base_url, 1, FOUR_OUTPUTS, seed=5)                  # 8 + 4 > 10
    assert over.status_code == 429
    assert over.json()["error"]["details"] == {"limit": "active_cost", "quota": BUDGET, "active": 8.0,
                                               "requested": 4.0, "room": 2.0}
    # another key's budget is its own
    assert submit(base_url, 2, FOUR_OUTPUTS, who=BOB).status_code in (201, 202)
    # a small image with one output fits in what is left
    assert submit(base_url, 1, [], size=(1000, 1000), seed=9).status_code in (201, 202)


def test_quality_auto_outputs_weigh_more(base_url):
    auto = [{"op": "format", "format": "webp", "quality": "auto"}]
    # one 1 MP image with one auto-quality output weighs AUTO_QUALITY_WEIGHT (15), over 10
    refused = submit(base_url, 1, auto)
    assert refused.status_code == 429
    assert refused.json()["error"]["details"]["requested"] == float(domain.AUTO_QUALITY_WEIGHT)
    assert submit(base_url, 1, auto, size=(500, 500)).status_code in (201, 202)   # 0.25 MP x 15 = 3.75


def test_files_joining_an_open_job_count_against_the_budget(app, base_url):
    opened = requests.post(f"{base_url}/jobs", json={"open": True, "operations": FOUR_OUTPUTS},
                           headers=key(ALICE), timeout=30)
    assert opened.status_code == 201, opened.text
    job_id = opened.json()["job_id"]

    def add(n, seed):
        files = [("files", (f"p{seed}-{i}.png", png(500, 500, seed + i), "image/png")) for i in range(n)]
        return requests.post(f"{base_url}/jobs/{job_id}/files", files=files, headers=key(ALICE), timeout=60)

    assert add(3, 0).status_code == 200                                # 3 x 0.25 MP x 4 = 3
    refused = add(8, 10)                                               # 3 + 8 > 10
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert refused.json()["error"]["details"] == {"limit": "active_cost", "quota": BUDGET, "active": 3.0,
                                                  "requested": 8.0, "room": 7.0}
    job = requests.get(f"{base_url}/jobs/{job_id}", headers=key(ALICE), timeout=30).json()
    assert (job["total"], job["cost"]) == (3, 3.0)                     # nothing of the refused request joined
    assert add(7, 20).status_code == 200                               # what fits still joins: 10 in all
    # and a new job of the same key finds the budget spent by the open one
    assert submit(base_url, 1, [], size=(100, 100), seed=40).status_code == 429
    assert run_tasks(app) == 10                                        # finished images free the budget
    job = requests.get(f"{base_url}/jobs/{job_id}", headers=key(ALICE), timeout=30).json()
    assert (job["cost"], job["unfinished_cost"]) == (10.0, 0.0)
    assert add(8, 30).status_code == 200
