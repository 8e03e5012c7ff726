"""SQLite job store (WAL): the embedded default, shared safely by several processes."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..domain import Image, Job, apply_result, fold_progress, utcnow
from ..messages import Result
from ..sqlite_util import SqliteDatabase
from . import FoldOutcome, JobNotFound, JobStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    owner TEXT,
    status TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at DESC);
CREATE TABLE IF NOT EXISTS images (
    job_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (job_id, image_id)
)
"""


class SqliteJobStore(JobStore):
    def __init__(self, path: Path):
        self.db = SqliteDatabase(path, SCHEMA)

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def _write_job(conn, job: Job) -> None:
        conn.execute(
            "INSERT INTO jobs (job_id, created_at, owner, status, doc) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, owner = excluded.owner, doc = excluded.doc",
            (job.job_id, job.created_at, job.owner, job.status, json.dumps(job.to_dict())),
        )

    @staticmethod
    def _read_job(conn, job_id: str) -> Job | None:
        row = conn.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return Job.from_dict(json.loads(row["doc"])) if row else None

    @staticmethod
    def _read_image(conn, job_id: str, image_id: str) -> Image | None:
        row = conn.execute("SELECT doc FROM images WHERE job_id = ? AND image_id = ?", (job_id, image_id)).fetchone()
        return Image.from_dict(json.loads(row["doc"])) if row else None

    # -- port ----------------------------------------------------------------------------
    def create_job(self, job: Job, images: list[Image]) -> None:
        with self.db.transaction() as conn:
            self._write_job(conn, job)
            conn.executemany(
                "INSERT INTO images (job_id, image_id, seq, doc) VALUES (?, ?, ?, ?)",
                [(job.job_id, image.image_id, seq, json.dumps(image.to_dict())) for seq, image in enumerate(images)],
            )

    def get_job(self, job_id: str) -> Job | None:
        return self._read_job(self.db.connection(), job_id)

    def get_image(self, job_id: str, image_id: str) -> Image | None:
        return self._read_image(self.db.connection(), job_id, image_id)

    def list_images(self, job_id: str) -> list[Image]:
        rows = self.db.connection().execute("SELECT doc FROM images WHERE job_id = ? ORDER BY seq", (job_id,))
        return [Image.from_dict(json.loads(row["doc"])) for row in rows]

    def update_images(self, job_id: str, images: list[Image]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("UPDATE images SET doc = ? WHERE job_id = ? AND image_id = ?",
                             [(json.dumps(i.to_dict()), job_id, i.image_id) for i in images if i.job_id == job_id])

    def update_job(self, job_id: str, **fields) -> Job:
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job is None:
                raise JobNotFound(job_id)
            data = job.to_dict()
            data.update(fields)
            data["updated_at"] = fields.get("updated_at") or utcnow()
            job = Job.from_dict(data)
            self._write_job(conn, job)
            return job

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
                conn.execute("UPDATE images SET doc = ? WHERE job_id = ? AND image_id = ?",
                             (json.dumps(updated.to_dict()), updated.job_id, updated.image_id))
                changed_by_job[updated.job_id].append(updated)
                outcome.changed_images.append(updated)
            for job_id in {r.job_id for r in results}:
                job = self._read_job(conn, job_id)
                if job is None:
                    continue
                if changed_by_job.get(job_id):
                    job = fold_progress(job, changed_by_job[job_id], now)
                    self._write_job(conn, job)
                outcome.jobs[job_id] = job
        return outcome

    def mark_notified(self, job_id: str, now: str) -> bool:
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job is None:
                raise JobNotFound(job_id)
            if job.notified_at:
                return False
            job.notified_at = now
            self._write_job(conn, job)
            return True

    def list_jobs(self, *, owner: str | None = None, status: str | None = None,
                  limit: int = 50, before: str | None = None) -> list[Job]:
        clauses, params = [], []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if before is not None:
            clauses.append("created_at < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.connection().execute(
            f"SELECT doc FROM jobs {where} ORDER BY created_at DESC, job_id DESC LIMIT ?", (*params, limit))
        return [Job.from_dict(json.loads(row["doc"])) for row in rows]

    def delete_job(self, job_id: str) -> bool:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM images WHERE job_id = ?", (job_id,))
            return conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount > 0

    def check(self) -> None:
        self.db.connection().execute("SELECT 1").fetchone()

    def close(self) -> None:
        self.db.close()
