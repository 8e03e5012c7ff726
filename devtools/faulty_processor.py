"""The image processor with the faults of ``IMAGEFLOW_FAULTS`` injected (devtools.faults):
the same service, wrapped from the outside, for the reliability suites and the pipeline
benchmark (storage and bus latency)."""
from __future__ import annotations

from imageflow.settings import Settings
from services.image_processor.app import main, processor_backends

from .faults import Faults, FaultyBlobStore, FaultyRender
from .latency import LatentBlobStore, LatentBus


def run() -> int:
    faults = Faults.from_env()
    settings = Settings.from_env()
    backends = processor_backends(settings)
    backends.blobs = FaultyBlobStore(backends.blobs, faults)
    if faults.storage_latency_seconds:
        backends.blobs = LatentBlobStore(backends.blobs, faults.storage_latency_seconds)
    if faults.bus_latency_seconds:
        backends.bus = LatentBus(backends.bus, faults.bus_latency_seconds)
    return main(settings, backends, FaultyRender(faults))


if __name__ == "__main__":
    raise SystemExit(run())
