"""Signed links: a URL that works without an API key, for one path and query, until it expires.

With keys on (``API_KEYS``), the image-handler answers a download route without a key when the
URL carries ``expires`` (Unix seconds) and ``sig`` (an HMAC-SHA256 over the path, the other
query parameters and ``expires``). The image-handler signs the links in its API answers; the
interaction manager signs the zip link of ``job.completed``, which the email and the webhook
pass on. Both must sign with the same key: ``URL_SIGNING_SECRET``, or, when that is unset on the
local backend, a random secret generated on first start and kept in the data directory (the
file ``url-signing-secret``, which every process on that data directory reads). It is never
derived from other settings: a key derived from ``API_KEYS`` (or, with keys off, a constant)
could be recomputed by anyone who knows or guesses them, and mint upload and download links.
On the gcp backend there is no shared data directory, so with keys on ``URL_SIGNING_SECRET`` is
required (settings refuse to start without it); with keys off no process verifies another's
links there (uploads go to Cloud Storage sessions), so each process signs with its own random key.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .settings import URL_SIGNING_SECRET_REQUIRED, Settings, SettingsError

SIGNATURE_PARAMS = ("expires", "sig")
SECRET_FILE = "url-signing-secret"   # in IMAGEFLOW_DATA_DIR (local backend, URL_SIGNING_SECRET unset)
_PROCESS_SECRET = secrets.token_urlsafe(48)   # gcp backend with keys off (see the module docstring)
_read_secrets: dict[Path, str] = {}
_read_lock = threading.Lock()


def keys_on(settings: Settings) -> bool:
    """``API_KEYS`` lists at least one key: downloads need a key or a signed link."""
    return settings.api_keys_on


def signing_secret(settings: Settings) -> str:
    """The secret links are signed with (see the module docstring)."""
    if settings.url_signing_secret:
        return settings.url_signing_secret
    if settings.backend == "local":
        return data_dir_secret(settings.data_dir)
    if keys_on(settings):
        raise SettingsError(URL_SIGNING_SECRET_REQUIRED)
    return _PROCESS_SECRET


def data_dir_secret(data_dir: Path) -> str:
    """The secret in ``<data_dir>/url-signing-secret``, created on first use with 384 random bits.
    Created atomically (written to a temp file, then hard-linked into place, which fails if
    another process got there first), so processes starting at once all read the same one."""
    path = Path(data_dir) / SECRET_FILE
    with _read_lock:
        if path in _read_secrets:
            return _read_secrets[path]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{SECRET_FILE}-")   # mode 0600
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(48) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, path)
                except FileExistsError:  # another process created it meanwhile: use theirs
                    pass
            finally:
                os.unlink(tmp)
        secret = path.read_text().strip()
        if len(secret) < 32:
            raise SettingsError(f"{path} holds no usable link-signing secret (it is empty or short): delete it "
                                "and restart every process on this data directory, or set URL_SIGNING_SECRET")
        _read_secrets[path] = secret
        return secret


@dataclass(frozen=True)
class LinkSigner:
    """Signs and verifies links with one key (the same on every replica of every service)."""

    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> "LinkSigner":
        return cls(hashlib.sha256(signing_secret(settings).encode("utf-8")).digest())

    def _signature(self, path: str, query: list[tuple[str, str]], expires: int) -> str:
        message = f"{path}?{urlencode(sorted(query))}|{expires}".encode("utf-8")
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def sign(self, url: str, expires: int) -> str:
        """``url`` with ``expires`` (Unix seconds) and ``sig`` added to its query."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        signed = query + [("expires", str(expires)), ("sig", self._signature(parts.path, query, expires))]
        return urlunsplit(parts._replace(query=urlencode(signed)))

    def sign_for(self, url: str, ttl_seconds: int, now: float | None = None) -> str:
        """``url`` signed to work for ``ttl_seconds`` from ``now``."""
        return self.sign(url, int((now or time.time()) + ttl_seconds))

    def verify(self, path: str, args: Mapping[str, str], now: float | None = None) -> bool:
        """True when ``args`` carry a valid, unexpired signature for ``path`` and the other args."""
        try:
            expires = int(args.get("expires", ""))
        except ValueError:
            return False
        if expires < (now or time.time()):
            return False
        query = [(k, v) for k, v in args.items() if k not in SIGNATURE_PARAMS]
        return hmac.compare_digest(self._signature(path, query, expires), str(args.get("sig", "")))
