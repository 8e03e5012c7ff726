"""Signed links: a URL that works without an API key, for one path and query, until it expires.

With keys on (``API_KEYS``), the image-handler answers a download route without a key when the
URL carries ``expires`` (Unix seconds) and ``sig`` (an HMAC-SHA256 over the path, the other
query parameters and ``expires``). The image-handler signs the links in its API answers; the
interaction manager signs the zip link of ``job.completed``, which the email and the webhook
pass on. Both must sign with the same key, so the secret is ``URL_SIGNING_SECRET``, or derived
from ``API_KEYS`` when that is unset: both processes read both from one Secret.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .settings import Settings

SIGNATURE_PARAMS = ("expires", "sig")


def keys_on(settings: Settings) -> bool:
    """``API_KEYS`` lists at least one key: downloads need a key or a signed link."""
    return any(part.strip() for part in (settings.api_keys or "").split(","))


@dataclass(frozen=True)
class LinkSigner:
    """Signs and verifies links with one key (the same on every replica of every service)."""

    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> "LinkSigner":
        secret = settings.url_signing_secret or ("imageflow-links:" + settings.api_keys)
        return cls(hashlib.sha256(secret.encode("utf-8")).digest())

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
