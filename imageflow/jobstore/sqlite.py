"""SQLite job store (WAL): the embedded default, shared safely by several processes."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterator

from .. import domain
from ..domain import Image, Job, apply_result, fold_progress, utcnow
from ..messages import Result
from ..sqlite_util import SqliteDatabase
from . import (
    REPAIR_COMPLETION,
    REPAIR_WEBHOOK,
    Admit,
    AdmitImages,
    Cursor,
    FoldOutcome,
    Joined,
    JobNotFound,
    JobStore,
    SavedPreset,
    check_room_for,
    fresh_fold_queue,
    held_reservations,
    outstanding_of,
    place_images,
    stale_fold_queues,
    with_job,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    owner TEXT,
    status TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_by_created_id ON jobs (created_at DESC, job_id DESC);
CREATE INDEX IF NOT EXISTS jobs_unpublished ON jobs (job_id) WHERE json_extract(doc, '$.notified_at') IS NOT NULL
    AND json_extract(doc, '$.completion_message_id') IS NULL;
CREATE INDEX IF NOT EXISTS jobs_webhook_pending ON jobs (job_id) WHERE json_extract(doc, '$.webhook_status') = 'pending';
CREATE TABLE IF NOT EXISTS quota_reservations (
    owner TEXT NOT NULL,
    job_id TEXT NOT NULL,
    images INTEGER NOT NULL,
    reserved_at REAL NOT NULL,
    cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, job_id)
);
CREATE TABLE IF NOT EXISTS images (
    job_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (job_id, image_id)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fold_queues (
    replica TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS presets (
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (owner, name)
)
"""

# Columns added for paging and fan-out (issue 12); a database from before gets them on open.
IMAGE_COLUMNS = {"status": "TEXT", "tasked": "INTEGER NOT NULL DEFAULT 0"}
OUTSTANDING = "outstanding_tasks"  # counters row: the sum of jobstore.outstanding_of over the jobs
INDEXES = """
CREATE INDEX IF NOT EXISTS images_by_seq ON images (job_id, seq);
CREATE INDEX IF NOT EXISTS images_untasked ON images (job_id, tasked, status)
"""


class SqliteJobStore(JobStore):
    def __init__(self, path: Path):
        self.db = SqliteDatabase(path, SCHEMA)
        with self.db.transaction() as conn:
            present = {row["name"] for row in conn.execute("PRAGMA table_info(images)")}
            for name, kind in IMAGE_COLUMNS.items():
                if name not in present:
                    conn.execute(f"ALTER TABLE images ADD COLUMN {name} {kind}")
                    if name == "status":
                        conn.execute("UPDATE images SET status = json_extract(doc, '$.status')")
            if "cost" not in {row["name"] for row in conn.execute("PRAGMA table_info(quota_reservations)")}:
                # a database from before QUOTA_ACTIVE_COST: its reservations weigh nothing
                conn.execute("ALTER TABLE quota_reservations ADD COLUMN cost REAL NOT NULL DEFAULT 0")
            for statement in filter(None, (x.strip() for x in INDEXES.split(";"))):
                conn.execute(statement)
            if conn.execute("SELECT 1 FROM counters WHERE name = ?", (OUTSTANDING,)).fetchone() is None:
                # a database from before the counter: counted once, here, then maintained by every write
                rows = conn.execute("SELECT doc FROM jobs WHERE status IN (?, ?)", (domain.PROCESSING, domain.OPEN))
                count = sum(outstanding_of(Job.from_dict(json.loads(row["doc"]))) for row in rows)
                conn.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (OUTSTANDING, count))

    # -- helpers -------------------------------------------------------------------------
    @classmethod
    def _write_job(cls, conn, job: Job, before: Job | None) -> None:
        """Write the job document; ``before`` is the document it replaces (read in the same
        transaction), so the outstanding counter moves with it."""
        cls._count(conn, outstanding_of(job) - outstanding_of(before))
        conn.execute(
            "INSERT INTO jobs (job_id, created_at, owner, status, doc) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, owner = excluded.owner, doc = excluded.doc",
            (job.job_id, job.created_at, job.owner, job.status, json.dumps(job.to_dict())),
        )

    @staticmethod
    def _count(conn, delta: int) -> None:
        if delta:
            conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (delta, OUTSTANDING))

    @staticmethod
    def _read_job(conn, job_id: str) -> Job | None:
        row = conn.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return Job.from_dict(json.loads(row["doc"])) if row else None

    @staticmethod
    def _image(row) -> Image:
        image = Image.from_dict(json.loads(row["doc"]))
        image.seq, image.tasked = row["seq"], bool(row["tasked"])
        return image

    def _read_image(self, conn, job_id: str, image_id: str) -> Image | None:
        row = conn.execute("SELECT seq, tasked, doc FROM images WHERE job_id = ? AND image_id = ?",
                           (job_id, image_id)).fetchone()
        return self._image(row) if row else None

    @staticmethod
    def _insert_images(conn, images: list[Image]) -> None:
        conn.executemany(
            "INSERT INTO images (job_id, image_id, seq, doc, status, tasked) VALUES (?, ?, ?, ?, ?, ?)",
            [(i.job_id, i.image_id, i.seq, json.dumps(i.to_dict()), i.status, int(i.tasked)) for i in images])

    # -- port ----------------------------------------------------------------------------
    def create_job(self, job: Job, images: list[Image]) -> None:
        for seq, image in enumerate(images):
            image.seq = seq
        with self.db.transaction() as conn:
            self._write_job(conn, job, self._read_job(conn, job.job_id))
            self._insert_images(conn, images)

    def get_job(self, job_id: str) -> Job | None:
        return self._read_job(self.db.connection(), job_id)

    def get_image(self, job_id: str, image_id: str) -> Image | None:
        return self._read_image(self.db.connection(), job_id, image_id)

    def list_images(self, job_id: str) -> list[Image]:
        rows = self.db.connection().execute("SELECT seq, tasked, doc FROM images WHERE job_id = ? ORDER BY seq",
                                            (job_id,))
        return [self._image(row) for row in rows]

    def page_images(self, job_id: str, *, status: str | None = None, after: int | None = None,
                    limit: int = 100) -> list[Image]:
        where, params = _where(("job_id = ?", job_id), ("status = ?", status), ("seq > ?", after))
        rows = self.db.connection().execute(
            f"SELECT seq, tasked, doc FROM images {where} ORDER BY seq LIMIT ?", (*params, limit))
        return [self._image(row) for row in rows]

    def join_images(self, job_id: str, images: list[Image], *, max_total: int, now: str,
                    admit: AdmitImages | None = None) -> Joined:
        with self.db.transaction() as conn:  # BEGIN IMMEDIATE: joins, folds and reservations are serialised
            before = self._read_job(conn, job_id)
            if before is None:
                raise JobNotFound(job_id)
            held = {row["image_id"] for row in conn.execute(
                f"SELECT image_id FROM images WHERE job_id = ? AND image_id IN ({', '.join('?' * len(images))})",
                (job_id, *(i.image_id for i in images)))} if images else set()
            fresh = [i for i in images if i.image_id not in held]
            if not fresh:  # all there already (a redelivery): nothing to check or write
                return Joined(before, [], sorted(held))
            check_room_for(before, len(fresh), max_total)
            if admit is not None:
                fresh = admit(with_job(self._active_jobs(conn, before.owner), before), fresh)
            job = place_images(before, fresh, now)
            self._insert_images(conn, fresh)
            self._write_job(conn, job, before)
            return Joined(job, fresh, sorted(held))

    def close_job(self, job_id: str, now: str) -> Job:
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job is None:
                raise JobNotFound(job_id)
            if job.is_open:
                closed = domain.close_job(job, now)
                self._write_job(conn, closed, job)
                job = closed
            return job

    def untasked_images(self, job_id: str, limit: int = 500) -> list[Image]:
        rows = self.db.connection().execute(
            "SELECT seq, tasked, doc FROM images WHERE job_id = ? AND tasked = 0 AND status NOT IN "
            f"({', '.join('?' * len(domain.TERMINAL_IMAGE_STATUSES))}) ORDER BY seq LIMIT ?",
            (job_id, *domain.TERMINAL_IMAGE_STATUSES, limit))
        return [self._image(row) for row in rows]

    def count_in_flight(self, job_id: str) -> int:
        return self.db.connection().execute(
            "SELECT COUNT(*) FROM images WHERE job_id = ? AND tasked = 1 AND status NOT IN "
            f"({', '.join('?' * len(domain.TERMINAL_IMAGE_STATUSES))})",
            (job_id, *domain.TERMINAL_IMAGE_STATUSES)).fetchone()[0]

    def mark_tasked(self, job_id: str, image_ids: list[str]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("UPDATE images SET tasked = 1 WHERE job_id = ? AND image_id = ?",
                             [(job_id, image_id) for image_id in image_ids])

    def update_images(self, job_id: str, images: list[Image]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("UPDATE images SET doc = ?, status = ?, tasked = ? WHERE job_id = ? AND image_id = ?",
                             [(json.dumps(i.to_dict()), i.status, int(i.tasked), job_id, i.image_id)
                              for i in images if i.job_id == job_id])

    def update_job(self, job_id: str, **fields) -> Job:
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job is None:
                raise JobNotFound(job_id)
            data = job.to_dict()
            data.update(fields)
            data["updated_at"] = fields.get("updated_at") or utcnow()
            updated = Job.from_dict(data)
            self._write_job(conn, updated, job)
            return updated

    def record_results(self, results: list[Result]) -> FoldOutcome:
        outcome = FoldOutcome()
        now = utcnow()
        with self.db.transaction() as conn:
            changed_by_job: dict[str, list[Image]] = defaultdict(list)
            for result in results:
                image = self._read_image(conn, result.job_id, result.image_id)
                updated = apply_result(image, result, now) if image else None
                if updated is None:
                    outcome.ignored += 1
                    continue
                conn.execute("UPDATE images SET doc = ?, status = ? WHERE job_id = ? AND image_id = ?",
                             (json.dumps(updated.to_dict()), updated.status, updated.job_id, updated.image_id))
                changed_by_job[updated.job_id].append(updated)
                outcome.changed_images.append(updated)
            for job_id in {r.job_id for r in results}:
                job = self._read_job(conn, job_id)
                if job is None:
                    continue
                if changed_by_job.get(job_id):
                    folded = fold_progress(job, changed_by_job[job_id], now)
                    self._write_job(conn, folded, job)  # the counter drops by the images that finished now
                    job = folded
                outcome.jobs[job_id] = job
        return outcome

    def transition(self, job_id: str, change) -> Job | None:
        # BEGIN IMMEDIATE holds the write lock from the read to the write: nobody races it.
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job is None:
                raise JobNotFound(job_id)
            fields = change(job)
            if fields is None:
                return None
            data = {**job.to_dict(), **fields}
            data["updated_at"] = fields.get("updated_at") or utcnow()
            changed = Job.from_dict(data)
            self._write_job(conn, changed, job)
            return changed

    def list_jobs(self, *, owner: str | None = None, status: str | None = None,
                  limit: int = 50, after: Cursor | None = None) -> list[Job]:
        where, params = _where(("owner = ?", owner), ("status = ?", status),
                               ("(created_at < ? OR (created_at = ? AND job_id < ?))",
                                None if after is None else (after[0], after[0], after[1])))
        rows = self.db.connection().execute(
            f"SELECT doc FROM jobs {where} ORDER BY created_at DESC, job_id DESC LIMIT ?", (*params, limit))
        return [Job.from_dict(json.loads(row["doc"])) for row in rows]

    def outstanding_tasks(self) -> int:
        row = self.db.connection().execute("SELECT value FROM counters WHERE name = ?", (OUTSTANDING,)).fetchone()
        return row["value"] if row else 0

    def set_fold_queue(self, replica: str, size: int, now: float) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO fold_queues (replica, size, at) VALUES (?, ?, ?) "
                         "ON CONFLICT (replica) DO UPDATE SET size = excluded.size, at = excluded.at",
                         (replica, size, now))

    def fold_queue(self, now: float) -> int:
        rows = self.db.connection().execute("SELECT replica, size, at FROM fold_queues").fetchall()
        entries = {row["replica"]: (row["size"], row["at"]) for row in rows}
        if stale := stale_fold_queues(entries, now):
            with self.db.transaction() as conn:
                conn.executemany("DELETE FROM fold_queues WHERE replica = ? AND at = ?",  # unless it reported meanwhile
                                 [(r, entries[r][1]) for r in stale])
        return fresh_fold_queue(entries, now)

    def adjust_outstanding(self, delta: int, *, expected: int | None = None) -> bool:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = ?", (OUTSTANDING,)).fetchone()
            if expected is not None and row["value"] != expected:
                return False
            self._count(conn, delta)
            return True

    def _active_jobs(self, conn, owner: str | None) -> list[Job]:
        """The owner's active jobs behind its reservations (inside the caller's transaction); drops the
        reservations no longer held."""
        owner = owner or ""
        rows = conn.execute("SELECT job_id, images, reserved_at, cost FROM quota_reservations WHERE owner = ?",
                            (owner,)).fetchall()
        held = {row["job_id"]: (row["images"], row["reserved_at"], row["cost"]) for row in rows}
        active, kept = held_reservations(held, {j: self._read_job(conn, j) for j in held}, time.time())
        for gone in set(held) - set(kept):
            conn.execute("DELETE FROM quota_reservations WHERE owner = ? AND job_id = ?", (owner, gone))
        return active

    def reserve_quota(self, owner: str | None, job_id: str, images: int, admit: Admit, *, cost: float = 0.0) -> None:
        owner = owner or ""
        with self.db.transaction() as conn:  # BEGIN IMMEDIATE: reservations are serialised
            admit(self._active_jobs(conn, owner), images)
            conn.execute("INSERT OR REPLACE INTO quota_reservations (owner, job_id, images, reserved_at, cost) "
                         "VALUES (?, ?, ?, ?, ?)", (owner, job_id, images, time.time(), cost))

    def release_quota(self, owner: str | None, job_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM quota_reservations WHERE owner = ? AND job_id = ?", (owner or "", job_id))

    # the WHERE clauses of the partial indexes above, so each repair query reads only its index
    _REPAIR_WHERE = {
        REPAIR_COMPLETION: "json_extract(doc, '$.notified_at') IS NOT NULL "
                           "AND json_extract(doc, '$.completion_message_id') IS NULL",
        REPAIR_WEBHOOK: "json_extract(doc, '$.webhook_status') = 'pending'",
    }

    def iter_repairs(self, need: str, page_size: int = 500) -> Iterator[Job]:
        where, after = self._REPAIR_WHERE[need], ""
        while True:
            rows = self.db.connection().execute(
                f"SELECT job_id, doc FROM jobs WHERE {where} AND job_id > ? ORDER BY job_id LIMIT ?",
                (after, page_size)).fetchall()
            yield from (Job.from_dict(json.loads(row["doc"])) for row in rows)
            if len(rows) < page_size:
                return
            after = rows[-1]["job_id"]

    def delete_job(self, job_id: str) -> bool:
        with self.db.transaction() as conn:
            self._count(conn, -outstanding_of(self._read_job(conn, job_id)))  # its unfinished images go too
            conn.execute("DELETE FROM images WHERE job_id = ?", (job_id,))
            return conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount > 0

    def check(self) -> None:
        self.db.connection().execute("SELECT 1").fetchone()

    def save_preset(self, preset: SavedPreset) -> SavedPreset:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT doc FROM presets WHERE owner = ? AND name = ?",
                               (preset.owner, preset.name)).fetchone()
            if row:
                preset = SavedPreset(**{**preset.to_dict(), "created_at": json.loads(row["doc"])["created_at"]})
            conn.execute("INSERT INTO presets (owner, name, doc) VALUES (?, ?, ?) "
                         "ON CONFLICT (owner, name) DO UPDATE SET doc = excluded.doc",
                         (preset.owner, preset.name, json.dumps(preset.to_dict())))
        return preset

    def list_presets(self, owner: str) -> list[SavedPreset]:
        rows = self.db.connection().execute("SELECT doc FROM presets WHERE owner = ? ORDER BY name", (owner,))
        return [SavedPreset.from_dict(json.loads(row["doc"])) for row in rows]

    def delete_preset(self, owner: str, name: str) -> bool:
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM presets WHERE owner = ? AND name = ?", (owner, name)).rowcount > 0

    def close(self) -> None:
        self.db.close()


def _where(*conditions: tuple[str, object]) -> tuple[str, list]:
    """``WHERE`` and the AND of the ``(clause, value)`` conditions whose value is not None (a
    tuple: the values of a clause with several ``?``), with the parameters in order; "" for none."""
    clauses, params = [], []
    for clause, value in conditions:
        if value is None:
            continue
        clauses.append(clause)
        params.extend(value if isinstance(value, tuple) else (value,))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params
