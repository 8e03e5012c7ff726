"""What the browser tests share (the scripts themselves: devtools/browser_scripts.py).

Needs: `apt-get install chromium`, `npm ci` and `npm run build` in frontend/ (./scripts.sh test
does all three). Without them the browser tests skip, except under CI=true, where they fail.
"""
from __future__ import annotations

import os

import pytest

from devtools.browser_scripts import missing


def require_browser() -> None:
    """Skip the calling test (fail it under CI) when the browser scripts cannot run here."""
    reason = missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run: {reason}")
        pytest.skip(reason)
