"""The one place that chooses adapters from ``IMAGEFLOW_BACKEND``. Nothing connects at import."""
from __future__ import annotations

import json
from dataclasses import dataclass

from .blobstore import BlobStore
from .bus import MessageBus
from .jobstore import JobStore
from .settings import Settings


def make_blobstore(settings: Settings) -> BlobStore:
    if settings.backend == "gcp":
        from .blobstore.gcs import GcsBlobStore
        return GcsBlobStore(settings)
    from .blobstore.local import LocalBlobStore
    return LocalBlobStore(settings.data_dir / "blobs")


def make_jobstore(settings: Settings) -> JobStore:
    if settings.backend == "gcp":
        from .jobstore.firestore import FirestoreJobStore
        return FirestoreJobStore(settings)
    from .jobstore.sqlite import SqliteJobStore
    return SqliteJobStore(settings.data_dir / "jobs.sqlite3")


def make_bus(settings: Settings) -> MessageBus:
    if settings.backend == "gcp":
        from .bus.pubsub import PubSubBus
        return PubSubBus(settings)
    from .bus.sqlite import SqliteBus
    return SqliteBus.in_data_dir(settings.data_dir)


@dataclass
class Backends:
    """The three ports a service uses, built from settings (``jobs`` is None for the processor,
    which has no job store)."""

    blobs: BlobStore
    jobs: JobStore | None
    bus: MessageBus

    def checks(self) -> dict:
        # looked up at each call, so a check follows an adapter that was replaced (or wrapped)
        checks = {"blobstore": lambda: self.blobs.check(), "jobstore": lambda: self.jobs.check(),
                  "bus": lambda: self.bus.check()}
        if self.jobs is None:
            del checks["jobstore"]
        return checks

    def close(self) -> None:
        for backend in (self.blobs, self.jobs, self.bus):
            if backend is not None:
                backend.close()


def make_backends(settings: Settings, *, ensure_topology: bool | None = None, jobstore: bool = True) -> Backends:
    """Build the adapters (the job store only if ``jobstore``). On the local backend the topics and
    subscriptions are created here (idempotent); on GCP that is the setup command's job (``imageflow-setup``)."""
    backends = Backends(make_blobstore(settings), make_jobstore(settings) if jobstore else None, make_bus(settings))
    if settings.backend == "local":  # the local store announces finished objects as the bucket does on GCP
        backends.blobs.on_finalize = lambda path, data, attributes: backends.bus.publish(
            settings.topics.uploads, json.dumps(data).encode(), attributes)
    if ensure_topology if ensure_topology is not None else settings.backend == "local":
        from . import topology
        topology.ensure(backends.bus, settings)
    return backends
