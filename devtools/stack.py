"""Run the whole system as separate OS processes: what ``./scripts.sh up`` runs, and what the
end-to-end tests start.

    python -m devtools.stack up      # foreground; Ctrl-C stops everything
    python -m devtools.stack down    # stop a stack started elsewhere (pid file)

Like Kubernetes, ``up`` restarts a process that dies (after 1, 2, 4 ... up to 30 s; the delay
starts over once it has run for a minute) and says so; only Ctrl-C or ``down`` stops it.

Processes: image-handler (gunicorn), interaction-manager, image-processor (N of them),
the email function (functions-framework) and, on the local backend, the push bridge that
delivers the notifications subscription to the function as Pub/Sub push would. Each runs
in its own process group; logs go to ``<data dir>/logs/<name>.log``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
SUPERVISOR = "supervisor"  # its entry in stack.json


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    data_dir: Path
    port: int = 8080
    im_port: int = 8081
    processor_port: int = 8082
    function_port: int = 8083
    processors: int = 1
    env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    supervisor_pid: int | None = None  # the ``up`` process restarting the others (``down`` stops it first)

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).resolve()
        # Health ports: the first processor's is fixed, extra replicas take free ones.
        self.processor_ports = [self.processor_port] + [free_port() for _ in range(self.processors - 1)]

    @classmethod
    def on_free_ports(cls, data_dir: Path, **kwargs) -> "Stack":
        return cls(data_dir=data_dir, port=free_port(), im_port=free_port(), processor_port=free_port(),
                   function_port=free_port(), **kwargs)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()}
        env.update({
            "IMAGEFLOW_DATA_DIR": str(self.data_dir),
            "IMAGEFLOW_PORT": str(self.port),
            "PUBLIC_BASE_URL": env.get("PUBLIC_BASE_URL") or self.base_url,
            "BIND_HOST": "127.0.0.1",
            "NOTIFICATIONS_PUSH_ENDPOINT": f"http://127.0.0.1:{self.function_port}/",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        return env

    def commands(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        """Each process's argv and extra env."""
        bin_dir = Path(self.python).parent
        backend = self.base_env().get("IMAGEFLOW_BACKEND", "local")
        cmds = {
            "image-handler": ([str(bin_dir / "gunicorn"), "services.image_handler.app:create_app()",
                               "-b", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "8",
                               # threads only for requests whose headers are complete (slow clients)
                               "--worker-class", "services.image_handler.server.Worker",
                               "--timeout", "120", "--graceful-timeout", "30"], {}),
            "interaction-manager": ([self.python, "-m", "services.interaction_manager"], {"PORT": str(self.im_port)}),
            "email-function": ([str(bin_dir / "functions-framework"), "--source",
                                str(REPO_ROOT / "functions" / "email_notifier" / "main.py"), "--target", "notify",
                                "--signature-type", "cloudevent", "--host", "127.0.0.1",
                                "--port", str(self.function_port)], {}),
        }
        for i in range(self.processors):
            name = "image-processor" if i == 0 else f"image-processor-{i + 1}"
            cmds[name] = ([self.python, "-m", "services.image_processor"], {"PORT": str(self.processor_ports[i])})
        if backend == "local":
            cmds["push-bridge"] = ([self.python, "-m", "imageflow.bus.push"], {})
        return cmds

    def start_process(self, name: str) -> subprocess.Popen:
        argv, extra = self.commands()[name]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        env = self.base_env()
        env.update(extra)
        if name.startswith("image-processor") and env.get("IMAGEFLOW_FAULTS"):
            argv = [self.python, "-m", "devtools.faulty_processor"]  # the same service, faults wrapped around it
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def signal_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.get(name)
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop_process(self, name: str, timeout: float = 40.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``timeout``; returns the exit code."""
        proc = self.procs.get(name)
        if not proc:
            return None
        self.signal_process(name, signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_process(name, signal.SIGKILL)
            return proc.wait(timeout=10)

    def kill_process(self, name: str) -> None:
        """SIGKILL, as a crash would."""
        self.signal_process(name, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def start(self, timeout: float = 120.0) -> "Stack":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Create the bus topology first, so no process races another to set it up.
        subprocess.run([self.python, "-m", "imageflow.setup"], cwd=REPO_ROOT, env=self.base_env(), check=True,
                       stdout=subprocess.DEVNULL)
        for name in self.commands():
            self.start_process(name)
        self.write_pidfile()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        checks = {"image-handler": f"{self.base_url}/readyz",
                  "interaction-manager": f"http://127.0.0.1:{self.im_port}/readyz",
                  "image-processor": f"http://127.0.0.1:{self.processor_port}/readyz"}
        pending = dict(checks)
        while pending and time.monotonic() < end:
            for name, url in list(pending.items()):
                try:
                    if requests.get(url, timeout=2).status_code == 200:
                        pending.pop(name)
                except requests.RequestException:
                    pass
            self._raise_if_dead()
            time.sleep(0.2)
        while time.monotonic() < end and not _port_open(self.function_port):
            self._raise_if_dead()
            time.sleep(0.2)
        if pending or not _port_open(self.function_port):
            raise RuntimeError(f"stack not ready after {timeout}s: {sorted(pending) or ['email-function']}; "
                               f"logs in {self.log_dir}")

    def _raise_if_dead(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        # Producers first, so nothing new arrives while the workers drain.
        order = ["image-handler"] + [n for n in self.procs if n.startswith("image-processor")] + \
                ["interaction-manager", "push-bridge", "email-function"]
        for name in order:
            if name in self.procs:
                self.stop_process(name)
        (self.data_dir / "stack.json").unlink(missing_ok=True)

    def write_pidfile(self) -> None:
        pids = {n: p.pid for n, p in self.procs.items()}
        if self.supervisor_pid:
            pids[SUPERVISOR] = self.supervisor_pid
        (self.data_dir / "stack.json").write_text(json.dumps(pids))

    def supervise(self, should_stop, poll: float = 0.5, max_backoff: float = 30.0,
                  healthy_after: float = 60.0) -> dict[str, int]:
        """Restart every process that exits, as a Deployment's restart policy would: after 1, 2, 4 ...
        seconds (at most ``max_backoff``), the delay starting over once the process has stayed up for
        ``healthy_after`` seconds. Returns the restarts per process once ``should_stop()``."""
        self.supervisor_pid = os.getpid()
        self.write_pidfile()
        restarts: dict[str, int] = {}
        streak: dict[str, int] = {}
        due: dict[str, float] = {}
        started = {name: time.monotonic() for name in self.procs}
        while not should_stop():
            now = time.monotonic()
            for name, proc in list(self.procs.items()):
                if name in due:
                    if now >= due[name]:
                        del due[name]
                        self.start_process(name)
                        started[name] = now
                        restarts[name] = restarts.get(name, 0) + 1
                        self.write_pidfile()
                        print(f"{name} restarted (pid {self.procs[name].pid}, restart {restarts[name]})", flush=True)
                    continue
                code = proc.poll()
                if code is None:
                    continue
                if now - started.get(name, now) >= healthy_after:
                    streak[name] = 0
                delay = min(max_backoff, 2.0 ** streak.get(name, 0))
                streak[name] = streak.get(name, 0) + 1
                due[name] = now + delay
                print(f"{name} exited with {code}; restarting it in {delay:g} s (see "
                      f"{self.log_dir / (name + '.log')})", flush=True)
            time.sleep(poll)
        return restarts


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def down(data_dir: Path) -> int:
    """Stop the stack whose pid file is in ``data_dir``."""
    pidfile = data_dir / "stack.json"
    if not pidfile.exists():
        print(f"no running stack recorded in {pidfile}")
        return 0
    pids = json.loads(pidfile.read_text())
    supervisor = pids.pop(SUPERVISOR, None)
    if supervisor:  # first, so it does not restart what is stopped next
        try:
            os.kill(supervisor, signal.SIGTERM)
            print(f"stopping the supervisor ({supervisor})")
        except ProcessLookupError:
            pass
    for name, pid in pids.items():
        try:
            os.killpg(pid, signal.SIGTERM)
            print(f"stopping {name} ({pid})")
        except ProcessLookupError:
            pass
    end = time.monotonic() + 40
    for pid in pids.values():
        while time.monotonic() < end:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    pidfile.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ImageFlow processes locally.")
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--processors", type=int, default=int(os.environ.get("PROCESSORS", "1")))
    args = parser.parse_args(argv)
    data_dir = Path(os.environ.get("IMAGEFLOW_DATA_DIR") or REPO_ROOT / ".imageflow").resolve()
    if args.command == "down":
        return down(data_dir)
    port = int(os.environ.get("IMAGEFLOW_PORT", "8080"))
    stack = Stack(data_dir=data_dir, port=port, im_port=int(os.environ.get("IM_PORT", port + 1)),
                  processor_port=int(os.environ.get("PROCESSOR_PORT", port + 2)),
                  function_port=int(os.environ.get("FUNCTION_PORT", port + 3)), processors=args.processors)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        stack.start()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"ImageFlow failed to start: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    print(f"""
ImageFlow is running ({stack.base_env().get('IMAGEFLOW_BACKEND', 'local')} backend)
  web page and API   {stack.base_url}/
  API example        curl {stack.base_url}/api/v1/operations
  data               {data_dir}
  emails (outbox)    {data_dir / 'outbox'}
  logs               {stack.log_dir}
Press Ctrl-C (or run ./scripts.sh down) to stop.
""", flush=True)
    try:
        stack.supervise(lambda: stop["now"])
    except KeyboardInterrupt:
        pass
    print("stopping ImageFlow...")
    stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
