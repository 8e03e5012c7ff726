"""KEDA's scaling of image-processor, replayed offline on the real pipeline.

Jobs go in through the REST API, the interaction manager fans them out, processors work the
tasks off, results are folded, on the local backends. Every 15 s of simulated time (KEDA's
pollingInterval) the test reads the interaction manager's GET /outstanding, as KEDA's
metrics-api trigger does, and the Pub/Sub backlog 90 s late, as the gcp-pubsub trigger sees
it. The replica count then follows KEDA's and the HPA's documented rules with the numbers of
keda/scaledobject.yaml: per trigger ceil(metric / target), the larger wins; activation and
cooldown for 0 <-> 1; the HPA's behavior (scale-up policies, scale-down stabilization and
rate), its 10 % tolerance. Wall time: a few seconds."""
from __future__ import annotations

import io
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from PIL import Image

from imageflow.bootstrap import make_backends
from imageflow.messages import Result
from imageflow.settings import Settings
from services.image_processor.processing import Processor
from services.interaction_manager.coordinator import Coordinator

ROOT = Path(__file__).resolve().parents[2]
PUBSUB_LAG_SECONDS = 90            # Cloud Monitoring's num_undelivered_messages: 60-120 s late
TASKS_PER_REPLICA_PER_POLL = 10    # PROCESSOR_CONCURRENCY=2 x 15 s / 3 s per image
HPA_TOLERANCE = 0.1


@dataclass
class KedaModel:
    """KEDA + HPA for one ScaledObject with two AverageValue triggers."""

    spec: dict
    replicas: int = 0
    now: int = 0
    last_active: int | None = None
    recommendations: deque = field(default_factory=deque)   # (time, desired) for stabilization
    scale_downs: deque = field(default_factory=deque)       # (time, pods removed) for rate limits

    def __post_init__(self):
        triggers = {t["type"]: t["metadata"] for t in self.spec["triggers"]}
        self.api_target = float(triggers["metrics-api"]["targetValue"])
        self.api_activation = float(triggers["metrics-api"].get("activationTargetValue", 0))
        self.pubsub_target = float(triggers["gcp-pubsub"]["value"])
        self.pubsub_activation = float(triggers["gcp-pubsub"].get("activationValue", 0))
        behavior = self.spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        self.up, self.down = behavior["scaleUp"], behavior["scaleDown"]

    def poll(self, outstanding: float, pubsub_backlog: float) -> int:
        """One polling interval later: the replica count KEDA and the HPA settle on."""
        self.now += self.spec["pollingInterval"]
        active = outstanding > self.api_activation or pubsub_backlog > self.pubsub_activation
        if active:
            self.last_active = self.now
        if self.replicas == 0:
            # KEDA itself activates a scaled-to-zero target (to 1); the HPA takes it from there.
            if active:
                self.replicas = max(1, self.spec["minReplicaCount"])
            return self.replicas
        if not active and (self.last_active is None
                           or self.now - self.last_active >= self.spec["cooldownPeriod"]):
            self.replicas = self.spec["minReplicaCount"]
            self.recommendations.clear()
            self.scale_downs.clear()
            return self.replicas
        desired = max(self._per_metric(outstanding, self.api_target),
                      self._per_metric(pubsub_backlog, self.pubsub_target))
        desired = min(max(desired, 1), self.spec["maxReplicaCount"])  # the HPA's min is 1
        self.replicas = self._apply_behavior(desired)
        return self.replicas

    def _per_metric(self, value: float, target: float) -> int:
        ratio = value / (target * self.replicas)
        if abs(ratio - 1) <= HPA_TOLERANCE:
            return self.replicas
        return math.ceil(value / target)

    def _apply_behavior(self, desired: int) -> int:
        self.recommendations.append((self.now, desired))
        window = self.down["stabilizationWindowSeconds"]
        while self.recommendations and self.recommendations[0][0] <= self.now - window:
            self.recommendations.popleft()
        if desired > self.replicas:
            allowed = max(self._up_limit(p) for p in self.up["policies"])
            return min(desired, allowed)
        # Scaling down: the highest recommendation of the window, then the rate limit.
        target = max(d for _, d in self.recommendations)
        if target >= self.replicas:
            return self.replicas
        period = max(p["periodSeconds"] for p in self.down["policies"])
        while self.scale_downs and self.scale_downs[0][0] <= self.now - period:
            self.scale_downs.popleft()
        at_period_start = self.replicas + sum(n for _, n in self.scale_downs)
        floor = min(math.ceil(at_period_start * (1 - p["value"] / 100)) if p["type"] == "Percent"
                    else at_period_start - p["value"] for p in self.down["policies"])
        new = max(target, floor, 0)
        if new < self.replicas:
            self.scale_downs.append((self.now, self.replicas - new))
        return min(new, self.replicas)

    def _up_limit(self, policy: dict) -> int:
        if policy["type"] == "Percent":
            return math.ceil(self.replicas * (1 + policy["value"] / 100))
        return self.replicas + policy["value"]


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (seed % 256, 80, 160)).save(buf, "PNG")
    return buf.getvalue()


class Pipeline:
    """The services' handlers on one local data dir, stepped by hand instead of by threads."""

    def __init__(self, data_dir: Path, env: dict | None = None):
        from services.image_handler.app import create_app as handler_app
        from services.interaction_manager.app import create_app as manager_app

        self.settings = Settings.from_env({"IMAGEFLOW_DATA_DIR": str(data_dir), **(env or {})})
        self.backends = make_backends(self.settings)
        self.coordinator = Coordinator(self.settings, self.backends.jobs, self.backends.bus, self.backends.blobs)
        self.processor = Processor(self.settings, self.backends.blobs, self.backends.bus)
        self.api = handler_app({"data_dir": self.settings.data_dir, "fair_share_tasks": self.settings.fair_share_tasks,
                                "fair_share_min": self.settings.fair_share_min},
                               backends=self.backends).test_client()
        self.manager = manager_app(self.settings, self.backends, self.coordinator).test_client()
        self.published = 0
        self.finished = 0

    def submit(self, images: int, per_job: int = 40) -> None:
        """``images`` images, as jobs of at most ``per_job`` (under MAX_FILES_PER_JOB)."""
        for start in range(0, images, per_job):
            files = [(io.BytesIO(png(i)), f"photo-{i}.png") for i in range(start, min(images, start + per_job))]
            response = self.api.post("/api/v1/jobs", data={"files": files, "operations": '[{"op": "grayscale"}]'},
                                     content_type="multipart/form-data")
            assert response.status_code == 202, response.json

    def interaction_manager_fans_out(self) -> None:
        topics = self.settings.topics
        while messages := self.backends.bus.pull(topics.jobs_sub, max_messages=10):
            for message in messages:
                before = self.backends.bus.backlog(topics.tasks_sub)
                self.coordinator.handle_job_submitted(message)
                self.published += self.backends.bus.backlog(topics.tasks_sub) - before

    def processors_work(self, replicas: int) -> None:
        budget = replicas * TASKS_PER_REPLICA_PER_POLL
        while budget > 0:
            messages = self.backends.bus.pull(self.settings.topics.tasks_sub, max_messages=min(budget, 50))
            if not messages:
                break
            for message in messages:
                self.processor.handle_message(message)
            budget -= len(messages)

    def interaction_manager_folds(self) -> None:
        while messages := self.backends.bus.pull(self.settings.topics.results_sub, max_messages=100):
            self.coordinator.fold([Result.decode(m.data) for m in messages])
            for message in messages:
                message.ack()
            self.finished += len(messages)

    def outstanding(self) -> int:
        """What KEDA's metrics-api trigger reads."""
        response = self.manager.get("/outstanding")
        assert response.status_code == 200
        return response.json["outstanding_tasks"]

    def pubsub_backlog(self) -> int:
        return self.backends.bus.backlog(self.settings.topics.tasks_sub)


@pytest.fixture
def scaled_object() -> dict:
    return yaml.safe_load((ROOT / "keda/scaledobject.yaml").read_text())["spec"]


def test_replicas_follow_a_growing_then_draining_backlog(tmp_path, scaled_object):
    pipeline = Pipeline(tmp_path / "data")
    keda = KedaModel(scaled_object)
    poll = scaled_object["pollingInterval"]
    lag_polls = PUBSUB_LAG_SECONDS // poll
    # Jobs arriving per poll: a quiet start, a burst growing to 120 images a poll, then quiet.
    arrivals = [0, 0, 30, 60, 120, 120, 40] + [0] * 60
    backlog_history: list[int] = []
    timeline = []
    for images in arrivals:
        if images:
            pipeline.submit(images)
        pipeline.interaction_manager_fans_out()
        exact = pipeline.outstanding()
        # The endpoint's count is the exact number published and not yet finished.
        assert exact == pipeline.published - pipeline.finished
        backlog_history.append(pipeline.pubsub_backlog())
        late = backlog_history[-1 - lag_polls] if len(backlog_history) > lag_polls else 0
        replicas = keda.poll(exact, late)
        timeline.append((exact, late, replicas))
        pipeline.processors_work(replicas)
        pipeline.interaction_manager_folds()

    outstanding = [t[0] for t in timeline]
    late = [t[1] for t in timeline]
    replicas = [t[2] for t in timeline]
    spec = scaled_object
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]

    # Idle: scaled to zero.
    assert replicas[:2] == [0, 0]
    # The burst: the exact count wakes the workers at the first poll while Pub/Sub's metric
    # still reads 0; then the HPA follows ceil(outstanding / 10) within its scale-up
    # policies (double, or +4 pods, per 15 s).
    assert (outstanding[2], late[2], replicas[2]) == (30, 0, 1)
    assert late[3] == 0 and replicas[3] == min(math.ceil(outstanding[3] / 10), 1 + 4)
    assert replicas[4] == min(math.ceil(outstanding[4] / 10), 2 * replicas[3])
    peak = max(replicas)
    assert peak == min(spec["maxReplicaCount"], math.ceil(max(outstanding) / 10))
    # Never fewer than one worker while a task is outstanding.
    assert all(r >= 1 for o, r in zip(outstanding, replicas) if o > 0)
    # Everything submitted got processed, and the endpoint counted down to 0.
    assert pipeline.finished == pipeline.published == sum(arrivals)
    drained = outstanding.index(0, 3)
    assert all(o == 0 for o in outstanding[drained:])
    # Draining: the late Pub/Sub metric still shows the backlog of 90 s ago, so the workers
    # stay (the price of the lag: idle pods for a few minutes), then the scale-down window
    # holds the count; no flapping up again.
    last_active = max(i for i in range(len(timeline)) if outstanding[i] > 0 or late[i] > 0)
    assert last_active == drained - 1 + PUBSUB_LAG_SECONDS // poll
    window = behavior["scaleDown"]["stabilizationWindowSeconds"] // poll
    assert set(replicas[drained:last_active + 1]) == {peak}
    first_down = next(i for i in range(drained, len(replicas)) if replicas[i] < peak)
    assert first_down >= last_active + 1
    assert first_down - (drained - 1) >= window, "the window keeps the count through the lag"
    assert all(b <= a for a, b in zip(replicas[drained:], replicas[drained + 1:])), "no flapping"
    # Then at most half the workers per minute (the HPA's scale-down policy).
    steps = [(i, replicas[i - 1], replicas[i]) for i in range(drained + 1, len(replicas))
             if 0 < replicas[i] < replicas[i - 1]]
    assert len(steps) >= 2
    for (i, before, after), (j, _, _) in zip(steps, steps[1:]):
        assert after >= math.ceil(before / 2) and (j - i) * poll >= 60
    # To zero only after cooldownPeriod with both triggers at 0.
    zero = replicas.index(0, drained)
    assert (zero - last_active) * poll == spec["cooldownPeriod"]
    assert set(replicas[zero:]) == {0}


def test_keda_model_matches_the_formula_on_fixed_inputs(scaled_object):
    """The model on hand-checked inputs: activation from 0 to 1, then ceil(metric / 10)
    capped by the scale-up policies and maxReplicaCount, the larger trigger winning."""
    keda = KedaModel(scaled_object)
    assert keda.poll(0, 0) == 0
    assert keda.poll(1, 0) == 1            # activation: any outstanding task
    assert keda.poll(95, 0) == 5           # ceil(95/10)=10, but +4 pods per 15 s: 1 -> 5
    assert keda.poll(95, 0) == 10          # then 10
    assert keda.poll(40, 400) == 20        # the late Pub/Sub value wins, capped at 20 (and 2x)
    assert keda.poll(0, 0) == 20           # scale-down window: hold


def test_images_held_back_by_fair_share_still_scale_the_processors(tmp_path, scaled_object):
    """Fair share (issue 24) keeps most of a big backlog off the bus (FAIR_SHARE_TASKS here 40):
    GET /outstanding still counts every image without a result, so KEDA scales the processors
    to the whole backlog, not to the slice that is on the bus; and every image is processed."""
    pipeline = Pipeline(tmp_path / "data", {"FAIR_SHARE_TASKS": "40", "FAIR_SHARE_MIN": "10"})
    keda = KedaModel(scaled_object)
    pipeline.submit(400)
    pipeline.interaction_manager_fans_out()
    assert pipeline.published == 40                                  # the share is on the bus...
    assert pipeline.outstanding() == 400                             # ...the backlog is what KEDA reads
    replicas = [keda.poll(pipeline.outstanding(), pipeline.pubsub_backlog())]
    while pipeline.outstanding():
        pipeline.processors_work(replicas[-1])
        pipeline.interaction_manager_folds()                         # each fold releases the next slices
        assert pipeline.pubsub_backlog() <= 40
        replicas.append(keda.poll(pipeline.outstanding(), pipeline.pubsub_backlog()))
    assert pipeline.finished == 400
    # 400 outstanding -> ceil(400 / 10) = 40 wanted, capped at maxReplicaCount: the workers scale
    # as they would with every task published (the bus's 40 alone would give 4)
    assert max(replicas) == scaled_object["maxReplicaCount"]
