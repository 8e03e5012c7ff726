"""``gravity: "face"``: place a crop window (``resize`` cover, ``crop`` aspect) on the faces.

Faces are found by OpenCV's frontal-face Haar cascade, whose model file ships inside the
opencv-python-headless wheel (``cv2.data``): nothing is downloaded at run time. The
search runs on a copy at most 640 px long. The window is centred on the box around every
face found (clamped to the image); with no face it falls back to ``smart`` (the busiest
part). The faces used (in the pixels of the image being cut)
are reported in ``choices.faces`` as ``{x, y, width, height}``.
"""
from __future__ import annotations

import functools
from typing import Callable

from PIL import Image

from . import report

SEARCH_SIDE = 640          # the cascade's own windows start at 24 px: faces of 4% of the image and up
MIN_FACE = 24


@functools.cache
def _cascade():
    import cv2            # imported on first use: OpenCV is large and only this gravity needs it
    cv2.setNumThreads(1)  # one image per worker thread, like the encoders
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():  # pragma: no cover - the file is part of the pinned wheel
        raise RuntimeError("OpenCV's frontal face cascade is missing from the cv2 package")
    return cascade


def detect(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Faces as ``(x, y, width, height)`` in the image's pixels, largest first."""
    import numpy
    scale = min(1.0, SEARCH_SIDE / max(image.size))
    grey = image.convert("L")
    if scale < 1:
        grey = grey.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                           Image.Resampling.BOX)
    if min(grey.size) < MIN_FACE:
        return []
    found = _cascade().detectMultiScale(numpy.asarray(grey), scaleFactor=1.1, minNeighbors=5,
                                        minSize=(MIN_FACE, MIN_FACE))
    faces = [tuple(round(int(v) / scale) for v in box) for box in found]
    return sorted(faces, key=lambda box: box[2] * box[3], reverse=True)


def face_offset(image: Image.Image, width: int, height: int,
                fallback: Callable[[Image.Image, int, int], tuple[int, int]]) -> tuple[int, int]:
    """Top-left corner of a ``width`` x ``height`` window centred on the faces."""
    faces = detect(image)
    # dicts, not [x, y, w, h]: Firestore stores no array inside an array
    report.note("faces", [{"x": x, "y": y, "width": w, "height": h} for x, y, w, h in faces])
    if not faces:
        report.note("gravity", "smart (no face found)")
        return fallback(image, width, height)
    report.note("gravity", "face")
    left = min(x for x, _, _, _ in faces)
    top = min(y for _, y, _, _ in faces)
    right = max(x + w for x, _, w, _ in faces)
    bottom = max(y + h for _, y, _, h in faces)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    x = min(max(0, round(centre_x - width / 2)), image.width - width)
    y = min(max(0, round(centre_y - height / 2)), image.height - height)
    return x, y
