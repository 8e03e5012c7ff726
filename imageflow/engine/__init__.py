"""The image engine: probe and render, pure library code (no Flask, no Pub/Sub).

``probe`` checks an upload from its header before anything is stored; ``render`` runs a
validated operations list (:func:`imageflow.engine.schema.resolve_operations`) and returns
the encoded outputs. Modules: ``decoding`` (sniffing, limits from the header, shrink-on-
load, colour), ``transforms`` (pixel operations), ``vips`` (libvips' Lanczos reduce and
PNG/WebP decode to size, where it is faster), ``encoding`` (formats, quality, max_bytes),
``variants`` (several outputs from one decode), ``render`` (the pipeline).
"""
from .decoding import ProbeInfo, probe
from .encoding import Rendered
from .limits import ImageError, Limits
from .render import render


def load_libraries() -> None:
    """Load now every library the engine otherwise loads on first use (OpenCV and its face cascade,
    SciPy for SSIMULACRA2, numpy for simplejpeg, the HEIC and JPEG XL plugins). A render worker calls
    this before its first render, so every render starts from the same process, whatever the worker
    rendered before (services/image_processor/processing.py)."""
    from . import autoquality, decoding, faces, jxl

    faces._cascade()
    autoquality._metric()
    decoding._simplejpeg()
    decoding.heic_available()
    jxl.available()


__all__ = ["ImageError", "Limits", "ProbeInfo", "Rendered", "load_libraries", "probe", "render"]
