"""Fixtures of the engine tests."""
from __future__ import annotations

import pytest

from imageflow.engine import Limits


@pytest.fixture
def limits() -> Limits:
    return Limits()
