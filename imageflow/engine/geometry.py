"""Placing a box inside a larger one by gravity: shared by crops, resizes and overlays."""
from __future__ import annotations


def place(free_x: int, free_y: int, gravity: str) -> tuple[int, int]:
    """Offset of a box inside a larger one with ``free_x``/``free_y`` pixels to spare."""
    x = 0 if "west" in gravity else free_x if "east" in gravity else free_x // 2
    y = 0 if "north" in gravity else free_y if "south" in gravity else free_y // 2
    return x, y
