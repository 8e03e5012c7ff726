"""Every topic and subscription ImageFlow uses, and an idempotent command that creates them.

Used by the services at start-up (local backend), by the tests, scripts.sh and the deployment.
"""
from __future__ import annotations

import argparse
import logging

from .bus import MessageBus, SubscriptionConfig
from .settings import Settings


def subscriptions(settings: Settings, push_endpoint: str | None = None) -> list[SubscriptionConfig]:
    """Every subscription; the email function's is a push subscription when an endpoint is
    given (argument, or NOTIFICATIONS_PUSH_ENDPOINT)."""
    t = settings.topics
    push_endpoint = push_endpoint or settings.notifications_push_endpoint
    deadline = settings.ack_deadline_seconds
    return [
        SubscriptionConfig(t.jobs_sub, t.jobs, ack_deadline_seconds=deadline),
        SubscriptionConfig(t.tasks_sub, t.tasks, ack_deadline_seconds=deadline,
                           dead_letter_topic=t.tasks_dlq,
                           max_delivery_attempts=settings.max_delivery_attempts),
        SubscriptionConfig(t.results_sub, t.results, ack_deadline_seconds=deadline),
        SubscriptionConfig(t.tasks_dlq_sub, t.tasks_dlq, ack_deadline_seconds=deadline),
        SubscriptionConfig(t.notifications_sub, t.notifications, ack_deadline_seconds=deadline,
                           push_endpoint=push_endpoint),
        SubscriptionConfig(t.uploads_sub, t.uploads, ack_deadline_seconds=deadline),
    ]


def topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.jobs, t.tasks, t.results, t.notifications, t.tasks_dlq, t.uploads]


def ensure(bus: MessageBus, settings: Settings, push_endpoint: str | None = None) -> None:
    """Create every topic and subscription (idempotent)."""
    for name in topics(settings):
        bus.ensure_topic(name)
    for config in subscriptions(settings, push_endpoint):
        bus.ensure_subscription(config)


def main(argv: list[str] | None = None) -> int:
    """``imageflow-setup``: create the topics and subscriptions for the configured backend."""
    from .bootstrap import make_bus

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--push-endpoint", help="push subscription endpoint of the email function")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    settings = Settings.from_env()
    bus = make_bus(settings)
    try:
        ensure(bus, settings, args.push_endpoint)
    finally:
        bus.close()
    print(f"topology ready on {settings.backend}: {', '.join(topics(settings))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
