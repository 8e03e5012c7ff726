"""The messages that flow between the services (ARCHITECTURE.md): plain dataclasses, JSON on the wire.

Every message carries ``"v": 1``. Decoding is strict about the fields that matter and
ignores unknown ones, so a newer producer can add fields without breaking older consumers.
"""
from __future__ import annotations

import json
import logging
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from . import tracing

VERSION = 1

T = TypeVar("T", bound="Message")

log = logging.getLogger(__name__)


class MessageError(ValueError):
    """A message that cannot be decoded: not JSON, wrong version, or missing fields."""


@dataclass(frozen=True)
class Message:
    kind: ClassVar[str] = "message"

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, **asdict(self)}

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode("utf-8")

    @classmethod
    def decode(cls: type[T], data: bytes | str | dict) -> T:
        if isinstance(data, dict):
            payload = data
        else:
            try:
                payload = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MessageError(f"{cls.kind}: not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise MessageError(f"{cls.kind}: expected a JSON object")
        if payload.get("v") != VERSION:
            raise MessageError(f"{cls.kind}: unsupported version {payload.get('v')!r}")
        names = {f.name: f for f in fields(cls)}
        required = [n for n, f in names.items() if f.default is MISSING and f.default_factory is MISSING]
        missing = [n for n in required if n not in payload]
        if missing:
            raise MessageError(f"{cls.kind}: missing {', '.join(missing)}")
        return cls(**{k: v for k, v in payload.items() if k in names})


@dataclass(frozen=True)
class JobSubmitted(Message):
    kind: ClassVar[str] = "job.submitted"
    job_id: str


@dataclass(frozen=True)
class Task(Message):
    kind: ClassVar[str] = "task"
    job_id: str
    image_id: str
    input_path: str
    output_path: str
    operations: list = field(default_factory=list)
    source_url: str | None = None  # imported by URL: the processor fetches it into input_path first
    # extension: who the job belongs to, as a digest (domain.caller_scope), so the processor's dedupe
    # stays within one caller without reading the job document; absent from tasks queued before it
    # (None): such a task is rendered, never deduped
    caller: str | None = None


@dataclass(frozen=True)
class Output:
    """One file a task produced (a task with variants produces several)."""

    path: str
    content_type: str
    width: int
    height: int
    bytes: int
    variant: str = ""
    choices: dict = field(default_factory=dict)   # extension: what this output's encode chose (quality, score)


@dataclass(frozen=True)
class Result(Message):
    kind: ClassVar[str] = "result"
    job_id: str
    image_id: str
    status: str  # "succeeded" | "failed" | "skipped" (its job was cancelled before it started)
    output_path: str | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    error: str | None = None
    duration_ms: int | None = None
    outputs: list = field(default_factory=list)  # extension: every variant, as Output dicts
    # extension: why it failed, for programs (a domain.ErrorCode); absent
    # from older producers (None) and ignored by older consumers, so the message stays "v": 1
    error_code: str | None = None
    input_content_type: str | None = None        # extension: the input's sniffed type (URL imports)
    input_bytes: int | None = None               # extension: the original's size (URL imports, savings)
    preview_path: str | None = None              # extension: small WebP previews of input and output
    output_preview_path: str | None = None
    # extensions: placeholders of the output, and what the render chose (trim box, faces,
    # quality and score, colour conversion): see imageflow/engine/report.py
    blurhash: str | None = None
    dominant_color: str | None = None
    choices: dict = field(default_factory=dict)
    duplicate_of: str | None = None  # extension: "<job_id>/<image_id>" whose output was copied (dedupe)

    def __post_init__(self):
        if self.status not in ("succeeded", "failed", "skipped"):
            raise MessageError(f"result: status must be 'succeeded', 'failed' or 'skipped', got {self.status!r}")


@dataclass(frozen=True)
class JobCompleted(Message):
    kind: ClassVar[str] = "job.completed"
    job_id: str
    status: str
    total: int
    succeeded: int
    failed: int
    email: str | None = None
    results_url: str = ""
    skipped: int = 0            # extension: images a cancel kept from starting
    run: int = 0                # extension: 0 for the first run, n for the n-th retry (each run notifies once)
    bytes_in: int = 0           # extension: savings of the succeeded images
    bytes_out: int = 0
    saved_percent: float | None = None
    parent_job_id: str | None = None  # extension: a re-run names the job it re-ran
    archive_url: str = ""             # extension: every output in one zip ("" when none succeeded);
                                      # a signed link (imageflow.links) when API keys are on
    expires_at: str | None = None     # extension: created_at + JOB_RETENTION_DAYS, when the job and its
                                      # files are deleted (None: kept until deleted)
    name: str | None = None           # extension: the job's name (the email's subject says it)

    @property
    def delivery_id(self) -> str:
        """What receivers dedupe a notification on: the job, and its run after a retry."""
        return self.job_id if not self.run else f"{self.job_id}.{self.run}"


def decode_delivered(cls: type[T], delivered, *, ack: bool = True) -> T | None:
    """Decode a message delivered by the bus, or None if it is malformed: it is logged and
    (unless ``ack`` is False) acked, since no redelivery can fix it."""
    try:
        decoded = cls.decode(delivered.data)
    except MessageError as exc:
        log.error("dropping malformed %s %s: %s", cls.kind, delivered.message_id, exc)
        if ack:
            delivered.ack()
        return None
    tracing.annotate(job_id=getattr(decoded, "job_id", None), image_id=getattr(decoded, "image_id", None))
    return decoded
