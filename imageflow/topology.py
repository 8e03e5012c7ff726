"""Every topic and subscription ImageFlow uses: their names (the one place they are written)
and how to create them (``ensure``).

The names are read by the services (Settings.topics), printed for the deployment
(``python -m imageflow.setup env``: scripts/deploy.sh reads it, and
k8s/base/topology.env is its output, checked by the tests), and the setup command
(``imageflow-setup``, imageflow/setup.py) creates them locally, on the emulators and on GCP.
This module imports only the standard library at load time, so deploy.sh can read the
names with any python3.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Mapping

from .bus import SubscriptionConfig

if TYPE_CHECKING:  # settings imports this module
    from .bus import MessageBus
    from .settings import Settings


@dataclass(frozen=True)
class Topics:
    """Topic and subscription names (ARCHITECTURE.md), each overridable by env var."""

    jobs: str = "imageflow-jobs"
    tasks: str = "imageflow-tasks"
    results: str = "imageflow-results"
    notifications: str = "imageflow-notifications"
    tasks_dlq: str = "imageflow-tasks-dlq"
    webhooks_dlq: str = "imageflow-notifications-webhooks-dlq"
    uploads: str = "imageflow-uploads"            # object-finalize events of the bucket (direct uploads)
    jobs_sub: str = "imageflow-jobs-im"
    tasks_sub: str = "imageflow-tasks-processor"
    results_sub: str = "imageflow-results-im"
    tasks_dlq_sub: str = "imageflow-tasks-dlq-im"
    notifications_sub: str = "imageflow-notifications-email"
    webhooks_sub: str = "imageflow-notifications-webhooks"       # the interaction manager's webhook sender
    webhooks_dlq_sub: str = "imageflow-notifications-webhooks-dlq-im"
    uploads_sub: str = "imageflow-uploads-im"

    ENV = {
        "jobs": "JOBS_TOPIC",
        "tasks": "TASKS_TOPIC",
        "results": "RESULTS_TOPIC",
        "notifications": "NOTIFICATIONS_TOPIC",
        "tasks_dlq": "TASKS_DLQ_TOPIC",
        "webhooks_dlq": "WEBHOOKS_DLQ_TOPIC",
        "jobs_sub": "JOBS_SUBSCRIPTION",
        "tasks_sub": "TASKS_SUBSCRIPTION",
        "results_sub": "RESULTS_SUBSCRIPTION",
        "tasks_dlq_sub": "TASKS_DLQ_SUBSCRIPTION",
        "notifications_sub": "NOTIFICATIONS_SUBSCRIPTION",
        "webhooks_sub": "WEBHOOKS_SUBSCRIPTION",
        "webhooks_dlq_sub": "WEBHOOKS_DLQ_SUBSCRIPTION",
        "uploads": "UPLOADS_TOPIC",
        "uploads_sub": "UPLOADS_SUBSCRIPTION",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Topics":
        return cls(**{attr: env.get(var) or getattr(cls, attr) for attr, var in cls.ENV.items()})

    # Dead-letter topics of the jobs, results, uploads and notifications subscriptions, named after them, and the
    # subscriptions that read them (imageflow.topology); the tasks' dead-letter topic has its own names above.
    @property
    def jobs_dlq(self) -> str:
        return f"{self.jobs}-dlq"

    @property
    def jobs_dlq_sub(self) -> str:
        return f"{self.jobs_dlq}-im"

    @property
    def results_dlq(self) -> str:
        return f"{self.results}-dlq"

    @property
    def results_dlq_sub(self) -> str:
        return f"{self.results_dlq}-im"

    @property
    def notifications_dlq(self) -> str:
        return f"{self.notifications}-dlq"

    @property
    def notifications_dlq_sub(self) -> str:
        return f"{self.notifications_dlq}-hold"  # kept for inspection: nothing consumes it


    @property
    def uploads_dlq(self) -> str:
        return f"{self.uploads}-dlq"

    @property
    def uploads_dlq_sub(self) -> str:
        return f"{self.uploads_dlq}-hold"  # kept for inspection: nothing consumes it

    def as_env(self) -> dict[str, str]:
        """The names as environment variables (the ConfigMap's and deploy.sh's spelling)."""
        return {self.ENV[f.name]: getattr(self, f.name) for f in fields(self)}




def subscriptions(settings: Settings, push_endpoint: str | None = None, *,
                  email_subscription: bool = True) -> list[SubscriptionConfig]:
    """Every subscription; the email function's is a push subscription when an endpoint is
    given (argument, or NOTIFICATIONS_PUSH_ENDPOINT). Without ``email_subscription`` it is
    left out: on GCP the function's Eventarc trigger creates and owns it."""
    t = settings.topics
    push_endpoint = push_endpoint or settings.notifications_push_endpoint

    def sub(name: str, topic: str, dead_letter_topic: str | None = None, max_attempts: int | None = None,
            **kwargs) -> SubscriptionConfig:
        # Every work subscription dead-letters after MAX_DELIVERY_ATTEMPTS, and every one backs off between
        # retries, so no message can be redelivered in a loop (the dead-letter subscriptions back off too).
        return SubscriptionConfig(name, topic, ack_deadline_seconds=settings.ack_deadline_seconds,
                                  dead_letter_topic=dead_letter_topic,
                                  max_delivery_attempts=max_attempts or settings.max_delivery_attempts,
                                  min_backoff_seconds=settings.retry_min_backoff_seconds,
                                  max_backoff_seconds=settings.retry_max_backoff_seconds, **kwargs)

    configs = [
        sub(t.jobs_sub, t.jobs, t.jobs_dlq),
        sub(t.tasks_sub, t.tasks, t.tasks_dlq),
        sub(t.results_sub, t.results, t.results_dlq),
        sub(t.uploads_sub, t.uploads, t.uploads_dlq),
        # Webhooks: the second subscriber of the notifications topic (services.interaction_manager.webhooks).
        sub(t.webhooks_sub, t.notifications, t.webhooks_dlq, max_attempts=settings.webhook_delivery_limit),
        sub(t.jobs_dlq_sub, t.jobs_dlq),
        sub(t.tasks_dlq_sub, t.tasks_dlq),
        sub(t.results_dlq_sub, t.results_dlq),
        sub(t.uploads_dlq_sub, t.uploads_dlq),
        sub(t.webhooks_dlq_sub, t.webhooks_dlq),
        sub(t.notifications_dlq_sub, t.notifications_dlq),
    ]
    if email_subscription:
        configs.append(sub(t.notifications_sub, t.notifications, t.notifications_dlq, push_endpoint=push_endpoint))
    return configs


def topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.jobs, t.tasks, t.results, t.notifications, t.uploads, t.tasks_dlq, t.webhooks_dlq, t.jobs_dlq,
            t.results_dlq, t.uploads_dlq, t.notifications_dlq]


def ensure(bus: MessageBus, settings: Settings, push_endpoint: str | None = None, *,
           email_subscription: bool = True) -> None:
    """Create every topic and subscription (idempotent; existing ones are brought in line)."""
    for name in topics(settings):
        bus.ensure_topic(name)
    for config in subscriptions(settings, push_endpoint, email_subscription=email_subscription):
        bus.ensure_subscription(config)
