"""Placeholder until the emulator fixtures land: the gcp contract params skip."""
import pytest


@pytest.fixture
def gcs_blobstore():
    pytest.skip("emulator fixtures not built yet")


@pytest.fixture
def firestore_jobstore():
    pytest.skip("emulator fixtures not built yet")


@pytest.fixture
def pubsub_bus():
    pytest.skip("emulator fixtures not built yet")
