"""``imageflow-setup`` (``python -m imageflow.setup``): create the topics and subscriptions of
imageflow/topology.py for the configured backend, or print their names (``env``). A command
of its own beside the composition root; ``names`` lists what ``ensure`` creates, for
scripts/deploy.sh's teardown, so that topology.py, which bootstrap uses, imports
neither."""
from __future__ import annotations

import argparse
import logging
import os

from .settings import Settings
from .topology import Topics, ensure, subscriptions, topics


def main(argv: list[str] | None = None) -> int:
    """``imageflow-setup``: create the topics and subscriptions for the configured backend
    (``env``: print their names as environment variables, touching nothing)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", nargs="?", choices=("ensure", "env", "names"), default="ensure")
    parser.add_argument("--push-endpoint", help="push subscription endpoint of the email function")
    parser.add_argument("--no-email-subscription", action="store_true",
                        help="leave out the email function's subscription (on GCP its Eventarc trigger owns it)")
    args = parser.parse_args(argv)
    if args.command == "env":  # the names only: no other setting needs to be valid for this
        for name, value in Topics.from_env(os.environ).as_env().items():
            print(f"{name}={value}")
        return 0
    settings = Settings.from_env()
    if args.command == "names":  # what `ensure` creates: "subscription NAME" lines, then "topic NAME"
        for sub in subscriptions(settings, args.push_endpoint, email_subscription=not args.no_email_subscription):
            print(f"subscription {sub.name}")
        for name in topics(settings):
            print(f"topic {name}")
        return 0

    from .bootstrap import make_bus  # only now: `env` needs no adapter

    logging.basicConfig(level=logging.INFO)
    bus = make_bus(settings)
    try:
        ensure(bus, settings, args.push_endpoint, email_subscription=not args.no_email_subscription)
    finally:
        bus.close()
    print(f"topology ready on {settings.backend}: {', '.join(topics(settings))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
