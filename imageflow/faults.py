"""Fault injection for the reliability suites (tests/reliability): off unless IMAGEFLOW_FAULTS is set.

``IMAGEFLOW_FAULTS`` is a comma-separated list of ``name=value`` items, read once with the
settings of the process that gets it:

- ``processor_crash_on=<text>``: the image processor SIGKILLs itself on any task whose input
  path contains ``<text>`` (a poison image: every delivery crashes the worker, as a native
  decoder crash or an OOM kill would).
- ``processor_delay_on=<text>`` and ``processor_delay_seconds=<s>``: the processor spends
  ``<s>`` extra seconds on such a task (a task slower than the ack deadline). Several
  ``<text>:<s>`` pairs separated by ``|`` give each its own delay.
- ``storage_fail_rate=<0..1>``: that fraction of local blob writes fail half-way through
  (half the bytes written, then an I/O error), as a full disk or a dropped connection would.

Nothing here runs in a normal deployment: with the variable unset every hook is a no-op.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


class FaultsError(ValueError):
    """IMAGEFLOW_FAULTS is malformed."""


@dataclass(frozen=True)
class Faults:
    processor_crash_on: str = ""
    processor_delay_on: str = ""
    processor_delay_seconds: float = 0.0
    storage_fail_rate: float = 0.0

    @classmethod
    def parse(cls, raw: str | None) -> "Faults":
        """Parse ``name=value,name=value``; unknown names or bad numbers fail fast."""
        values: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in (raw or "").split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in cls.__dataclass_fields__:
                raise FaultsError(f"IMAGEFLOW_FAULTS: unknown or malformed item {item!r}")
            if name in ("processor_delay_seconds", "storage_fail_rate"):
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
        return faults

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
                time.sleep(seconds)
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
