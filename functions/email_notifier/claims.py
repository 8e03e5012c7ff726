"""Claim stores: a job is mailed once.

A claim per job is taken before sending (``claim``), marked sent after (``mark_sent``), and
released if sending failed (``release``), so a retry sends it; a message that can never be
sent is recorded as refused (``mark_refused``), never as sent. A claim still "sending" after
``lease_seconds`` belongs to an instance that died mid-send: a retry takes it over, so a
crash never loses the mail; until then a retry is told to come back later (TransientError).
Adapters: ``FileClaims`` (local) and ``FirestoreClaims`` (``email_notifications/<job_id>``).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

from .mailers import TransientError

log = logging.getLogger("email_notifier")

SENDING, SENT, REFUSED = "sending", "sent", "refused"


class ClaimStore(ABC):
    def __init__(self, lease_seconds: float = 300, clock: Callable[[], float] = time.time):
        self.lease_seconds = lease_seconds
        self.clock = clock

    @abstractmethod
    def claim(self, job_id: str) -> bool:
        """True to send; False if the job was already sent or refused; TransientError while
        another send may still be under way."""

    @abstractmethod
    def mark_sent(self, job_id: str) -> None: ...

    @abstractmethod
    def mark_refused(self, job_id: str, reason: str) -> None:
        """The mail can never be sent: no retry sends it, and it is not recorded as sent."""

    @abstractmethod
    def release(self, job_id: str) -> None:
        """Give the claim back (sending failed): the next delivery sends it."""

    @abstractmethod
    def state(self, job_id: str) -> str | None:
        """``sending``, ``sent``, ``refused``, or None (never claimed or released)."""

    def _still_sending(self, job_id: str, claimed_at: float) -> None:
        age = self.clock() - claimed_at
        if age < self.lease_seconds:
            raise TransientError(f"job {job_id}: a send started {age:.0f} s ago has not finished; retry later")
        log.warning("job %s: taking over a send that started %.0f s ago and never finished", job_id, age)


class FileClaims(ClaimStore):
    """One file per job holding ``sending <time>`` while a mail is on its way, then ``sent``
    or ``refused <reason>`` (an empty file, from before the states, means sent)."""

    def __init__(self, directory: Path, **kwargs):
        super().__init__(**kwargs)
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)

    def _write(self, job_id: str, state: str, *, exclusive: bool) -> bool:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as fh:
            fh.write(state)
        try:
            if exclusive:  # link() fails if the claim exists: only one instance wins it
                os.link(tmp, self.directory / job_id)
            else:
                os.replace(tmp, self.directory / job_id)
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _read(self, job_id: str) -> list[str] | None:
        try:
            return (self.directory / job_id).read_text().split(maxsplit=1)
        except FileNotFoundError:
            return None

    def state(self, job_id: str) -> str | None:
        fields = self._read(job_id)
        return None if fields is None else (fields[0] if fields else SENT)

    def claim(self, job_id: str) -> bool:
        if self._write(job_id, f"{SENDING} {self.clock()}", exclusive=True):
            return True
        fields = self._read(job_id)
        if fields is None:  # released meanwhile
            return self._write(job_id, f"{SENDING} {self.clock()}", exclusive=True)
        if not fields or fields[0] != SENDING:
            return False
        self._still_sending(job_id, float(fields[1]))
        return self._write(job_id, f"{SENDING} {self.clock()}", exclusive=False)

    def mark_sent(self, job_id: str) -> None:
        self._write(job_id, SENT, exclusive=False)

    def mark_refused(self, job_id: str, reason: str) -> None:
        self._write(job_id, f"{REFUSED} {reason}", exclusive=False)

    def release(self, job_id: str) -> None:
        (self.directory / job_id).unlink(missing_ok=True)


class FirestoreClaims(ClaimStore):
    """``email_notifications/<job_id>`` created with create() (fails if present), ``state``
    "sending" (with ``claimed_at``), then "sent" or "refused" (no state: sent, from before)."""

    COLLECTION = "email_notifications"

    def __init__(self, project: str | None = None, *, client=None, **kwargs):
        super().__init__(**kwargs)
        if client is None:
            from google.cloud import firestore  # lazily: only on GCP
            client = firestore.Client(project=project or None)
        self._db = client

    def _doc(self, job_id: str):
        return self._db.collection(self.COLLECTION).document(job_id)

    def state(self, job_id: str) -> str | None:
        snapshot = self._doc(job_id).get()
        return (snapshot.to_dict() or {}).get("state", SENT) if snapshot.exists else None

    def claim(self, job_id: str) -> bool:
        from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound
        try:
            self._doc(job_id).create({"job_id": job_id, "state": SENDING, "claimed_at": self.clock()})
            return True
        except AlreadyExists:
            pass
        snapshot = self._doc(job_id).get()
        if not snapshot.exists:  # released meanwhile
            return self.claim(job_id)
        data = snapshot.to_dict() or {}
        if data.get("state", SENT) != SENDING:
            return False
        self._still_sending(job_id, float(data.get("claimed_at") or 0))
        try:  # take over only if nobody else did since we read it
            self._doc(job_id).update({"state": SENDING, "claimed_at": self.clock()},
                                     option=self._db.write_option(last_update_time=snapshot.update_time))
        except (FailedPrecondition, NotFound):
            raise TransientError(f"job {job_id}: another delivery took the send over") from None
        return True

    def mark_sent(self, job_id: str) -> None:
        from google.cloud import firestore
        self._doc(job_id).update({"state": SENT, "sent_at": firestore.SERVER_TIMESTAMP})

    def mark_refused(self, job_id: str, reason: str) -> None:
        from google.cloud import firestore
        self._doc(job_id).update({"state": REFUSED, "reason": reason[:500], "refused_at": firestore.SERVER_TIMESTAMP})

    def release(self, job_id: str) -> None:
        self._doc(job_id).delete()
