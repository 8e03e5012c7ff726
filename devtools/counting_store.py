"""A job store with its port calls counted, and its transactions on SQLite, for the tests and
benchmarks that count what a piece of code costs the store (tests/integration/test_upload_batches.py,
bench/counters.py). Counts, not timings. Production code never imports this module.
"""
from __future__ import annotations

from collections import Counter

from imageflow.jobstore.sqlite import SqliteJobStore


class CountingStore:
    """Wraps a job store: ``calls`` counts each port method called through it, ``transactions``
    the SQLite transactions it opened (None on another backend: on Firestore each join_images
    call is one transaction per 400 images, each mark_tasked one batched write). ``uncounted``
    is the store itself, for setting up without counting."""

    def __init__(self, store):
        self.uncounted, self.calls, self.transactions = store, Counter(), None
        if isinstance(store, SqliteJobStore):
            self.transactions = 0
            real = store.db.transaction

            def transaction():
                self.transactions += 1
                return real()

            store.db.transaction = transaction

    def __getattr__(self, name):
        attr = getattr(self.uncounted, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted

    def reset(self) -> None:
        """Count from zero again."""
        self.calls.clear()
        if self.transactions is not None:
            self.transactions = 0
