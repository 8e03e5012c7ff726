"""Each port's contract suite runs against every adapter: local always, GCP on the emulators."""
from __future__ import annotations

import pytest

from imageflow.blobstore.local import LocalBlobStore
from imageflow.bus.sqlite import SqliteBus
from imageflow.jobstore.sqlite import SqliteJobStore

ADAPTERS = ["local", "gcp"]


@pytest.fixture(params=ADAPTERS)
def blobstore(request, tmp_path):
    if request.param == "gcp":
        from imageflow.blobstore.gcs import GcsBlobStore
        store = request.getfixturevalue("gcs_blobstore")
        store.reopen_spec = (GcsBlobStore, (request.getfixturevalue("gcp_settings"),))
        yield store
        return
    store = LocalBlobStore(tmp_path / "blobs")
    # How another handle, or another OS process, opens the same store (the racing tests need it).
    store.reopen_spec = (LocalBlobStore, (tmp_path / "blobs",))
    yield store
    store.close()


@pytest.fixture(params=ADAPTERS)
def jobstore(request, tmp_path):
    if request.param == "gcp":
        yield request.getfixturevalue("firestore_jobstore")
        return
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    yield store
    store.close()


@pytest.fixture(params=ADAPTERS)
def bus(request, tmp_path):
    if request.param == "gcp":
        yield request.getfixturevalue("pubsub_bus")
        return
    b = SqliteBus(tmp_path / "bus.sqlite3")
    # How another OS process opens the same bus (the multi-process tests need it).
    b.reopen_spec = (SqliteBus, (tmp_path / "bus.sqlite3",))
    yield b
    b.close()
