"""Callers: API keys, job ownership, quotas and signed download links. No Flask here.

- ``API_KEYS`` lists the keys as ``name=key`` pairs separated by commas (``name=sha256:<hex>``
  stores only the key's SHA-256). When it is empty (the local default) the API is open and
  every caller is the same anonymous caller; when it is set, every API call needs a key, sent
  as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
- A job belongs to the name of the key that created it (``Job.owner``); no other key can
  see, list, download, rename or delete it (it answers 404, as for an unknown job).
- Quotas (``QUOTA_ACTIVE_JOBS``, ``QUOTA_ACTIVE_IMAGES``, ``QUOTA_ACTIVE_COST``, 0 = none) count
  one caller's jobs that are open, queued or processing, their unfinished images and those
  images' cost in output megapixels (``domain.image_cost``). Images that join an open job
  later count too: checked in the same job-store transaction that adds them.
- With keys on, the download URLs in API answers carry an expiring HMAC signature
  (``expires`` and ``sig`` query parameters), so an ``<img src>`` or a CSV report link works
  without the key, for that one file only, until it expires (like a signed GCS URL). The
  signer is ``imageflow.links``, shared with the interaction manager, which signs the zip
  link of ``job.completed``.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Mapping

from imageflow import domain
from imageflow.domain import Image, Job
from imageflow.jobstore import AdmitImages, JobStore, Quotas, iter_jobs, unfinished_cost, unfinished_images
from imageflow.links import LinkSigner
from imageflow.settings import Settings, SettingsError

from .errors import Refused, RefusalCode


@dataclass(frozen=True)
class Caller:
    """Who is calling: ``owner`` is the key's name (None when keys are off)."""

    owner: str | None
    enforced: bool = False          # keys are on: the caller sees only its own jobs

    def can_access(self, job: Job) -> bool:
        return not self.enforced or job.owner == self.owner


ANONYMOUS = Caller(None)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(raw: str) -> dict[str, str]:
    """``"alice=k1, bob=sha256:<hex>"`` -> {sha256(key): name}; raises SettingsError."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (raw or "").split(","))):
        name, sep, key = item.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise SettingsError("API_KEYS: each entry must be name=key (or name=sha256:<hex>)")
        if key.startswith("sha256:"):
            digest = key[7:].lower()
            if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
                raise SettingsError(f"API_KEYS: the sha256 digest for {name!r} is not 64 hex digits")
        else:
            if len(key) < 16:
                raise SettingsError(f"API_KEYS: the key for {name!r} is shorter than 16 characters")
            digest = _digest(key)
        if digest in keys:
            raise SettingsError(f"API_KEYS: {name!r} repeats the key of {keys[digest]!r}")
        keys[digest] = name
    return keys


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The API key a request presents, if any."""
    value = headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return (headers.get("X-API-Key") or "").strip() or None


@dataclass
class Auth:
    """The keys, the link signer and the quotas of one image-handler process."""

    keys: dict[str, str] = field(default_factory=dict)     # sha256(key) -> owner name
    links: LinkSigner = LinkSigner(b"")
    quota_jobs: int = 0
    quota_images: int = 0
    quota_cost: int = 0             # output megapixels (domain.image_cost)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Auth":
        return cls(parse_keys(settings.api_keys), LinkSigner.from_settings(settings), settings.quota_active_jobs,
                   settings.quota_active_images, settings.quota_active_cost)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    # -- keys ------------------------------------------------------------------------------
    def caller(self, headers: Mapping[str, str]) -> Caller:
        """The caller of a request; raises ClientError(401) when keys are on and none is valid."""
        if not self.enabled:
            return ANONYMOUS
        presented = key_from_headers(headers)
        if not presented:
            raise Refused(RefusalCode.API_KEY_REQUIRED, "an API key is required: send it as "
                                                        "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        digest = _digest(presented)
        owner = None
        for known, name in self.keys.items():   # compare every entry in constant time
            if hmac.compare_digest(known, digest):
                owner = name
        if owner is None:
            raise Refused(RefusalCode.INVALID_API_KEY, "the API key is not valid")
        return Caller(owner, enforced=True)

    # -- quotas ----------------------------------------------------------------------------
    @property
    def quotas_on(self) -> bool:
        return bool(self.quota_jobs or self.quota_images or self.quota_cost)

    def check_quota(self, jobs: JobStore, caller: Caller, new_images: int, new_cost: float = 0.0) -> None:
        """Raise ClientError(429) if a new job of ``new_images`` images costing ``new_cost`` would exceed
        the caller's quota (a read-only check; :meth:`reserve_quota` is the atomic one that job creation uses)."""
        if not self.quotas_on:
            return
        active = [job for status in (domain.QUEUED, domain.PROCESSING)
                  for job in iter_jobs(jobs, owner=caller.owner, status=status)]
        self.refuse_over_quota(caller, active, new_images, new_cost)

    def reserve_quota(self, jobs: Quotas, caller: Caller, job_id: str, new_images: int,
                      new_cost: float = 0.0) -> None:
        """Reserve the caller's quota for the new job ``job_id`` (``new_images`` images costing
        ``new_cost``) in one job-store transaction, so parallel submissions cannot all pass a limit
        only some of them fit under; ClientError(429) past it. Reserving ``job_id`` again (its cost
        once its files are probed) replaces its own reservation: it is not counted twice."""
        if self.quotas_on:
            jobs.reserve_quota(caller.owner, job_id, new_images,
                               lambda active, n: self.refuse_over_quota(
                                   caller, [j for j in active if j.job_id != job_id], n, new_cost),
                               cost=new_cost)

    def release_quota(self, jobs: Quotas, caller: Caller, job_id: str) -> None:
        if self.quotas_on:
            jobs.release_quota(caller.owner, job_id)

    def refuse_over_quota(self, caller: Caller, active: list, new_images: int, new_cost: float = 0.0) -> None:
        """Raise ClientError(429) if ``active`` (the caller's unfinished jobs) leaves no room for
        ``new_images`` images costing ``new_cost``."""
        who = f"API key {caller.owner!r}" if caller.enforced else "this service"
        if self.quota_jobs and len(active) >= self.quota_jobs:
            raise Refused(RefusalCode.QUOTA_EXCEEDED,
                          f"quota exceeded: {who} already has {len(active)} active jobs and the limit is "
                          f"{self.quota_jobs} (queued or processing jobs); wait for one to finish",
                          {"limit": "active_jobs", "quota": self.quota_jobs, "active": len(active)})
        self._refuse_over_image_quota(caller, unfinished_images(active), new_images, "this job adds")
        self._refuse_over_cost_quota(caller, unfinished_cost(active), new_cost, "this job adds")

    def _refuse_over_image_quota(self, caller: Caller, pending: int, adding: int, what: str) -> None:
        if self.quota_images and pending + adding > self.quota_images:
            who = f"API key {caller.owner!r}" if caller.enforced else "this service"
            room = max(0, self.quota_images - pending)
            raise Refused(RefusalCode.QUOTA_EXCEEDED,
                          f"quota exceeded: {who} has {pending} images waiting and {what} {adding}; "
                          f"the limit is {self.quota_images} unfinished images (QUOTA_ACTIVE_IMAGES), "
                          f"room for {room} more now",
                          {"limit": "active_images", "quota": self.quota_images, "active": pending,
                           "requested": adding, "room": room})

    def _refuse_over_cost_quota(self, caller: Caller, pending: float, adding: float, what: str) -> None:
        if self.quota_cost and pending + adding > self.quota_cost:
            who = f"API key {caller.owner!r}" if caller.enforced else "this service"
            room = max(0.0, self.quota_cost - pending)
            raise Refused(RefusalCode.QUOTA_EXCEEDED,
                          f"quota exceeded: {who} has work waiting worth {pending:,.0f} output megapixels and "
                          f"{what} {adding:,.0f}; the limit is {self.quota_cost:,} output megapixels of "
                          f"unfinished images (QUOTA_ACTIVE_COST: each image counts its megapixels times its "
                          f"outputs, an output with quality 'auto' {domain.AUTO_QUALITY_WEIGHT} times), "
                          f"room for {room:,.0f} now; send fewer images or outputs, or wait for some to finish",
                          {"limit": "active_cost", "quota": self.quota_cost, "active": round(pending, 1),
                           "requested": round(adding, 1), "room": round(room, 1)})

    def images_admission(self, caller: Caller) -> AdmitImages | None:
        """The check of ``QUOTA_ACTIVE_IMAGES`` and ``QUOTA_ACTIVE_COST`` for files joining an open job
        (``JobStore.join_images`` runs it in the transaction that adds them, over the caller's active jobs
        as stored then): ClientError(429) naming the quota when the request's images do not all fit;
        nothing joins."""
        if not (self.quota_images or self.quota_cost):
            return None

        def admit(active: list[Job], joining: list[Image]) -> list[Image]:
            rendering = [image for image in joining if image.status not in domain.TERMINAL_IMAGE_STATUSES]
            self._refuse_over_image_quota(caller, unfinished_images(active), len(rendering), "these files add")
            self._refuse_over_cost_quota(caller, unfinished_cost(active), sum(i.cost for i in rendering),
                                         "these files add")
            return joining

        return admit

    # -- signed links (imageflow.links) ---------------------------------------------------
    def sign_link(self, url: str, ttl_seconds: int, now: float | None = None, *, always: bool = False) -> str:
        """``url`` with ``expires`` and ``sig`` added (unchanged when keys are off, unless ``always``:
        a direct-upload link binds its file's name and size even on an open API)."""
        if not self.enabled and not always:
            return url
        return self.links.sign_for(url, ttl_seconds, now)

    def verify_link(self, path: str, args: Mapping[str, str], now: float | None = None) -> bool:
        """True when ``args`` carry a valid, unexpired signature for ``path`` and the other args."""
        return self.links.verify(path, args, now)
