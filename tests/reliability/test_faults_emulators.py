"""Fault injection on the GCP emulators: the same services on the GCP adapters (Pub/Sub push
to the email function, Firestore, Cloud Storage on fake-gcs-server), each SIGKILLed in turn
during a job. Slow (the Firestore emulator is slow under contention) and needs the emulators."""
from __future__ import annotations

import pytest

from tests.reliability.harness import ChaosStack, make_batch, run_chaos, submit, verify_job, JobWatcher

pytestmark = [pytest.mark.slow, pytest.mark.emulators, pytest.mark.timeout(900)]
SERVICES = ("image-handler", "interaction-manager", "image-processor", "email-function")  # no push bridge on GCP


@pytest.fixture(scope="module")
def stack_options(gcp_emulators, gcp_env, gcp_settings, sendgrid):
    gcp_emulators.wipe(gcp_settings.gcp_project, gcp_settings.gcs_bucket)
    return dict(
        launcher=ChaosStack, processors=2, timeout=120,
        env={**gcp_env, **sendgrid.env(), "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2",
             "PROGRESS_FLUSH_SECONDS": "0.5", "DRAIN_SECONDS": "5", "RATE_LIMIT_PER_SECOND": "0"},
        process_env={"image-processor*": {"IMAGEFLOW_FAULTS": "processor_crash_on=poison-,"
                                                              "processor_delay_on=chaos-:0.8"}})


@pytest.fixture(scope="module")
def gcs(gcp_emulators, gcp_settings):
    from imageflow.blobstore.gcs import GcsBlobStore

    store = GcsBlobStore(gcp_settings)
    yield store
    store.close()


def test_kill_every_service_in_two_rounds_during_a_60_image_job_on_the_emulators(stack, gcs, sendgrid, record):
    """SIGKILL image-handler, interaction-manager, a processor and the email function in a random order at random
    moments, 2 rounds, during a 60-image job on Pub/Sub, Firestore and Cloud Storage emulators, while small jobs keep
    arriving; a supervisor restarts each one."""
    run_chaos(stack, sendgrid, record, images=60, rounds=2, seed=60, timeout=600, gap=(1.0, 4.0),
              services=SERVICES, blobs=gcs)


def test_poison_task_is_dead_lettered_on_pubsub(stack, gcs, sendgrid, record):
    """A task whose render SIGKILLs the process rendering it, in a job of 6 good images, on the Pub/Sub emulator:
    it kills only its render worker and fails on its first attempt (no delivery loop to the dead-letter policy)."""
    from tests.reliability.harness import Supervisor

    batch = make_batch(6, prefix="good") + make_batch(1, prefix="poison", start=6)
    created = submit(stack.base_url, batch)
    with Supervisor(stack, seed=4):
        job = JobWatcher(stack.base_url, created["job_id"], len(batch)).wait(600)
        stack.wait_ready(120)
    verdict = verify_job(stack, job, batch, record, sendgrid=sendgrid, blobs=gcs,
                         expect_failed={batch[-1].filename})
    record.expect("crashed its worker process" in verdict.failed[0]["error"],
                  "the poison image is failed with a reason (its render crashed its worker)", verdict.failed[0]["error"])
