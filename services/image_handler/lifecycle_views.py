"""How the job lifecycle (issue 16) shows in the API's views: cancel, runs, parent and
children, savings, retention. Kept apart from views.py, which adds them with one line each."""
from __future__ import annotations

from imageflow import domain


def job_fields(job: domain.Job, retention_days: int) -> dict:
    return {"skipped": job.skipped, "cancel_requested_at": job.cancel_requested_at, "run": job.run,
            "parent_job_id": job.parent_job_id, "child_job_ids": list(job.child_job_ids or []),
            "bytes_in": job.bytes_in, "bytes_out": job.bytes_out, "saved_percent": job.saved_percent,
            "cost": round(job.cost, 1), "unfinished_cost": round(domain.unfinished_cost(job), 1),
            "expires_at": domain.retention_expiry(job.created_at, retention_days)}


def image_fields(image: domain.Image) -> dict:
    return {"output_bytes": image.output_bytes, "duplicate_of": image.duplicate_of,
            "saved_percent": domain.saved_percent(image.input_bytes or 0, image.output_bytes or 0)
            if image.status == domain.IMAGE_SUCCEEDED else None}


REPORT_COLUMNS = ["input_bytes", "output_bytes", "saved_percent", "duplicate_of"]


def report_cells(image: domain.Image) -> list:
    fields = image_fields(image)
    return [image.input_bytes if image.input_bytes is not None else "",
            fields["output_bytes"] if fields["output_bytes"] is not None else "",
            fields["saved_percent"] if fields["saved_percent"] is not None else "", fields["duplicate_of"] or ""]
