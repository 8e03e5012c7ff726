"""Every topic and subscription ImageFlow uses: their names (the one place they are written),
who publishes to and reads each, and how to create them (``ensure``).

The names are read by the services (Settings.topics), printed for the deployment
(``python -m imageflow.setup env``; k8s/base/topology.env is its output, checked by the tests),
and the setup command (``imageflow-setup``, imageflow/setup.py) creates them locally, on the
emulators and on GCP. ``python -m imageflow.topology --table`` prints the names, the dead-letter
wiring and the table of who publishes and subscribes where (PUBLISHES, SUBSCRIBES, VIEWS), one
shell-readable line each: scripts/deploy.sh grants its IAM roles from it.

This module is data: it imports only the standard library and the bus port's value types at
load time (so deploy.sh can read the table with any python3), and not the settings, which read
it (the subscriptions' delivery policy comes in as any object with ``SubscriptionPolicy``'s fields).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Mapping, Protocol

from .bus import SubscriptionConfig

if TYPE_CHECKING:
    from .bus import MessageBus


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


# Who publishes to which topic, reads which subscription, and reads which topic's metadata, per process
# (Topics attribute names). scripts/deploy.sh grants each service account exactly these (its Pub/Sub
# roles), and tests/deploy/test_deploy_script.py checks them against the calls in each service's code.
PUBLISHES: dict[str, tuple[str, ...]] = {
    # job.submitted for a new job; a job's tasks at once when fair share is off (FAIR_SHARE_TASKS=0)
    "image-handler": ("jobs", "tasks"),
    # tasks (fan-out, fair share), job.submitted for the uploads it joins, job.completed
    "interaction-manager": ("jobs", "tasks", "notifications"),
    "image-processor": ("results",),
}
SUBSCRIBES: dict[str, tuple[str, ...]] = {
    "interaction-manager": ("jobs_sub", "results_sub", "uploads_sub", "tasks_dlq_sub", "webhooks_sub",
                            "webhooks_dlq_sub", "jobs_dlq_sub", "results_dlq_sub"),
    "image-processor": ("tasks_sub",),
    "email-function": ("notifications_sub",),  # on GCP its Eventarc trigger's subscription instead
}
VIEWS: dict[str, tuple[str, ...]] = {  # /readyz: MessageBus.check reads the jobs topic's metadata
    "image-handler": ("jobs",), "interaction-manager": ("jobs",), "image-processor": ("jobs",),
}


def routes(t: Topics, *, email_subscription: bool = True) -> list[tuple[str, str, str | None]]:
    """Every subscription as (subscription, topic, dead-letter topic or None): each work subscription
    dead-letters, and each dead-letter topic is kept on a subscription of its own."""
    work = [(t.jobs_sub, t.jobs, t.jobs_dlq), (t.tasks_sub, t.tasks, t.tasks_dlq),
            (t.results_sub, t.results, t.results_dlq), (t.uploads_sub, t.uploads, t.uploads_dlq),
            # Webhooks: the second subscriber of the notifications topic (services.interaction_manager.webhooks).
            (t.webhooks_sub, t.notifications, t.webhooks_dlq)]
    held = [(t.jobs_dlq_sub, t.jobs_dlq, None), (t.tasks_dlq_sub, t.tasks_dlq, None),
            (t.results_dlq_sub, t.results_dlq, None), (t.uploads_dlq_sub, t.uploads_dlq, None),
            (t.webhooks_dlq_sub, t.webhooks_dlq, None), (t.notifications_dlq_sub, t.notifications_dlq, None)]
    email = [(t.notifications_sub, t.notifications, t.notifications_dlq)] if email_subscription else []
    return work + held + email


def topic_names(t: Topics) -> list[str]:
    return [t.jobs, t.tasks, t.results, t.notifications, t.uploads, t.tasks_dlq, t.webhooks_dlq, t.jobs_dlq,
            t.results_dlq, t.uploads_dlq, t.notifications_dlq]


class SubscriptionPolicy(Protocol):
    """What the subscriptions take from the settings (imageflow.settings.Settings has these)."""

    topics: Topics
    ack_deadline_seconds: int
    max_delivery_attempts: int
    retry_min_backoff_seconds: float
    retry_max_backoff_seconds: float
    notifications_push_endpoint: str | None

    @property
    def webhook_delivery_limit(self) -> int: ...


def subscriptions(settings: SubscriptionPolicy, push_endpoint: str | None = None, *,
                  email_subscription: bool = True) -> list[SubscriptionConfig]:
    """Every subscription; the email function's is a push subscription when an endpoint is
    given (argument, or NOTIFICATIONS_PUSH_ENDPOINT). Without ``email_subscription`` it is
    left out: on GCP the function's Eventarc trigger creates and owns it."""
    t = settings.topics
    push_endpoint = push_endpoint or settings.notifications_push_endpoint
    configs = []
    for name, topic, dead_letter_topic in routes(t, email_subscription=email_subscription):
        # Every work subscription dead-letters after MAX_DELIVERY_ATTEMPTS, and every one backs off between
        # retries, so no message can be redelivered in a loop (the dead-letter subscriptions back off too).
        attempts = settings.webhook_delivery_limit if name == t.webhooks_sub else settings.max_delivery_attempts
        extra = {"push_endpoint": push_endpoint} if name == t.notifications_sub else {}
        configs.append(SubscriptionConfig(name, topic, ack_deadline_seconds=settings.ack_deadline_seconds,
                                          dead_letter_topic=dead_letter_topic, max_delivery_attempts=attempts,
                                          min_backoff_seconds=settings.retry_min_backoff_seconds,
                                          max_backoff_seconds=settings.retry_max_backoff_seconds, **extra))
    return configs


def topics(settings: SubscriptionPolicy) -> list[str]:
    return topic_names(settings.topics)


def ensure(bus: MessageBus, settings: SubscriptionPolicy, push_endpoint: str | None = None, *,
           email_subscription: bool = True) -> None:
    """Create every topic and subscription (idempotent; existing ones are brought in line)."""
    for name in topics(settings):
        bus.ensure_topic(name)
    for config in subscriptions(settings, push_endpoint, email_subscription=email_subscription):
        bus.ensure_subscription(config)


def dead_letter_names(t: Topics) -> dict[str, str]:
    """The dead-letter topics and subscriptions named after their topics, in as_env()'s spelling."""
    return {"JOBS_DLQ_TOPIC": t.jobs_dlq, "JOBS_DLQ_SUBSCRIPTION": t.jobs_dlq_sub,
            "RESULTS_DLQ_TOPIC": t.results_dlq, "RESULTS_DLQ_SUBSCRIPTION": t.results_dlq_sub,
            "UPLOADS_DLQ_TOPIC": t.uploads_dlq, "UPLOADS_DLQ_SUBSCRIPTION": t.uploads_dlq_sub,
            "NOTIFICATIONS_DLQ_TOPIC": t.notifications_dlq, "NOTIFICATIONS_DLQ_SUBSCRIPTION": t.notifications_dlq_sub}


def table(t: Topics, *, email_subscription: bool = True) -> list[str]:
    """The topology as shell-readable lines of three words (names hold no spaces):

    - ``name VAR value``: every topic and subscription name (as_env() and the dead-letter ones);
    - ``dead-letter SUBSCRIPTION TOPIC``: the subscription dead-letters into the topic (Pub/Sub's service
      agent publishes to the topic and acks the subscription);
    - ``publish SERVICE TOPIC``, ``subscribe SERVICE SUBSCRIPTION``, ``view SERVICE TOPIC``: what each
      process does (PUBLISHES, SUBSCRIBES, VIEWS).

    Without ``email_subscription`` the email function's subscription is left out (on GCP its Eventarc
    trigger owns it)."""
    lines = [f"name {var} {value}" for var, value in {**t.as_env(), **dead_letter_names(t)}.items()]
    lines += [f"dead-letter {sub} {dlq}" for sub, _, dlq in routes(t, email_subscription=email_subscription) if dlq]
    for verb, rows in (("publish", PUBLISHES), ("subscribe", SUBSCRIBES), ("view", VIEWS)):
        for service, attrs in rows.items():
            for attr in attrs:
                if verb == "subscribe" and attr == "notifications_sub" and not email_subscription:
                    continue
                lines.append(f"{verb} {service} {getattr(t, attr)}")
    return lines


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imageflow.topology",
                                     description="print the topology (names from the environment)")
    parser.add_argument("--table", action="store_true", required=True, help=table.__doc__.split("\n")[0])
    parser.add_argument("--no-email-subscription", action="store_true",
                        help="leave out the email function's subscription (on GCP its Eventarc trigger owns it)")
    args = parser.parse_args(argv)
    t = Topics.from_env(os.environ if env is None else env)
    sys.stdout.write("".join(line + "\n" for line in table(t, email_subscription=not args.no_email_subscription)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
