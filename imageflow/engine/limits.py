"""Limits on what the engine will decode and produce, and the one error it raises."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..domain import ErrorCode


@dataclass(frozen=True)
class Limits:
    """Checked before pixels are decoded (pixels, frames) and after encoding (bytes).

    ``max_pixels`` bounds one frame, and also every image an operation would create
    (an upscale or a pad cannot grow past it, nor a watermark's text layer); a render
    may hold at most ``max_animation_pixels`` in all its frames and variants together,
    checked as it goes (:class:`RenderBudget`), and may take ``max_render_seconds``."""

    max_pixels: int = 50_000_000
    max_frames: int = 100
    max_output_bytes: int = 50 * 1024 * 1024
    max_animation_pixels: int = 100_000_000  # at 4 bytes a pixel, 400 MB (the processor's limit is 1536Mi)
    max_render_seconds: float = 120.0

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        """Limits from :class:`imageflow.settings.Settings` (``MAX_IMAGE_PIXELS``)."""
        max_pixels = getattr(settings, "max_image_pixels", cls.max_pixels) or cls.max_pixels
        return cls(
            max_pixels=max_pixels,
            max_frames=getattr(settings, "max_image_frames", cls.max_frames),
            max_output_bytes=getattr(settings, "max_output_bytes", cls.max_output_bytes),
            max_animation_pixels=max(max_pixels, getattr(settings, "max_animation_pixels",
                                                         cls.max_animation_pixels)),
            max_render_seconds=getattr(settings, "render_timeout_seconds", cls.max_render_seconds),
        )


class ImageError(ValueError):
    """The image cannot be processed. ``code`` is one of the engine's :class:`ErrorCode` members
    (``ErrorCode.engine()``: empty, unsupported, unsupported_compression, corrupt, too_large,
    too_many_frames, output_too_large, invalid, timeout; docs/api.md says what each means);
    ``reason`` is a sentence for the user, in our words: never a library's message, which
    is logged where the exception is mapped."""

    CODES = ErrorCode.engine()

    def __init__(self, code: ErrorCode, reason: str):
        code = ErrorCode(code)
        assert code in self.CODES, code
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass
class RenderBudget:
    """One render's budget, checked as it goes: each frame within ``max_pixels``, the frames (and
    variants) held at once within ``max_animation_pixels``, and the time within ``max_render_seconds``.
    The renderer calls :meth:`check` after every frame it decodes or produces, so no step can run
    more than one frame past the budget."""

    limits: Limits
    started: float = field(default_factory=time.monotonic)

    def check_time(self, step: str) -> None:
        if time.monotonic() - self.started > self.limits.max_render_seconds:
            raise ImageError(ErrorCode.TIMEOUT, f"the render took longer than {self.limits.max_render_seconds:g} s "
                                                f"(stopped at {step})")

    def check(self, sizes, step: str) -> None:
        """``sizes``: (width, height) of every frame the render holds now (a frame's pixels once)."""
        total = 0
        for width, height in sizes:
            if width * height > self.limits.max_pixels:
                raise ImageError(ErrorCode.TOO_LARGE, f"{step} would make a {width}x{height} image "
                                                      f"({width * height / 1e6:.1f} megapixels), over the limit of "
                                                      f"{self.limits.max_pixels / 1e6:.1f} megapixels")
            total += width * height
        if total > self.limits.max_animation_pixels:
            raise ImageError(ErrorCode.TOO_LARGE, f"{step} would hold {total / 1e6:.0f} megapixels in all its frames, "
                                                  f"over the limit of {self.limits.max_animation_pixels / 1e6:.0f} "
                                                  "megapixels; keep fewer frames or make them smaller")
        self.check_time(step)
