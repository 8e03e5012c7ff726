"""The topology step of scripts/deploy.sh, run as its --dry-run plan prints it, against the
Pub/Sub emulator: the subscriptions it creates are the ones the code wants (dead-lettering,
retry backoff, never expiring) and the email function's is left to its Eventarc trigger."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from imageflow import topology
from imageflow.settings import Settings

pytestmark = pytest.mark.emulators

ROOT = Path(__file__).resolve().parents[3]


def planned_setup_command(project: str, env: dict) -> list[str]:
    plan = subprocess.run(["bash", str(ROOT / "scripts/deploy.sh"), "--project", project, "--tag", "v1", "--dry-run",
                           "--allow-open-api", "--email-from", "a@b.example"], capture_output=True, text=True,
                          check=True, env={**os.environ, **env, "SENDGRID_API_KEY": ""}).stdout
    [line] = [line for line in plan.splitlines() if line.startswith("env ") and "imageflow.setup" in line]
    return shlex.split(line)


def test_deploy_creates_the_subscriptions_the_code_wants(pubsub_bus, gcp_settings, gcp_env):
    words = planned_setup_command(gcp_settings.gcp_project, {"MAX_DELIVERY_ATTEMPTS": "6"})
    python = words.index("python3")
    words[python] = sys.executable  # the plan's python3, with this project's dependencies
    proc = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **gcp_env})
    assert proc.returncode == 0, proc.stderr
    api, t = pubsub_bus.subscriber, gcp_settings.topics
    for config in topology.subscriptions(gcp_settings, email_subscription=False):
        sub = api.get_subscription(request={"subscription": pubsub_bus.subscription_path(config.name)})
        assert sub.topic == pubsub_bus.topic_path(config.topic)
        assert sub.ack_deadline_seconds == 60  # deploy.sh's ACK_DEADLINE_SECONDS default
        assert sub.retry_policy.minimum_backoff.total_seconds() == Settings.retry_min_backoff_seconds
        assert sub.retry_policy.maximum_backoff.total_seconds() == Settings.retry_max_backoff_seconds
        assert "expiration_policy" in sub and not sub.expiration_policy.ttl, f"{config.name} would expire"
    tasks = api.get_subscription(request={"subscription": pubsub_bus.subscription_path(t.tasks_sub)})
    assert tasks.dead_letter_policy.dead_letter_topic == pubsub_bus.topic_path(t.tasks_dlq)
    assert tasks.dead_letter_policy.max_delivery_attempts == 6
    with pytest.raises(gexc.NotFound):
        api.get_subscription(request={"subscription": pubsub_bus.subscription_path(t.notifications_sub)})
