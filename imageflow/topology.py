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

    def sub(name: str, topic: str, dead_letter_topic: str | None = None, **kwargs) -> SubscriptionConfig:
        # Every work subscription dead-letters after MAX_DELIVERY_ATTEMPTS, and every one backs off between
        # retries, so no message can be redelivered in a loop (the dead-letter subscriptions back off too).
        return SubscriptionConfig(name, topic, ack_deadline_seconds=settings.ack_deadline_seconds,
                                  dead_letter_topic=dead_letter_topic,
                                  max_delivery_attempts=settings.max_delivery_attempts,
                                  min_backoff_seconds=settings.retry_min_backoff_seconds,
                                  max_backoff_seconds=settings.retry_max_backoff_seconds, **kwargs)

    return [
        sub(t.jobs_sub, t.jobs, t.jobs_dlq),
        sub(t.tasks_sub, t.tasks, t.tasks_dlq),
        sub(t.results_sub, t.results, t.results_dlq),
        sub(t.notifications_sub, t.notifications, t.notifications_dlq, push_endpoint=push_endpoint),
        sub(t.jobs_dlq_sub, t.jobs_dlq),
        sub(t.tasks_dlq_sub, t.tasks_dlq),
        sub(t.results_dlq_sub, t.results_dlq),
        sub(t.notifications_dlq_sub, t.notifications_dlq),
    ]


def topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.jobs, t.tasks, t.results, t.notifications, t.tasks_dlq, t.jobs_dlq, t.results_dlq,
            t.notifications_dlq]


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
