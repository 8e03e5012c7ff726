"""Configuration written once (issue 23): the ConfigMap (k8s/base/config.env) and
docker-compose's shared environment carry only what differs from the code's defaults, so a
default changed in imageflow/settings.py is not silently overridden by a stale copy (as
MAX_JSON_BYTES was: 1 MiB in both files against the documented 16 MiB)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imageflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GCP = {"IMAGEFLOW_BACKEND": "gcp", "GCP_PROJECT": "p", "GCS_BUCKET": "b"}
PLACEHOLDERS = {"GCP_PROJECT", "GCS_BUCKET", "PUBLIC_BASE_URL"}  # empty here, filled in by the gke overlay


def config_env() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "k8s/base/config.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            entries[name.strip()] = value.strip()
    return entries


def compose_env() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-imageflow-env"]
    return {name: str(value) for name, value in env.items() if not name.startswith("<<")}


def restates_a_default(name: str, value: str) -> bool:
    """True when setting ``name`` to ``value`` leaves the settings as the code's defaults make
    them; names the settings do not read (LOG_FORMAT, the emulator hosts) are not judged here."""
    base = Settings.from_env(GCP)
    if Settings.from_env({**GCP, name: value}) != base:
        return False
    for probe in ("0", "1", "7", "x", "true"):  # does the settings object read this name at all?
        try:
            if Settings.from_env({**GCP, name: probe}) != base:
                return True
        except Exception:
            return True
    return False


@pytest.mark.parametrize("where, entries", [("k8s/base/config.env", config_env()),
                                            ("docker-compose.yml", compose_env())])
def test_no_entry_restates_the_codes_default(where, entries):
    restated = [f"{name}={value}" for name, value in entries.items()
                if name not in GCP and not (name in PLACEHOLDERS and value == "")
                and restates_a_default(name, value)]
    assert restated == [], f"{where} restates the code's defaults (remove them): {restated}"


def test_max_json_bytes_is_one_value_everywhere():
    assert Settings().max_json_bytes == 16 * 1024 * 1024
    assert "MAX_JSON_BYTES" not in config_env() and "MAX_JSON_BYTES" not in compose_env()
