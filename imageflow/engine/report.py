"""What one render chose, and what it was given: a render-scoped context.

Operations keep their ``(image, op, limits)`` signature; the few that make a choice worth
reporting (the trimmed box, the faces found, the quality picked, a colour conversion) note
it here, and those that need more than the pixels (an overlay's image) ask for it here.
The renderer opens one context per call, so concurrent renders (threads) never mix.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from ..domain import ErrorCode
from .limits import ImageError


@dataclass
class RenderContext:
    assets: Mapping[str, bytes] = field(default_factory=dict)
    choices: dict[str, Any] = field(default_factory=dict)
    # per-op results shared by the frames of an animation (keyed by id of the op model),
    # so every frame is trimmed to the same box and the faces are searched for once
    memo: dict[int, Any] = field(default_factory=dict)


_current: contextvars.ContextVar[RenderContext | None] = contextvars.ContextVar("render_context", default=None)


@contextlib.contextmanager
def recording(assets: Mapping[str, bytes] | None = None) -> Iterator[RenderContext]:
    context = RenderContext(assets=dict(assets or {}))
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def _context() -> RenderContext:
    # an op applied outside render() (a direct call in a test) still works: it gets a
    # throwaway context
    context = _current.get()
    return context if context is not None else RenderContext()


def note(key: str, value: Any) -> None:
    """Record a choice for the per-image report (the later note of a key wins)."""
    _context().choices[key] = value


@contextlib.contextmanager
def aside() -> Iterator[None]:
    """Notes made inside go nowhere: decoding a second image (an overlay) must not report
    its choices as the picture's."""
    outer = _context()
    token = _current.set(RenderContext(assets=outer.assets, memo=outer.memo))
    try:
        yield
    finally:
        _current.reset(token)


def choices() -> dict[str, Any]:
    return dict(_context().choices)


def memo(op: object, compute):
    """``compute()`` once per op per render; the frames of an animation share the answer."""
    store = _context().memo
    key = id(op)
    if key not in store:
        store[key] = compute()
    return store[key]


def asset(name: str) -> bytes:
    """The bytes of a file the job carries (an overlay), by the name the operation gives."""
    data = _context().assets.get(name)
    if data is None:
        raise ImageError(ErrorCode.INVALID, f"the file {name!r} named by the operations was not provided with the job")
    return data
