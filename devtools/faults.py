"""Fault injection for the reliability suites (tests/reliability): off unless IMAGEFLOW_FAULTS is set.

``IMAGEFLOW_FAULTS`` is a comma-separated list of ``name=value`` items, read once with the
settings of the process that gets it:

- ``processor_crash_on=<text>``: the image processor SIGKILLs itself on any task whose input
  path contains ``<text>`` (a poison image: every delivery crashes the worker, as a native
  decoder crash or an OOM kill would).
- ``processor_delay_on=<text>`` and ``processor_delay_seconds=<s>``: the processor spends
  ``<s>`` extra seconds on such a task (a task slower than the ack deadline). Several
  ``<text>:<s>`` pairs separated by ``|`` give each its own delay.
- ``storage_fail_rate=<0..1>``: that fraction of blob writes fail, as a full disk or a
  dropped connection would (the object is not written).
- ``storage_latency_seconds=<s>`` and ``bus_latency_seconds=<s>``: every blob store call, and
  every publish, pull, ack, nack and lease extension on the bus, takes ``<s>`` longer (storage
  and bus far away, as on GCP: devtools.latency).

The faults wrap the production parts from the outside: :class:`FaultyBlobStore` around any
blob store, :class:`FaultyRender` as the processor's render function, and the latency wrappers
of devtools.latency around the blob store and the bus.
``python -m devtools.faulty_processor`` runs the image processor with both; the local stack
starts it instead of ``services.image_processor`` for a process whose environment sets
``IMAGEFLOW_FAULTS``. Production code never imports this module.
"""
from __future__ import annotations

import logging
import os
import random
import signal
from time import sleep  # one name, so a test can stand in for this module's waits alone
from dataclasses import dataclass
from typing import BinaryIO, Mapping

from imageflow.blobstore import BlobStore, BlobStoreError
from imageflow.engine import Limits, Rendered
from imageflow.messages import Task
from services.image_processor.processing import render_task

log = logging.getLogger(__name__)


class FaultsError(ValueError):
    """IMAGEFLOW_FAULTS is malformed."""


_NUMBERS = ("processor_delay_seconds", "storage_fail_rate", "storage_latency_seconds", "bus_latency_seconds")


@dataclass(frozen=True)
class Faults:
    processor_crash_on: str = ""
    processor_delay_on: str = ""
    processor_delay_seconds: float = 0.0
    storage_fail_rate: float = 0.0
    storage_latency_seconds: float = 0.0
    bus_latency_seconds: float = 0.0

    @classmethod
    def parse(cls, raw: str | None) -> "Faults":
        """Parse ``name=value,name=value``; unknown names or bad numbers fail fast."""
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in (raw or "").split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in cls.__dataclass_fields__:
                raise FaultsError(f"IMAGEFLOW_FAULTS: unknown or malformed item {item!r}")
            if name in _NUMBERS:
                try:
                    values[name] = float(value)
                except ValueError:
                    raise FaultsError(f"IMAGEFLOW_FAULTS: {name} must be a number, got {value!r}") from None
            else:
                values[name] = value.strip()
        faults = cls(**values)
        try:
            faults.delays()
        except ValueError:
            raise FaultsError(f"IMAGEFLOW_FAULTS: bad processor_delay_on {faults.processor_delay_on!r}") from None
        if not 0.0 <= faults.storage_fail_rate <= 1.0:
            raise FaultsError("IMAGEFLOW_FAULTS: storage_fail_rate must be between 0 and 1")
        if min(faults.storage_latency_seconds, faults.bus_latency_seconds) < 0:
            raise FaultsError("IMAGEFLOW_FAULTS: a latency cannot be negative")
        return faults

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Faults":
        return cls.parse((os.environ if env is None else env).get("IMAGEFLOW_FAULTS"))

    @property
    def active(self) -> bool:
        return self != Faults()

    def before_task(self, input_path: str) -> None:
        """The processor's hook, called before it renders a task."""
        if self.processor_crash_on and self.processor_crash_on in input_path:
            log.error("fault injection: crashing on %s", input_path)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        for text, seconds in self.delays():
            if text in input_path:
                log.warning("fault injection: %.1f s delay on %s", seconds, input_path)
                sleep(seconds)
                break

    def delays(self) -> list[tuple[str, float]]:
        """(substring, seconds) pairs from ``processor_delay_on``."""
        pairs = []
        for item in filter(None, self.processor_delay_on.split("|")):
            text, sep, seconds = item.rpartition(":")
            pairs.append((text, float(seconds)) if sep else (item, self.processor_delay_seconds))
        return pairs

    def storage_write_fails(self) -> bool:
        """Whether this blob write should fail half-way (drawn at random at the configured rate)."""
        return self.storage_fail_rate > 0 and random.random() < self.storage_fail_rate


NO_FAULTS = Faults()


class FaultyBlobStore(BlobStore):
    """A blob store whose writes fail at ``faults.storage_fail_rate``; everything else is the
    wrapped store's."""

    def __init__(self, inner: BlobStore, faults: Faults):
        self.inner = inner
        self.faults = faults

    def put(self, path: str, data: bytes, content_type: str, **options) -> None:
        if self.faults.storage_write_fails():
            raise BlobStoreError(f"could not write {path}: injected write failure")
        self.inner.put(path, data, content_type, **options)  # cache_control, metadata, if_absent

    def put_stream(self, path: str, chunks, content_type: str, **options) -> int:
        if self.faults.storage_write_fails():
            raise BlobStoreError(f"could not write {path}: injected write failure")
        return self.inner.put_stream(path, chunks, content_type, **options)

    def get(self, path: str) -> bytes:
        return self.inner.get(path)

    def transition(self, path, change, content_type) -> bool:
        return self.inner.transition(path, change, content_type)

    def open(self, path: str) -> BinaryIO:
        return self.inner.open(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def signed_url(self, path: str, expires_seconds: int) -> str | None:
        return self.inner.signed_url(path, expires_seconds)

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class FaultyRender:
    """The processor's render function with the processor faults applied first (picklable, so
    it also runs in the child process of an isolated render)."""

    faults: Faults

    def __call__(self, task: Task, data: bytes, limits: Limits, assets: dict | None = None) -> list[Rendered]:
        self.faults.before_task(task.input_path)
        return render_task(task, data, limits, assets)
