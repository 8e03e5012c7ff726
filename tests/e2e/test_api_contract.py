"""The OpenAPI document against the running system (issue 22): Schemathesis generates requests
from services/image_handler/openapi.py, valid and invalid, and sends them to the image-handler
of a whole local stack. Every answer must be in the document: no 5xx, no status or content type
it does not list, every body matching its schema.

Bounded and reproducible: a fixed number of examples per operation, valid and invalid ones
(generation mode "all"), plus the coverage phase's cases (each field missing, of the wrong type,
past its bounds...), derandomised with a fixed seed (the same requests on every run). What it
found is kept as explicit regression tests (tests/integration/test_request_bodies.py,
tests/integration/test_openapi.py). Path parameters are a real job or image some of the time, so the
routes answer more than 404."""
from __future__ import annotations

import io
import os
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from PIL import Image
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from imageflow import domain
from services.image_handler.openapi import document

API_KEY = "k-contract-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12  # per operation: with the coverage phase's cases about 5,600 requests, 50 s on a busy 2-core machine
SEED = int(os.environ.get("IMAGEFLOW_CONTRACT_SEED", "22"))  # another seed explores other requests

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "mode": "all"},
    "phases": {"stateful": {"enabled": False}},
})
schema = schemathesis.openapi.from_dict(document(keys_required=True), config=CONFIG)


@pytest.fixture(scope="module")
def stack_options() -> dict:
    # keys on (401s are in the document too); no rate limit, which would answer most requests 429
    return {"env": {"API_KEYS": f"contract={API_KEY}", "RATE_LIMIT_PER_SECOND": "0",
                    "PROGRESS_FLUSH_SECONDS": "0.3", "PROCESSOR_CONCURRENCY": "1"}}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def real(stack) -> dict:
    """A finished job with one image, and an open one: what path parameters are some of the time."""
    api = f"{stack.base_url}/api/v1"
    done = requests.post(f"{api}/jobs", headers=AUTH, files={"files": ("a.png", _png(), "image/png")},
                         data={"preset": "thumbnail"}, timeout=60).json()
    opened = requests.post(f"{api}/jobs", headers=AUTH, json={"open": True, "preset": "web"}, timeout=60).json()
    deadline = time.monotonic() + 180
    while (job := requests.get(f"{api}/jobs/{done['job_id']}", headers=AUTH, timeout=60).json())["status"] \
            not in domain.TERMINAL_JOB_STATUSES:
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    return {"job_id": [done["job_id"], opened["job_id"]], "image_id": [done["images"][0]["image_id"]],
            "which": ["input", "output"]}


def test_the_stack_serves_this_document(stack):
    served = requests.get(f"{stack.base_url}/api/v1/openapi.json", timeout=60).json()
    assert served == document(keys_required=True)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_in_the_document(case, stack, real):
    if case.path_parameters:
        for name, choices in real.items():
            value = case.path_parameters.get(name)
            # a real id two times out of three (by the generated value, so it stays reproducible);
            # never deleting the finished job, which the other routes read
            if isinstance(value, str) and len(value) % 3 and not (case.method == "DELETE" and name == "job_id"):
                case.path_parameters[name] = choices[len(value) % len(choices)]
    case.call_and_validate(base_url=stack.base_url, headers=AUTH, checks=CHECKS, timeout=60)

