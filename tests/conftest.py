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
def make_app(tmp_path):
    """Build image-handler apps on the local backends in a fresh data directory (closed after
    the test): ``make_app(**settings)`` overrides settings."""
    from services.image_handler.app import create_app
    made = []

    def make(**config):
        app = create_app({"data_dir": tmp_path / "data", "public_base_url": "https://imageflow.example", **config})
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["imageflow"].estimator.close()   # its estimate render workers, if any started
        app.extensions["imageflow"].backends.close()


@pytest.fixture
def app_config() -> dict:
    """Settings of the ``app`` fixture; a test module redefines this fixture to change them."""
    return {}


@pytest.fixture
def app(make_app, app_config):
    return make_app(**app_config)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def stack_options() -> dict:
    """How the ``stack`` fixture starts the system: ``env`` for every process, and optionally
    ``launcher`` (a Stack class, e.g. the reliability ChaosStack) with its own keyword
    arguments, and ``timeout``. A test module redefines this fixture to change them."""
    return {"env": {"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2"}}


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, stack_options):
    """The whole system started as ./scripts.sh up starts it, on free ports, for one module:
    a ``devtools.stack.Stack`` (``.base_url``, ``.data_dir``)."""
    from devtools.stack import Stack
    options = dict(stack_options)
    launcher = options.pop("launcher", Stack)
    timeout = options.pop("timeout", 120.0)  # six processes starting on a busy 2-core machine
    data_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]) / "data"
    stack = launcher.on_free_ports(options.pop("data_dir", data_dir), **options)
    stack.start(timeout=timeout)
    yield stack
    stack.stop()


@pytest.fixture
def loopback_only(monkeypatch):
    """Fail the test if it opens a connection anywhere but 127.0.0.1."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"the test tried to connect to {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
