"""Push delivery for the local bus: what Pub/Sub does for a push subscription.

Each message of a subscription with a ``push_endpoint`` is POSTed as Pub/Sub's push
envelope (``{"message": {"data", "attributes", "messageId", "publishTime"},
"subscription", "deliveryAttempt"}``), which functions-framework turns into a CloudEvent
exactly as Cloud Functions receives it. A 2xx answer acks; anything else, or no answer,
leaves the message for redelivery after an exponential backoff (10 s at most), and the
subscription's dead-letter policy applies as for pull.

Run with ``python -m imageflow.bus.push`` (``./scripts.sh up`` does).
"""
from __future__ import annotations

import base64
import logging
import signal
import threading
from datetime import datetime, timezone

import requests

from ..settings import Settings
from . import ReceivedMessage
from .sqlite import SqliteBus

log = logging.getLogger("imageflow.push")


def envelope(subscription: str, message: ReceivedMessage, project: str = "local") -> dict:
    published = datetime.fromtimestamp(message.publish_time, timezone.utc).isoformat().replace("+00:00", "Z")
    return {
        "message": {
            "data": base64.b64encode(message.data).decode("ascii"),
            "attributes": message.attributes,
            "messageId": message.message_id,
            "publishTime": published,
        },
        "subscription": f"projects/{project}/subscriptions/{subscription}",
        "deliveryAttempt": message.delivery_attempt,
    }


def deliver(message: ReceivedMessage, subscription: str, endpoint: str, session: requests.Session,
            timeout: float = 30.0) -> bool:
    """POST one message; ack on 2xx, otherwise back off. Returns whether it was delivered."""
    try:
        response = session.post(endpoint, json=envelope(subscription, message), timeout=timeout)
        ok = 200 <= response.status_code < 300
        if not ok:
            log.warning("push to %s answered %s: %s", endpoint, response.status_code, response.text[:200])
    except requests.RequestException as exc:
        log.warning("push to %s failed: %s", endpoint, exc)
        ok = False
    if ok:
        message.ack()
    else:
        message.extend(min(10, 2 ** max(0, message.delivery_attempt - 1)))
    return ok


def run(bus: SqliteBus, stop: threading.Event, poll_seconds: float = 0.5) -> None:
    """Deliver every push subscription's messages until ``stop`` is set."""
    session = requests.Session()
    while not stop.is_set():
        delivered = 0
        for config in bus.push_subscriptions():
            for message in bus.pull(config.name, max_messages=10):
                delivered += deliver(message, config.name, config.push_endpoint, session)
        if not delivered:
            stop.wait(poll_seconds)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s push %(levelname)s %(message)s")
    settings = Settings.from_env()
    bus = SqliteBus.in_data_dir(settings.data_dir)  # push delivery is the local bus's own
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("push delivery running on %s", settings.data_dir)
    run(bus, stop)
    bus.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
