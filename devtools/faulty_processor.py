"""The image processor with the faults of ``IMAGEFLOW_FAULTS`` injected (devtools.faults):
the same service, wrapped from the outside, for the reliability suites."""
from __future__ import annotations

from imageflow.bootstrap import make_backends
from imageflow.settings import Settings
from services.image_processor.app import main

from .faults import Faults, FaultyBlobStore, FaultyRender


def run() -> int:
    faults = Faults.from_env()
    settings = Settings.from_env()
    backends = make_backends(settings)
    backends.blobs = FaultyBlobStore(backends.blobs, faults)
    return main(settings, backends, FaultyRender(faults))


if __name__ == "__main__":
    raise SystemExit(run())
