"""pytest plugin: the GCP adapters on the emulators (Pub/Sub, Firestore, fake-gcs-server).

The emulators start once per test session, on free 127.0.0.1 ports and in their own
process groups, the first time a test asks for them, and stop at the end of the session.
Each function fixture wipes its emulator's data first, so every test starts empty.

Only the variables the client libraries read (``*_EMULATOR_HOST`` and the throwaway signing
key) are put into ``os.environ``; ``IMAGEFLOW_BACKEND`` and friends stay out of it so tests
of the local backends never drift onto GCP. Use ``gcp_settings`` / ``gcp_env`` instead.
"""
from __future__ import annotations

import os

import pytest

from devtools.emulators import Emulators, missing_tools
from imageflow.settings import Settings

PROJECT = "imageflow-test"
BUCKET = "imageflow-test"
CLIENT_ENV = ("PUBSUB_EMULATOR_HOST", "PUBSUB_PROJECT_ID", "FIRESTORE_EMULATOR_HOST",
              "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")


@pytest.fixture(scope="session")
def gcp_emulators(tmp_path_factory):
    """The running emulators (skips only when java, gcloud's emulators or fake-gcs-server
    are not installed on this machine)."""
    missing = missing_tools()
    if missing:
        pytest.skip("GCP emulators not installed here: " + "; ".join(missing))
    emulators = Emulators(project=PROJECT, bucket=BUCKET, work_dir=tmp_path_factory.mktemp("emulators"))
    emulators.start()
    env = emulators.env()
    saved = {name: os.environ.get(name) for name in CLIENT_ENV}
    os.environ.update({name: env[name] for name in CLIENT_ENV if name in env})
    try:
        yield emulators
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        emulators.stop()


@pytest.fixture(scope="session")
def gcp_env(gcp_emulators, tmp_path_factory) -> dict[str, str]:
    """Every variable a service process needs to run on the emulators (for subprocesses)."""
    return {**gcp_emulators.env(), "IMAGEFLOW_DATA_DIR": str(tmp_path_factory.mktemp("gcp-data")),
            "ACK_DEADLINE_SECONDS": "10"}


@pytest.fixture(scope="session")
def gcp_settings(gcp_env) -> Settings:
    """Settings with backend="gcp" pointing at the emulators."""
    settings = Settings.from_env(gcp_env)
    assert settings.backend == "gcp"
    return settings


def _alive(emulators: Emulators) -> Emulators:
    if not emulators.alive():
        logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in emulators.processes.values())
        pytest.fail(f"an emulator died during the session:\n{logs}")
    return emulators


@pytest.fixture
def gcs_blobstore(gcp_emulators, gcp_settings):
    """GcsBlobStore on fake-gcs-server, with an empty bucket."""
    from imageflow.blobstore.gcs import GcsBlobStore

    _alive(gcp_emulators).wipe_bucket(gcp_settings.gcs_bucket)
    store = GcsBlobStore(gcp_settings)
    yield store
    store.close()


@pytest.fixture
def firestore_jobstore(gcp_emulators, gcp_settings):
    """FirestoreJobStore on the Firestore emulator, with no documents."""
    from imageflow.jobstore.firestore import FirestoreJobStore

    _alive(gcp_emulators).wipe_firestore(gcp_settings.gcp_project)
    store = FirestoreJobStore(gcp_settings)
    yield store
    store.close()


@pytest.fixture
def pubsub_bus(gcp_emulators, gcp_settings):
    """PubSubBus on the Pub/Sub emulator, with no topics or subscriptions."""
    from imageflow.bus.pubsub import PubSubBus

    _alive(gcp_emulators).wipe_pubsub(gcp_settings.gcp_project)
    bus = PubSubBus(gcp_settings)
    bus.reopen_spec = (PubSubBus, (gcp_settings,))  # how another OS process opens the same bus
    yield bus
    bus.close()
