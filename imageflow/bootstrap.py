"""The one place that chooses adapters from ``IMAGEFLOW_BACKEND``. Nothing connects at import."""
from __future__ import annotations

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
    return SqliteBus(settings.data_dir / "bus.sqlite3")
