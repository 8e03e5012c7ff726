"""Job store contract for the job lifecycle (cancel, retry, savings), for every adapter."""
from __future__ import annotations

from dataclasses import replace

from imageflow import domain
from imageflow.domain import Image, Job, new_id
from imageflow.messages import Result


def make_job(store, n=3, **fields):
    job = Job(job_id=new_id(), total=n, operations=[{"op": "grayscale"}], **fields)
    images = [Image(job_id=job.job_id, image_id=new_id(), filename=f"p{i}.jpg", input_bytes=1000,
                    input_path=domain.input_path(job.job_id, f"{i:032x}", f"p{i}.jpg")) for i in range(n)]
    store.create_job(job, images)
    return job, images


def ok(image, size=100):
    return Result(job_id=image.job_id, image_id=image.image_id, status="succeeded", input_bytes=1000,
                  output_path=f"{image.job_id}/output/{image.image_id}-x.jpg", content_type="image/jpeg",
                  width=10, height=20, bytes=size, outputs=[{"path": "a", "content_type": "image/jpeg", "width": 1,
                                                             "height": 1, "bytes": size, "variant": ""}])


def skipped(image):
    return Result(job_id=image.job_id, image_id=image.image_id, status="skipped", error="skipped: cancelled")


def test_a_cancelled_job_ends_cancelled_with_its_counts(jobstore):
    job, images = make_job(jobstore)
    jobstore.record_results([ok(images[0])])
    jobstore.update_job(job.job_id, cancel_requested_at=domain.utcnow())
    outcome = jobstore.record_results([skipped(images[1]), skipped(images[2])])
    final = outcome.jobs[job.job_id]
    assert (final.status, final.succeeded, final.failed, final.skipped) == ("cancelled", 1, 0, 2)
    assert jobstore.get_job(job.job_id).status == "cancelled" and final.completed_at
    assert jobstore.get_image(job.job_id, images[1].image_id).status == "skipped"


def test_savings_are_folded_from_the_succeeded_images(jobstore):
    job, images = make_job(jobstore, n=2)
    jobstore.record_results([ok(images[0], 250), ok(images[1], 150)])
    stored = jobstore.get_job(job.job_id)
    assert (stored.bytes_in, stored.bytes_out, stored.saved_percent) == (2000, 400, 80.0)
    image = jobstore.get_image(job.job_id, images[0].image_id)
    assert (image.input_bytes, image.output_bytes) == (1000, 250)


def test_update_images_requeues_them_and_keeps_the_upload_order(jobstore):
    job, images = make_job(jobstore)
    jobstore.record_results([ok(images[0]), Result(job_id=job.job_id, image_id=images[1].image_id,
                                                    status="failed", error="boom"), skipped(images[2])])
    stored = jobstore.list_images(job.job_id)
    requeued = [replace(i, status="queued", error=None) for i in stored[1:]]
    ghost = Image(job_id=job.job_id, image_id=new_id(), filename="ghost.jpg", input_path="x/input/g")
    jobstore.update_images(job.job_id, requeued + [ghost])
    after = jobstore.list_images(job.job_id)
    assert [i.image_id for i in after] == [i.image_id for i in images]
    assert [i.status for i in after] == ["succeeded", "queued", "queued"]
    assert after[1].error is None
    recounted = domain.recount(jobstore.get_job(job.job_id), after, domain.utcnow())
    assert (recounted.succeeded, recounted.failed, recounted.skipped, recounted.status) == (1, 0, 0, "processing")
    jobstore.update_job(job.job_id, **{k: getattr(recounted, k) for k in ("succeeded", "failed", "skipped",
                                                                           "status")}, completed_at=None)
    outcome = jobstore.record_results([ok(after[1]), ok(after[2])])
    assert outcome.jobs[job.job_id].status == "completed" and outcome.jobs[job.job_id].succeeded == 3
