"""The containers of docker-compose.yml, without Docker: each Dockerfile's CMD and the compose
setup/relay commands run directly here, with the compose file's environment pointed at the
emulators, and every service comes up ready (its backends reachable)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from devtools.emulators import free_port

pytestmark = pytest.mark.emulators

ROOT = Path(__file__).resolve().parents[3]
PROJECT = "imageflow-compose"
SERVICES = {  # compose service -> (Dockerfile, port variable, ready path or None for "port open")
    "image-handler": ("Dockerfile", "IMAGEFLOW_PORT", "/readyz"),
    "interaction-manager": ("Dockerfile", "PORT", "/readyz"),
    "image-processor": ("Dockerfile", "PORT", "/readyz"),
    "email-function": ("functions/email_notifier/Dockerfile", "PORT", None),
}


def dockerfile_cmd(path: str) -> list[str]:
    [line] = [l for l in (ROOT / path).read_text().splitlines() if l.startswith("CMD [")]
    return json.loads(line[len("CMD "):])


def dockerfile_env(path: str, build_args: dict[str, str] | None = None) -> dict[str, str]:
    """ENV of the final stage (the defaults the container starts with), its ${ARG}s filled
    in from the compose service's build args."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    for arg, value in (build_args or {}).items():
        text = text.replace("${" + arg + "}", str(value))
    # Each stage's text by name (or position); the final stage's ENV includes those of the stages it is
    # built on (FROM runtime).
    parts = re.split(r"^(?=FROM )", text, flags=re.MULTILINE)[1:]
    stages = {(m[1] if (m := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", part, re.I)) else i): part
              for i, part in enumerate(parts)}
    chain = [parts[-1]]
    while (base := chain[0].split()[1]) in stages:
        chain.insert(0, stages[base])
    env = {}
    for line in re.findall(r"^ENV (.*)$", "".join(chain), re.MULTILINE):
        for key, value in re.findall(r"(\w+)=(\S+)", line):
            env[key] = value
    return env


def compose_build_args(service: str) -> dict[str, str]:
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]
    return dict(spec.get("build", {}).get("args") or {})


def compose_env(service: str) -> dict[str, str]:
    """The service's environment as compose gives it, ``${VAR:-default}`` filled in from this
    process's environment as compose fills it from the shell."""
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]
    return {k: _interpolate(str(v)) for k, v in (spec.get("environment") or {}).items()}


def _interpolate(value: str) -> str:
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m[1]) or (m[2] or ""), value)


@pytest.fixture
def compose_like_env(gcp_emulators, gcp_env, tmp_path):
    """The compose environment with the emulator addresses of this machine."""
    gcp_emulators.wipe(project=PROJECT, bucket=PROJECT)
    local = {"PUBSUB_EMULATOR_HOST": gcp_env["PUBSUB_EMULATOR_HOST"],
             "FIRESTORE_EMULATOR_HOST": gcp_env["FIRESTORE_EMULATOR_HOST"],
             "STORAGE_EMULATOR_HOST": gcp_env["STORAGE_EMULATOR_HOST"],
             "GCP_PROJECT": PROJECT, "GCS_BUCKET": PROJECT, "BIND_HOST": "127.0.0.1",
             "IMAGEFLOW_DATA_DIR": str(tmp_path / "data")}
    return local


def _start(argv, env, cwd, log: Path) -> subprocess.Popen:
    venv_bin = str(Path(sys.executable).parent)
    full = {**os.environ, **env, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
    full.pop("GOOGLE_APPLICATION_CREDENTIALS", None)  # as in compose: no signing key
    with open(log, "wb") as out:
        return subprocess.Popen(argv, cwd=cwd, env=full, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> int:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        return proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)
    except ProcessLookupError:
        return proc.wait(timeout=10)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_container_commands_start_ready_on_the_compose_environment(compose_like_env, tmp_path):
    setup_env = {**compose_env("setup"), **compose_like_env}
    setup = subprocess.run([sys.executable, "-m", "devtools.emulators", "setup"], cwd=ROOT,
                           env={**os.environ, **setup_env}, capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stdout + setup.stderr

    procs, ports = {}, {}
    try:
        for name, (dockerfile, port_var, _) in SERVICES.items():
            ports[name] = free_port()
            env = {**dockerfile_env(dockerfile, compose_build_args(name)), **compose_env(name), **compose_like_env,
                   port_var: str(ports[name])}
            env.pop("PATH", None)
            if name == "email-function":
                env["SENDGRID_API_HOST"] = "http://127.0.0.1:9"  # unused here: nothing is mailed
            cwd = ROOT / "functions/email_notifier" if name == "email-function" else ROOT
            procs[name] = _start(dockerfile_cmd(dockerfile), env, cwd, tmp_path / f"{name}.log")
        pending = dict(SERVICES)
        end = time.monotonic() + 90
        while pending and time.monotonic() < end:
            for name, (_, _, path) in list(pending.items()):
                assert procs[name].poll() is None, (tmp_path / f"{name}.log").read_text()[-2000:]
                if path is None:
                    ready = _port_open(ports[name])
                else:
                    try:
                        ready = requests.get(f"http://127.0.0.1:{ports[name]}{path}", timeout=2).status_code == 200
                    except requests.RequestException:
                        ready = False
                if ready:
                    pending.pop(name)
            time.sleep(0.3)
        assert not pending, {n: (tmp_path / f"{n}.log").read_text()[-1500:] for n in pending}
        body = requests.get(f"http://127.0.0.1:{ports['image-handler']}/readyz", timeout=5).json()
        assert body["status"] == "ready"
    finally:
        codes = {name: _stop(proc) for name, proc in procs.items()}
    assert all(code == 0 for code in codes.values()), codes


def test_compose_sendgrid_relay_command_relays_to_smtp(tmp_path, monkeypatch):
    """The relay service's command: a SendGrid v3 request in, an SMTP message out."""
    import smtplib
    import threading

    from devtools import sendgrid_relay

    sent = []

    class FakeSMTP:
        def __init__(self, host, port, timeout):
            self.address = (host, port)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def send_message(self, msg):
            sent.append((self.address, msg))

    monkeypatch.setattr(smtplib, "SMTP", FakeSMTP)
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["sendgrid"]
    argv = spec["command"][3:]  # after python -m devtools.sendgrid_relay
    port = free_port()
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    server = threading.Thread(target=sendgrid_relay.main, args=(argv,), daemon=True)
    server.start()
    end = time.monotonic() + 10
    while not _port_open(port) and time.monotonic() < end:
        time.sleep(0.05)
    mail = {"personalizations": [{"to": [{"email": "user@example.com"}]}],
            "from": {"email": "no-reply@imageflow.test", "name": "ImageFlow"}, "subject": "Your images",
            "content": [{"type": "text/plain", "value": "see http://x/jobs/1"},
                        {"type": "text/html", "value": "<a href='http://x/jobs/1'>see</a>"}],
            "headers": {"X-ImageFlow-Job": "1"}}
    refused = requests.post(f"http://127.0.0.1:{port}/v3/mail/send", json=mail, timeout=5)
    assert refused.status_code == 401
    answer = requests.post(f"http://127.0.0.1:{port}/v3/mail/send", json=mail,
                           headers={"Authorization": "Bearer any"}, timeout=5)
    assert answer.status_code == 202
    [(address, msg)] = sent
    assert address == ("mailpit", 1025)
    assert msg["To"] == "user@example.com" and msg["Subject"] == "Your images"
    assert msg["X-ImageFlow-Job"] == "1"
    assert "http://x/jobs/1" in msg.get_body(("html",)).get_content()
