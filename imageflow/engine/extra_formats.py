"""Output formats that come from plugin wheels rather than Pillow itself: JPEG XL
(pillow-jxl-plugin) and HEIC (pillow-heif). Each plugin is registered on first use."""
from __future__ import annotations

from ..domain import ErrorCode
from . import jxl
from .decoding import heic_available
from .limits import ImageError

# libjxl effort 1-9. Measured on a 1024 px photo at quality 80: effort 5 took 0.18 s CPU for
# 89 KB, 7 (the plugin's default) 0.30 s for 101 KB, 3 0.05 s for 103 KB.
JXL_EFFORT = 5


def register(name: str) -> None:
    """Make sure the plugin that writes ``name`` is registered (a no-op for Pillow's own)."""
    if name == "jxl" and not jxl.available():
        raise ImageError(ErrorCode.UNSUPPORTED, "JPEG XL output needs pillow-jxl-plugin, which is not installed")
    if name == "heic" and not heic_available():
        raise ImageError(ErrorCode.UNSUPPORTED, "HEIC output needs pillow-heif, which is not installed")


def save_args(name: str, quality: int | None, lossless: bool) -> dict:
    if name == "jxl":
        # quality 100 is distance 0, which libjxl only encodes as lossless
        lossless = lossless or (quality or 0) >= 100
        return {"quality": quality, "lossless": lossless, "effort": JXL_EFFORT, "num_threads": 1}
    if name == "heic":
        # pillow-heif: quality -1 is lossless
        return {"quality": -1 if lossless else quality}
    return {}
