"""Cloud Storage adapter specifics, on fake-gcs-server: headers, big files, signed URLs,
generation preconditions."""
from __future__ import annotations

import os
import re
import uuid

import pytest
import requests
from google.api_core import exceptions as gexc

from imageflow.blobstore import BlobNotFound, BlobStoreError
from imageflow.blobstore import gcs
from imageflow.blobstore.gcs import RESUMABLE_THRESHOLD, GcsBlobStore

pytestmark = pytest.mark.emulators


@pytest.fixture
def path():
    return f"{uuid.uuid4().hex}/output/{uuid.uuid4().hex}-photo.webp"


def test_objects_keep_content_type_and_cache_headers(gcs_blobstore, path):
    gcs_blobstore.put(path, b"RIFFxxxxWEBP", "image/webp", cache_control="public, max-age=31536000, immutable")
    blob = gcs_blobstore.bucket.get_blob(path)
    assert blob.content_type == "image/webp"
    assert blob.cache_control == "public, max-age=31536000, immutable"


def test_signed_url_downloads_the_object_with_its_headers(gcs_blobstore, path):
    gcs_blobstore.put(path, b"output bytes", "image/webp", cache_control="public, max-age=60")
    url = gcs_blobstore.signed_url(path, 300)
    assert url and "X-Goog-Signature=" in url
    assert 300 <= int(re.search(r"X-Goog-Expires=(\d+)", url).group(1)) <= 300 + gcs.SIGNED_URL_WINDOW_MAX_SECONDS
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"output bytes"
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers.get("Cache-Control") == "public, max-age=60"


@pytest.fixture
def signings(monkeypatch):
    """Counts the URLs actually signed (each one an IAM signBlob call on GKE)."""
    calls = []
    real = gcs.storage.Blob.generate_signed_url

    def counting(blob, *args, **kwargs):
        calls.append(blob.name)
        return real(blob, *args, **kwargs)

    monkeypatch.setattr(gcs.storage.Blob, "generate_signed_url", counting)
    return calls


def test_signed_urls_are_reused_within_a_window(gcs_blobstore, path, signings, monkeypatch):
    """A page polling every second asks for the same URLs again and again: one signature
    per object per window, and a new one once the window has passed."""
    gcs_blobstore.put(path, b"x", "image/png")
    now = [1_000_000.0]
    monkeypatch.setattr(gcs, "clock", lambda: now[0])
    first = gcs_blobstore.signed_url(path, 3600)
    for _ in range(50):
        now[0] += 1
        assert gcs_blobstore.signed_url(path, 3600) == first
    assert signings == [path]
    now[0] += gcs.SIGNED_URL_WINDOW_MAX_SECONDS
    assert gcs_blobstore.signed_url(path, 3600) is not None
    assert len(signings) == 2
    other = path.replace("photo", "other")
    gcs_blobstore.signed_url(other, 3600)
    assert signings[-1] == other
    assert requests.get(first, timeout=10).content == b"x"


def test_signing_recovers_after_a_failure(gcs_blobstore, path, signings, monkeypatch):
    """One failed signature (an IAM blip) streams outputs for a while, not for the pod's life."""
    gcs_blobstore.put(path, b"x", "image/png")
    now = [2_000_000.0]
    monkeypatch.setattr(gcs, "clock", lambda: now[0])
    real = gcs.storage.Blob.generate_signed_url
    failing = [True]

    def flaky(blob, *args, **kwargs):
        if failing:
            failing.clear()
            raise RuntimeError("iam.serviceAccounts.signBlob: 503")
        return real(blob, *args, **kwargs)

    monkeypatch.setattr(gcs.storage.Blob, "generate_signed_url", flaky)
    assert gcs_blobstore.signed_url(path, 3600) is None
    now[0] += gcs.SIGNING_RETRY_SECONDS / 2
    assert gcs_blobstore.signed_url(path, 3600) is None  # paused: no signing attempt meanwhile
    now[0] += gcs.SIGNING_RETRY_SECONDS
    url = gcs_blobstore.signed_url(path, 3600)
    assert url is not None and requests.get(url, timeout=10).content == b"x"


def test_without_signing_credentials_signed_url_is_none(gcp_settings, gcs_blobstore, path, monkeypatch):
    gcs_blobstore.put(path, b"x", "image/png")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    store = GcsBlobStore(gcp_settings)
    try:
        assert store.signed_url(path, 60) is None  # the API streams the bytes instead
        assert store.get(path) == b"x"
    finally:
        store.close()


def test_big_object_roundtrips_through_a_resumable_upload(gcs_blobstore, path, monkeypatch):
    from google.cloud.storage import Blob
    data = os.urandom(RESUMABLE_THRESHOLD + 3 * 1024 * 1024 + 17)
    chunked = []
    original = Blob._do_resumable_upload

    def spy(self, *args, **kwargs):
        chunked.append(self.chunk_size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Blob, "_do_resumable_upload", spy)
    gcs_blobstore.put(path, data, "image/tiff")
    assert chunked and chunked[0] and chunked[0] < len(data), "uploaded in chunks"
    assert gcs_blobstore.get(path) == data
    with gcs_blobstore.open(path) as stream:
        first = stream.read(1000)
        rest = stream.read()
    assert first + rest == data


def test_emulator_enforces_generation_preconditions(gcs_blobstore, path):
    gcs_blobstore.put(path, b"v1", "text/plain")
    with pytest.raises(gexc.PreconditionFailed):
        gcs_blobstore.bucket.blob(path).upload_from_string(b"v2", if_generation_match=0)
    assert gcs_blobstore.get(path) == b"v1"


class _RacingStore(GcsBlobStore):
    """A store in which another writer writes ``racer_data`` right after we read the
    object's generation, i.e. between our look and our write."""

    racer_data: bytes = b""

    def _metadata(self, path):
        blob = super()._metadata(path)
        if self.racer_data:
            data, self.racer_data = self.racer_data, b""
            self.bucket.blob(path).upload_from_string(data, content_type="text/plain")
        return blob


def test_a_write_never_clobbers_a_newer_generation(gcp_settings, gcs_blobstore, path):
    gcs_blobstore.put(path, b"v1", "text/plain")
    racing = _RacingStore(gcp_settings)
    racing.racer_data = b"v3 written meanwhile"
    racing.put(path, b"v2 from a slow retry", "text/plain")
    assert gcs_blobstore.get(path) == b"v3 written meanwhile"
    racing.close()


def test_a_write_that_already_landed_counts_as_done(gcp_settings, gcs_blobstore, path):
    gcs_blobstore.put(path, b"v1", "text/plain")
    racing = _RacingStore(gcp_settings)
    racing.racer_data = b"v2 same bytes"  # e.g. our own first attempt whose response was lost
    racing.put(path, b"v2 same bytes", "text/plain")
    assert gcs_blobstore.get(path) == b"v2 same bytes"
    racing.close()


def test_a_streamed_write_keeps_the_same_preconditions(gcp_settings, gcs_blobstore, path):
    """put_stream (URL downloads) replaces an object, never clobbers a newer generation, and knows its own
    landed write by the checksum it took while spooling."""
    gcs_blobstore.put(path, b"v1", "text/plain")
    assert gcs_blobstore.put_stream(path, iter([b"v2 ", b"streamed"]), "text/plain") == 11
    assert gcs_blobstore.get(path) == b"v2 streamed"
    racing = _RacingStore(gcp_settings)
    racing.racer_data = b"v4 written meanwhile"
    racing.put_stream(path, iter([b"v3 from a ", b"slow retry"]), "text/plain")
    assert gcs_blobstore.get(path) == b"v4 written meanwhile"
    racing.racer_data = b"v5 same bytes"
    racing.put_stream(path, iter([b"v5 same", b" bytes"]), "text/plain")
    assert gcs_blobstore.get(path) == b"v5 same bytes"
    racing.close()


def test_list_is_by_prefix_and_delete_counts(gcs_blobstore):
    job = uuid.uuid4().hex
    for name in ("input/1-a.jpg", "inputs-not-this/1.jpg", "output/1-a.webp"):
        gcs_blobstore.put(f"{job}/{name}", b"x", "application/octet-stream")
    assert gcs_blobstore.list(f"{job}/input/") == [f"{job}/input/1-a.jpg"]
    assert gcs_blobstore.delete_prefix(f"{job}/") == 3
    with pytest.raises(BlobNotFound):
        gcs_blobstore.open(f"{job}/input/1-a.jpg")


def test_check_fails_for_a_missing_bucket(gcp_settings):
    store = GcsBlobStore(gcp_settings.with_overrides(gcs_bucket=f"missing-{uuid.uuid4().hex[:12]}"))
    with pytest.raises(BlobStoreError, match="does not exist"):
        store.check()
    store.close()
