"""Limits on what the engine will decode and produce, and the one error it raises."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Checked before pixels are decoded (pixels, frames) and after encoding (bytes).

    ``max_pixels`` bounds one frame, and also every image an operation would create
    (an upscale or a pad cannot grow past it); an animation may decode at most
    ``max_animation_pixels`` in all its kept frames together."""

    max_pixels: int = 50_000_000
    max_frames: int = 100
    max_output_bytes: int = 50 * 1024 * 1024
    max_animation_pixels: int = 200_000_000

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
        )


class ImageError(ValueError):
    """The image cannot be processed. ``code`` is one of ``empty``, ``unsupported``,
    ``corrupt``, ``too_large``, ``too_many_frames``, ``output_too_large``, ``invalid``;
    ``reason`` is a sentence for the user."""

    CODES = ("empty", "unsupported", "corrupt", "too_large", "too_many_frames", "output_too_large", "invalid")

    def __init__(self, code: str, reason: str):
        assert code in self.CODES, code
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
