"""What GET /outstanding and a burst of direct uploads cost the job store, counted.

    python -m bench.counters                 (SQLite; add --firestore for the emulator too)
    python -m bench.counters --jobs 10 100 1000 --events 100 --firestore

Reports, from one run:
- GET /outstanding (KEDA's metrics-api trigger, 3 s timeout): the maintained counter against the
  paged scan of every job in progress it replaced (``jobstore.scan_outstanding``, now only the
  sweep's repair path), for J jobs in progress: documents/rows read, SQL statements or Firestore
  round trips, and the wall time of each in the same run (a ratio, on this machine);
- a burst of N direct-upload events of one open job: job-store transactions and calls joined one
  event at a time against one batch (``Coordinator.join_uploads``).
It prints the figures and judges nothing.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from devtools.counting_store import CountingStore
from imageflow import domain, topology
from imageflow.blobstore import OBJECT_FINALIZE
from imageflow.blobstore.local import LocalBlobStore
from imageflow.bus.sqlite import SqliteBus
from imageflow.jobstore import scan_outstanding
from imageflow.jobstore.sqlite import SqliteJobStore
from imageflow.settings import Settings
from services.interaction_manager.coordinator import Coordinator


def fill(store, jobs: int, images: int = 5) -> None:
    for _ in range(jobs):
        job = domain.Job(job_id=domain.new_id(), total=images, status=domain.PROCESSING)
        store.create_job(job, [domain.Image(job_id=job.job_id, image_id=domain.new_id(), filename="x.png",
                                            input_path=f"{job.job_id}/input/x") for _ in range(images)])


@contextmanager
def sql_statements(store: SqliteJobStore):
    """Counts the SQL statements run (and rows a scan returns, via the trace) on this thread."""
    seen = Counter()
    conn = store.db.connection()
    conn.set_trace_callback(lambda sql: seen.update(["statements"]))
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def timed(fn, repeat: int = 5) -> tuple[object, float]:
    best = float("inf")
    value = None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return value, best


def outstanding_sqlite(jobs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteJobStore(Path(tmp) / "jobs.sqlite3")
        fill(store, jobs)
        with sql_statements(store) as new:
            counter = store.outstanding_tasks()
        with sql_statements(store) as old:
            scanned = scan_outstanding(store)
        assert counter == scanned == jobs * 5
        _, new_s = timed(store.outstanding_tasks)
        _, old_s = timed(lambda: scan_outstanding(store))
        store.close()
    return {"backend": "sqlite", "jobs": jobs, "counter_reads": 1, "counter_sql": new["statements"],
            "scan_rows": jobs, "scan_sql": old["statements"], "counter_ms": round(new_s * 1000, 3),
            "scan_ms": round(old_s * 1000, 3)}


def outstanding_firestore(jobs: int, settings: Settings) -> dict:
    from imageflow.jobstore.firestore import OUTSTANDING_SHARDS, FirestoreJobStore

    store = FirestoreJobStore(settings)
    for doc in store.client.collection("jobs").list_documents():
        doc.delete()
    for ref in store._shard_refs():
        ref.delete()
    fill(store, jobs)
    scanned, old_s = timed(lambda: scan_outstanding(store), repeat=3)
    counter, new_s = timed(store.outstanding_tasks, repeat=3)
    assert counter == scanned == jobs * 5, (counter, scanned)
    pages = 2 + jobs // 500  # iter_jobs pages: one query per 500 jobs per status (processing, open)
    store.close()
    return {"backend": "firestore-emulator", "jobs": jobs, "counter_reads": OUTSTANDING_SHARDS,
            "counter_round_trips": 1, "scan_reads": jobs, "scan_queries": pages,
            "counter_ms": round(new_s * 1000, 1), "scan_ms": round(old_s * 1000, 1)}


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 14), (seed % 256, 60, 120)).save(buf, "PNG")
    return buf.getvalue()


def upload_events(events: int, settings: Settings | None = None) -> dict:
    """N events of one open job on SQLite, or on Firestore when ``settings`` points at it."""
    figures = {"backend": "firestore-emulator" if settings else "sqlite"}
    with tempfile.TemporaryDirectory() as tmp:
        firestore_settings = settings
        settings = Settings.from_env({"IMAGEFLOW_DATA_DIR": tmp, "MAX_FILES_PER_JOB": str(events * 2)})
        blobs = LocalBlobStore(Path(tmp) / "blobs")
        for mode in ("one_at_a_time", "batch"):
            if firestore_settings:
                from imageflow.jobstore.firestore import FirestoreJobStore
                store = CountingStore(FirestoreJobStore(firestore_settings))
            else:
                store = CountingStore(SqliteJobStore(Path(tmp) / f"{mode}.sqlite3"))
            bus = SqliteBus(Path(tmp) / f"{mode}-bus.sqlite3")
            topology.ensure(bus, settings)
            coordinator = Coordinator(settings, store, bus, blobs)
            job = domain.Job(job_id=domain.new_id(), status=domain.OPEN)
            store.uncounted.create_job(job, [])
            parsed = []
            for i in range(events):
                name = f"shot-{i}.png"
                path = domain.input_path(job.job_id, domain.new_id(), name)
                data = png(i)
                blobs.put(path, data, "image/png")
                info = {"size": len(data), "metadata": domain.direct_upload_metadata(name)}
                parsed.append(coordinator.upload_event({"eventType": OBJECT_FINALIZE, "objectId": path},
                                                       json.dumps(info).encode()))
            store.reset()
            if mode == "batch":
                coordinator.join_uploads(parsed)
            else:
                for event in parsed:
                    coordinator.join_uploads([event])
            assert store.uncounted.get_job(job.job_id).total == events
            figures[mode] = {"transactions": store.transactions, "store_calls": sum(store.calls.values()),
                             "calls": dict(store.calls)}
            store.uncounted.close()
            bus.close()
    return {"events": events, **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--firestore", action="store_true", help="also on the Firestore emulator")
    args = parser.parse_args()
    rows = [outstanding_sqlite(n) for n in args.jobs]
    if args.firestore:
        from devtools.emulators import Emulators

        with Emulators(project="imageflow-bench", bucket="imageflow-bench", services=("firestore",)) as emu:
            os.environ.update(emu.env())
            settings = Settings.from_env()
            rows += [outstanding_firestore(n, settings) for n in args.jobs]
            uploads = [upload_events(args.events, settings)]
    else:
        uploads = []
    for row in rows:
        print("GET /outstanding", json.dumps(row))
    for row in [upload_events(args.events), *uploads]:
        print("upload events", json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
