"""In-memory fakes of the ports (cosmicpython's FakeRepository style), for unit tests of the
services' logic: each keeps its state in plain dicts and lists the test can read, follows the
port's contract (the same domain rules decide), and can be told to fail."""
from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace

from imageflow import domain
from imageflow.blobstore import BlobNotFound, BlobStore, validate_path
from imageflow.bus import BusError, MessageBus, ReceivedMessage, SubscriptionConfig
from imageflow.jobstore import (
    REPAIR_COMPLETION,
    REPAIR_WEBHOOK,
    FoldOutcome,
    Joined,
    JobNotFound,
    JobStore,
    check_room_for,
    fresh_fold_queue,
    held_reservations,
    outstanding_of,
    place_images,
    with_job,
)


class Outage(RuntimeError):
    """What a fake raises when the test turned it off."""


class FakeJobStore(JobStore):
    def __init__(self):
        self.jobs: dict[str, domain.Job] = {}
        self.images: dict[str, dict[str, domain.Image]] = {}
        self.reservations: dict[str, dict[str, tuple[int, float]]] = defaultdict(dict)  # owner -> job_id -> (n, at)
        self.outstanding = 0  # the maintained counter: every job write below moves it (_store_job)
        self.fold_queues: dict[str, tuple[int, float]] = {}  # replica -> (results not yet folded, at)
        self.down = False

    def _store_job(self, job):
        self.outstanding += outstanding_of(job) - outstanding_of(self.jobs.get(job.job_id))
        self.jobs[job.job_id] = job

    def outstanding_tasks(self):
        self._up()
        return self.outstanding

    def set_fold_queue(self, replica, size, now):
        self._up()
        self.fold_queues[replica] = (size, now)

    def fold_queue(self, now):
        self._up()
        return fresh_fold_queue(self.fold_queues, now)

    def adjust_outstanding(self, delta, *, expected=None):
        if expected is not None and self.outstanding != expected:
            return False
        self.outstanding += delta
        return True

    def _active(self, owner):
        held = self.reservations[owner or ""]
        active, kept = held_reservations(held, {j: self.jobs.get(j) for j in held}, time.time())
        self.reservations[owner or ""] = kept
        return active

    def reserve_quota(self, owner, job_id, images, admit, *, cost=0.0):
        self._up()
        admit(self._active(owner), images)
        self.reservations[owner or ""][job_id] = (images, time.time(), cost)

    def release_quota(self, owner, job_id):
        self.reservations[owner or ""].pop(job_id, None)

    def iter_repairs(self, need):
        wanted = {REPAIR_COMPLETION: lambda j: j.notified_at and not j.completion_message_id,
                  REPAIR_WEBHOOK: lambda j: j.webhook_status == "pending"}[need]
        return iter([copy.deepcopy(j) for j in self.jobs.values() if wanted(j)])

    def _up(self):
        if self.down:
            raise Outage("job store unavailable")

    def create_job(self, job, images):
        self._up()
        self._store_job(copy.deepcopy(job))
        self.images[job.job_id] = {}
        for seq, image in enumerate(images):
            image.seq = seq
            self.images[job.job_id][image.image_id] = copy.deepcopy(image)

    def page_images(self, job_id, *, status=None, after=None, limit=100):
        images = sorted(self.images.get(job_id, {}).values(), key=lambda i: i.seq)
        return [copy.deepcopy(i) for i in images if (after is None or i.seq > after)
                and (status is None or i.status == status)][:limit]

    def join_images(self, job_id, images, *, max_total, now, admit=None):
        self._up()
        before = self.jobs.get(job_id)
        if before is None:
            raise JobNotFound(job_id)
        held = sorted(i.image_id for i in images if i.image_id in self.images[job_id])
        fresh = [i for i in images if i.image_id not in self.images[job_id]]
        if not fresh:
            return Joined(copy.deepcopy(before), [], held)
        check_room_for(copy.deepcopy(before), len(fresh), max_total)
        if admit is not None:
            fresh = admit(with_job(self._active(before.owner), copy.deepcopy(before)), fresh)
        job = place_images(copy.deepcopy(before), fresh, now)
        for image in fresh:
            self.images[job_id][image.image_id] = copy.deepcopy(image)
        self._store_job(job)
        return Joined(copy.deepcopy(job), fresh, held)

    def close_job(self, job_id, now):
        self._up()
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        self._store_job(domain.close_job(job, now))
        return copy.deepcopy(self.jobs[job_id])

    def untasked_images(self, job_id, limit=500):
        images = sorted(self.images.get(job_id, {}).values(), key=lambda i: i.seq)
        return [copy.deepcopy(i) for i in images
                if not i.tasked and i.status not in domain.TERMINAL_IMAGE_STATUSES][:limit]

    def update_images(self, job_id, images):
        for image in images:
            current = self.images.get(job_id, {}).get(image.image_id)
            if current is not None and image.job_id == job_id:
                self.images[job_id][image.image_id] = replace(copy.deepcopy(image), seq=current.seq)

    def mark_tasked(self, job_id, image_ids):
        for image_id in image_ids:
            self.images[job_id][image_id].tasked = True

    def get_job(self, job_id):
        self._up()
        return copy.deepcopy(self.jobs.get(job_id))

    def get_image(self, job_id, image_id):
        return copy.deepcopy(self.images.get(job_id, {}).get(image_id))

    def list_images(self, job_id):
        return [copy.deepcopy(i) for i in self.images.get(job_id, {}).values()]

    def _set(self, job_id, fields):
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        data = {**job.to_dict(), **fields, "updated_at": fields.get("updated_at") or domain.utcnow()}
        self._store_job(domain.Job.from_dict(data))
        return copy.deepcopy(self.jobs[job_id])

    def update_job(self, job_id, **fields):
        self._up()
        return self._set(job_id, fields)

    def transition(self, job_id, change):
        self._up()
        if job_id not in self.jobs:
            raise JobNotFound(job_id)
        fields = change(copy.deepcopy(self.jobs[job_id]))
        return None if fields is None else self._set(job_id, fields)

    def record_results(self, results):
        self._up()
        outcome, now = FoldOutcome(), domain.utcnow()
        changed = defaultdict(list)
        for result in results:
            image = self.images.get(result.job_id, {}).get(result.image_id)
            updated = domain.apply_result(image, result, now) if image else None
            if updated is None:
                outcome.ignored += 1
                continue
            self.images[result.job_id][result.image_id] = updated
            changed[result.job_id].append(updated)
            outcome.changed_images.append(updated)
        for job_id in {r.job_id for r in results}:
            if job_id not in self.jobs:
                continue
            if changed[job_id]:
                self._store_job(domain.fold_progress(self.jobs[job_id], changed[job_id], now))
            outcome.jobs[job_id] = copy.deepcopy(self.jobs[job_id])
        return outcome

    def list_jobs(self, *, owner=None, status=None, limit=50, after=None):
        self._up()
        jobs = sorted((j for j in self.jobs.values() if (owner is None or j.owner == owner)
                       and (status is None or j.status == status)),
                      key=lambda j: (j.created_at, j.job_id), reverse=True)
        if after is not None:
            jobs = [j for j in jobs if (j.created_at, j.job_id) < tuple(after)]
        return [copy.deepcopy(j) for j in jobs[:limit]]

    def delete_job(self, job_id):
        self.outstanding -= outstanding_of(self.jobs.get(job_id))
        self.images.pop(job_id, None)
        return self.jobs.pop(job_id, None) is not None

    def check(self):
        self._up()


class FakeBlobStore(BlobStore):
    def __init__(self):
        self._lock = threading.Lock()
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.down = False

    def put(self, path, data, content_type, *, cache_control=None):
        if self.down:
            raise Outage("storage unavailable")
        self.objects[validate_path(path)] = (bytes(data), content_type)

    def get(self, path):
        if self.down:
            raise Outage("storage unavailable")
        try:
            return self.objects[path][0]
        except KeyError:
            raise BlobNotFound(path) from None

    def open(self, path):
        import io
        return io.BytesIO(self.get(path))

    def transition(self, path, change, content_type):
        from imageflow.blobstore import DELETE
        with self._lock:
            current = self.objects.get(path, (None, ""))[0]
            new = change(current)
            if new is None or (new is DELETE and current is None):
                return False
            if new is DELETE:
                del self.objects[path]
            else:
                self.put(path, new, content_type)
            return True

    def exists(self, path):
        return path in self.objects

    def list(self, prefix):
        return sorted(p for p in self.objects if p.startswith(prefix))

    def delete_prefix(self, prefix):
        doomed = self.list(prefix)
        for path in doomed:
            del self.objects[path]
        return len(doomed)

    def check(self):
        pass


class FakeBus(MessageBus):
    """Records what is published, per topic; ``fail_topics`` refuses publishes to those topics."""

    def __init__(self):
        self.published: dict[str, list[tuple[bytes, dict]]] = defaultdict(list)
        self.fail_topics: set[str] = set()

    def ensure_topic(self, name):
        pass

    def ensure_subscription(self, config: SubscriptionConfig):
        pass

    def publish(self, topic, data, attributes=None):
        if topic in self.fail_topics:
            raise BusError(f"publish to {topic} failed")
        self.published[topic].append((bytes(data), dict(attributes or {})))
        return uuid.uuid4().hex

    def messages(self, topic, cls):
        """What was published to ``topic``, decoded as ``cls``."""
        return [cls.decode(data) for data, _ in self.published[topic]]

    def pull(self, subscription, max_messages=10, timeout=0.0):
        return []

    def backlog(self, subscription):
        return 0

    def check(self):
        pass


class FakeMessage(ReceivedMessage):
    """A delivered message whose settlement the test reads."""

    def __init__(self, data: bytes, attributes: dict | None = None, delivery_attempt: int = 1):
        self.message_id = uuid.uuid4().hex
        self.data = data
        self.attributes = attributes or {}
        self.delivery_attempt = delivery_attempt
        self.publish_time = 0.0
        self.acked = self.nacked = False
        self.extended: list[float] = []

    def ack(self):
        self.acked = True

    def nack(self):
        self.nacked = True

    def extend(self, seconds):
        self.extended.append(seconds)
