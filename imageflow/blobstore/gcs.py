"""Cloud Storage blob store (``GCS_BUCKET``); honours ``STORAGE_EMULATOR_HOST`` (fake-gcs-server).

- Objects keep their content type and cache headers.
- Big objects go up as resumable uploads in chunks, so a dropped connection resumes
  instead of starting over.
- Every write carries a generation precondition: the client library only retries a
  write that is conditional, and the condition guarantees that a retried request never
  clobbers a newer object written in between (see ``put``).
- ``signed_url`` returns V4 signed URLs when the credentials can sign (a service-account
  key, or the IAM signBlob API for workload identity); otherwise None, and the API streams
  the bytes itself.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from datetime import timedelta
from typing import BinaryIO, Iterable

import google_crc32c
from google.api_core import exceptions as gexc
from google.cloud import storage

from ..settings import Settings
from . import DELETE, BlobExists, BlobNotFound, BlobStore, BlobStoreError, UploadTarget, validate_path

log = logging.getLogger(__name__)

RESUMABLE_THRESHOLD = 8 * 1024 * 1024   # above this, a resumable upload...
RESUMABLE_CHUNK = 4 * 1024 * 1024       # ...in chunks of this size (a multiple of 256 KiB)
READ_CHUNK = 1024 * 1024
MAX_PRECONDITION_ROUNDS = 5
MAX_TRANSITION_ROUNDS = 20  # racers of one claim: each lost round means another handle wrote


# Signed URLs are reused within a window, so a page polling every second costs one IAM
# signBlob per object per window, not one per URL per request. Each URL is signed for the
# TTL plus the window, so any copy handed out stays valid for at least the TTL asked for.
SIGNED_URL_WINDOW_MAX_SECONDS = 300
SIGNED_URL_CACHE_SIZE = 20_000
# After a signing failure (an IAM blip, a token refresh that failed) outputs stream through
# the API for this long, then signing is tried again.
SIGNING_RETRY_SECONDS = 60.0
clock = time.time  # (tests move it)


class GcsBlobStore(BlobStore):
    """Blobs in one Cloud Storage bucket; paths are object names."""

    def __init__(self, settings: Settings, *, client: storage.Client | None = None):
        if not settings.gcs_bucket:
            raise BlobStoreError("GCS_BUCKET is not set")
        self._settings = settings
        self._client = client
        self._lock = threading.Lock()
        self._signer: tuple | None = None  # (kind, credentials), resolved on first use
        self._signing_paused_until = 0.0
        self._signed: OrderedDict[tuple[str, int, int], str] = OrderedDict()  # (path, ttl, window) -> URL

    # -- clients (created on first use: nothing connects at import or construction) ----------

    @property
    def client(self) -> storage.Client:
        with self._lock:
            if self._client is None:
                self._client = storage.Client(project=self._settings.gcp_project or None)
            return self._client

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self._settings.gcs_bucket)

    # -- port ------------------------------------------------------------------------------

    def put(self, path: str, data: bytes, content_type: str, *, cache_control: str | None = None,
            metadata: dict | None = None, if_absent: bool = False) -> None:
        """Write ``data`` to ``path``, replacing what is there unless ``if_absent`` (see ``_write``
        for the preconditions)."""
        validate_path(path)
        self._write(path, lambda blob, expected: blob.upload_from_string(
            data, content_type=content_type, if_generation_match=expected),
            _Digest.of(data), cache_control, metadata, if_absent)

    def put_stream(self, path: str, chunks: Iterable[bytes], content_type: str, *,
                   cache_control: str | None = None, metadata: dict | None = None, if_absent: bool = False) -> int:
        """Spool ``chunks`` to a temporary file on disk (never in memory), then upload it like
        ``put``: resumable, RESUMABLE_CHUNK at a time, past RESUMABLE_THRESHOLD. A stream that fails
        while spooling uploads nothing (Cloud Storage never sees a partial object). The spool is in
        the temp directory (the processor's 1 GiB emptyDir /tmp holds PROCESSOR_MAX_IN_FLIGHT x
        FETCH_MAX_BYTES = 400 MiB at worst) and is deleted once uploaded."""
        validate_path(path)
        digest = _Digest()
        with tempfile.TemporaryFile(prefix="imageflow-upload-") as spool:
            for chunk in chunks:
                spool.write(chunk)
                digest.update(chunk)

            def upload(blob: storage.Blob, expected: int) -> None:
                spool.seek(0)
                blob.upload_from_file(spool, size=digest.size, content_type=content_type,
                                      if_generation_match=expected)

            self._write(path, upload, digest, cache_control, metadata, if_absent)
        return digest.size

    def _write(self, path: str, upload, digest: "_Digest", cache_control: str | None, metadata: dict | None,
               if_absent: bool = False) -> None:
        """Run ``upload(blob, if_generation_match)`` until the object holds our bytes.

        The first attempt expects no object (``if_generation_match=0``), the usual case for
        originals and first outputs. When one exists we read its generation and write over
        exactly that generation. A 412 then means the object changed after we looked: if it
        now holds our bytes, an earlier attempt of ours landed (a retried request); if not,
        somebody wrote a newer object, which we leave alone.

        ``if_absent``: only ever ``if_generation_match=0``; an object that is there and does not
        hold our bytes raises BlobExists (one that does is our own retried request).
        """
        expected = 0
        observed: int | None = None  # a generation we saw and decided to replace
        for _ in range(MAX_PRECONDITION_ROUNDS):
            blob = self.bucket.blob(path)
            blob.cache_control = cache_control
            if metadata:
                blob.metadata = metadata
            if digest.size > RESUMABLE_THRESHOLD:
                blob.chunk_size = RESUMABLE_CHUNK
            try:
                upload(blob, expected)
                return
            except gexc.PreconditionFailed:
                current = self._metadata(path)
            except gexc.GoogleAPIError as exc:
                raise BlobStoreError(f"could not write {path}: {exc}") from exc
            if current is None:
                expected, observed = 0, None
                continue
            if digest.matches(current):
                return
            if if_absent:
                raise BlobExists(f"{path} already exists")
            if observed is not None and current.generation != observed:
                log.warning("not overwriting %s: a newer generation %s was written meanwhile",
                            path, current.generation)
                return
            expected = observed = current.generation
        raise BlobStoreError(f"could not write {path}: it kept changing under us")

    def get(self, path: str) -> bytes:
        validate_path(path)
        try:
            return self.bucket.blob(path).download_as_bytes()
        except gexc.NotFound:
            raise BlobNotFound(path) from None
        except gexc.GoogleAPIError as exc:
            raise BlobStoreError(f"could not read {path}: {exc}") from exc

    def transition(self, path, change, content_type) -> bool:
        """Read the object and its generation, then write (or delete) on that generation only
        (``if_generation_match``; 0 when there was none): a 412 means another handle wrote first,
        and ``change`` runs again on what it wrote."""
        validate_path(path)
        for _ in range(MAX_TRANSITION_ROUNDS):
            try:
                blob = self.bucket.get_blob(path)
                current = blob.download_as_bytes(if_generation_match=blob.generation) if blob else None
            except (gexc.NotFound, gexc.PreconditionFailed):  # changed between the stat and the read
                continue
            except gexc.GoogleAPIError as exc:
                raise BlobStoreError(f"could not read {path}: {exc}") from exc
            new = change(current)
            if new is None or (new is DELETE and blob is None):
                return False
            generation = blob.generation if blob else 0
            try:
                if new is DELETE:
                    self.bucket.blob(path).delete(if_generation_match=generation)
                else:
                    self.bucket.blob(path).upload_from_string(new, content_type=content_type,
                                                              if_generation_match=generation)
                return True
            except (gexc.PreconditionFailed, gexc.NotFound):
                continue
            except gexc.GoogleAPIError as exc:
                raise BlobStoreError(f"could not write {path}: {exc}") from exc
        raise BlobStoreError(f"could not write {path}: it kept changing under us")

    def open(self, path: str) -> BinaryIO:
        """Stream the object in 1 MiB ranges, all from the generation current at open."""
        blob = self._metadata(validate_path(path))
        if blob is None:
            raise BlobNotFound(path)
        return blob.open("rb", chunk_size=READ_CHUNK)

    def exists(self, path: str) -> bool:
        validate_path(path)
        try:
            return self.bucket.blob(path).exists()
        except gexc.GoogleAPIError as exc:
            raise BlobStoreError(f"could not stat {path}: {exc}") from exc

    def list(self, prefix: str) -> list[str]:
        try:
            return sorted(blob.name for blob in self.client.list_blobs(self._settings.gcs_bucket, prefix=prefix))
        except gexc.GoogleAPIError as exc:
            raise BlobStoreError(f"could not list {prefix}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        for name in self.list(prefix):
            try:
                self.bucket.blob(name).delete()
                deleted += 1
            except gexc.NotFound:  # deleted by someone else meanwhile: the goal is reached
                pass
            except gexc.GoogleAPIError as exc:
                raise BlobStoreError(f"could not delete {name}: {exc}") from exc
        return deleted

    def upload_target(self, path: str, content_type: str, size: int, metadata: dict,
                      expires_seconds: int, origin: str | None = None) -> UploadTarget:
        """A resumable upload session the client PUTs the bytes to, straight into the bucket
        (the image bytes never pass through the API). The session URI is the credential: it
        takes this one object of exactly ``size`` bytes, with this type and metadata, and it
        resumes part-way after a dropped connection (``Content-Range: bytes */<size>`` asks how
        far it got). When the object lands, the bucket's notification announces it."""
        validate_path(path)
        blob = self.bucket.blob(path)
        blob.metadata = metadata
        try:
            url = blob.create_resumable_upload_session(content_type=content_type, size=size, origin=origin,
                                                       if_generation_match=0)
        except gexc.GoogleAPIError as exc:
            raise BlobStoreError(f"could not start an upload of {path}: {exc}") from exc
        return UploadTarget(url=url, method="PUT", headers={"Content-Type": content_type})

    def metadata(self, path: str) -> dict:
        blob = self._metadata(validate_path(path))
        if blob is None:
            raise BlobNotFound(path)
        return dict(blob.metadata or {})

    def signed_url(self, path: str, expires_seconds: int) -> str | None:
        """A V4 signed GET URL valid for at least ``expires_seconds``, or None when these
        credentials cannot sign (or signing failed less than SIGNING_RETRY_SECONDS ago)."""
        validate_path(path)
        expires_seconds = max(1, expires_seconds)
        window = max(1, min(SIGNED_URL_WINDOW_MAX_SECONDS, expires_seconds // 10))
        key = (path, expires_seconds, int(clock() // window))
        with self._lock:
            cached = self._signed.get(key)
        if cached is not None:
            return cached
        url = self._sign(path, expires_seconds + window)
        if url is not None:
            with self._lock:
                self._signed[key] = url
                while len(self._signed) > SIGNED_URL_CACHE_SIZE:
                    self._signed.popitem(last=False)
        return url

    def _sign(self, path: str, expires_seconds: int) -> str | None:
        signer = self._resolve_signer()
        if signer is None:
            return None
        kind, credentials = signer
        blob = self.bucket.blob(path)
        options = dict(version="v4", method="GET", expiration=timedelta(seconds=expires_seconds))
        try:
            if kind == "key":
                return blob.generate_signed_url(credentials=credentials, **options)
            # Workload identity / metadata credentials hold no key: sign through IAM signBlob.
            if not credentials.valid:
                from google.auth.transport.requests import Request
                credentials.refresh(Request())
            return blob.generate_signed_url(service_account_email=credentials.service_account_email,
                                            access_token=credentials.token, **options)
        except Exception as exc:  # signing is an optimisation: fall back to streaming, for a while
            log.warning("cannot sign URLs (%s); outputs stream through the API for %.0f s",
                        exc, SIGNING_RETRY_SECONDS)
            with self._lock:
                self._signer = None  # found again (fresh credentials) when signing resumes
                self._signing_paused_until = clock() + SIGNING_RETRY_SECONDS
            return None

    def check(self) -> None:
        try:
            self.bucket.reload(timeout=5)
        except gexc.NotFound:
            raise BlobStoreError(f"bucket {self._settings.gcs_bucket} does not exist") from None
        except Exception as exc:
            raise BlobStoreError(f"Cloud Storage unreachable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- helpers ---------------------------------------------------------------------------

    def _metadata(self, path: str) -> storage.Blob | None:
        try:
            return self.bucket.get_blob(path)
        except gexc.GoogleAPIError as exc:
            raise BlobStoreError(f"could not stat {path}: {exc}") from exc

    def _resolve_signer(self) -> tuple | None:
        with self._lock:
            if clock() < self._signing_paused_until:
                return None
            if self._signer is None:
                self._signer = _find_signer()
            kind, credentials = self._signer
        return None if kind == "none" else (kind, credentials)


def _find_signer() -> tuple:
    """("key", creds) when the credentials hold a private key, ("iam", creds) when they can
    sign through IAM, ("none", None) otherwise. Against the emulator only an explicit key
    file counts (never probe a metadata server that is not there)."""
    import google.auth
    from google.auth import exceptions as auth_exc

    key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if os.environ.get("STORAGE_EMULATOR_HOST") and not key_file:
        return ("none", None)
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except auth_exc.DefaultCredentialsError:
        return ("none", None)
    if hasattr(credentials, "sign_bytes") and getattr(credentials, "signer_email", None):
        return ("key", credentials)
    if getattr(credentials, "service_account_email", None):
        return ("iam", credentials)
    return ("none", None)


class _Digest:
    """Size, CRC32C and MD5 of the bytes written, taken as they pass: to tell whether a stored
    object holds exactly them (by CRC32C, else MD5, and size)."""

    def __init__(self):
        self.size = 0
        self._crc = google_crc32c.Checksum()
        self._md5 = hashlib.md5()

    @classmethod
    def of(cls, data: bytes) -> "_Digest":
        digest = cls()
        digest.update(data)
        return digest

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._crc.update(chunk)
        self._md5.update(chunk)

    def matches(self, blob: storage.Blob) -> bool:
        if blob.size is not None and int(blob.size) != self.size:
            return False
        if blob.crc32c:
            return blob.crc32c == base64.b64encode(self._crc.digest()).decode()
        if blob.md5_hash:
            return blob.md5_hash == base64.b64encode(self._md5.digest()).decode()
        return False
