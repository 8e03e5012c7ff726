"""Shared fixtures. Emulator fixtures (GCP adapters) come from tests/gcp_fixtures.py."""
from __future__ import annotations

import os
import socket

import pytest

from imageflow.bootstrap import make_backends
from imageflow.settings import Settings

pytest_plugins = ["tests.gcp_fixtures"]


def pytest_collection_modifyitems(config, items):
    """Long soak/load runs only run with IMAGEFLOW_SLOW_TESTS=1."""
    if os.environ.get("IMAGEFLOW_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set IMAGEFLOW_SLOW_TESTS=1 (./scripts.sh test --slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def local_settings(tmp_path) -> Settings:
    """Settings for the local backends in a fresh data directory."""
    return Settings.from_env({"IMAGEFLOW_DATA_DIR": str(tmp_path / "data"), "ACK_DEADLINE_SECONDS": "60",
                              "RETRY_MIN_BACKOFF_SECONDS": "0"})  # nacked messages come back at once here


@pytest.fixture
def backends(local_settings):
    """Every local adapter in the fresh data directory, topology created."""
    b = make_backends(local_settings)
    yield b
    b.close()


@pytest.fixture
def loopback_only(monkeypatch):
    """Fail the test if it opens a connection anywhere but 127.0.0.1."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"the test tried to connect to {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
