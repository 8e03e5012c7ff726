"""``imageflow``: the command-line client of the ImageFlow REST API.

    imageflow submit photos/*.jpg --preset web --wait --out results/
    imageflow submit shoot/ --recursive --preset web --parallel 8     # thousands of files, into an open job
    imageflow submit shoot/ --recursive --resume JOB_ID                # carry on after an interruption
    imageflow submit --csv urls.csv --operations '[{"op": "resize", "width": 800}]' --wait
    imageflow submit photos/ --overlay logo.png --operations '[{"op": "overlay", "image": "logo.png"}]'
    imageflow status JOB_ID
    imageflow download JOB_ID --out results/
    imageflow list --status completed
    imageflow report JOB_ID --out report.csv
    imageflow delete JOB_ID
    imageflow estimate photos/*.jpg --preset web
    imageflow close JOB_ID                                              # an open job: no more files
    imageflow cancel JOB_ID
    imageflow retry JOB_ID --wait
    imageflow rerun JOB_ID --operations '[{"op": "resize", "width": 400}]' --only failed --wait

The server is ``--server`` or ``$IMAGEFLOW_URL`` (default http://127.0.0.1:8080); the API key
``--api-key`` or ``$IMAGEFLOW_API_KEY`` (sent only to that server, never to a signed storage
URL). ``submit`` prints the job id on stdout; progress bars and messages go to stderr.

Exit codes: 0 done; 1 the request failed or was refused (message on stderr); 2 bad usage
(arguments, missing files); 3 the job finished but some or all images failed; 4 ``--wait``
timed out; 130 interrupted.

Ctrl-C during an upload stops starting new files, lets the requests in flight finish for a
moment (then cuts them), leaves the job open and prints the command that sends the rest
(``--resume``); a second Ctrl-C quits at once. Files of LARGE_FILE_BYTES and more go to their
upload links in chunks (a resumable Cloud Storage session on GCP, the same protocol locally), and
``--resume`` carries a half-sent one on from its last confirmed byte (where each was going is kept
in ``$XDG_CACHE_HOME/imageflow/uploads/<job>.json``).
"""
from __future__ import annotations

import argparse
import json
import mimetypes
import os
import queue
import secrets
import shlex
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm import tqdm

from imageflow import domain

DEFAULT_SERVER = "http://127.0.0.1:8080"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".avif", ".heic", ".heif"}
BATCH_FILES = 8                  # files per upload request into an open job...
BATCH_BYTES = 32 * 1024 * 1024   # ...and at most this many bytes (one big file goes alone)
LARGE_FILE_BYTES = 16 * 1024 * 1024  # files this large go straight to storage, resumably (RAW, TIFF, big PNG)...
CHUNK_BYTES = 8 * 1024 * 1024        # ...in chunks this size (a multiple of 256 KiB, as Cloud Storage asks)
RETRIES = 4
TERMINAL = set(domain.TERMINAL_JOB_STATUSES)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILED_IMAGES, EXIT_TIMEOUT = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130           # 128 + SIGINT, as shells report it
STOP_GRACE_SECONDS = 2.0         # after the first Ctrl-C the requests in flight may finish this long...
STOP_CANCEL_SECONDS = 1.0        # ...then they are cut; one still waiting for its answer is left after this


class CliError(Exception):
    """A failure to report on stderr with an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status  # the HTTP status that caused it, if any


class Interrupted(CliError):
    """The user stopped the upload (Ctrl-C); the message says how to carry on."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_INTERRUPTED)


class _Cancelled(Exception):
    """An upload request cut short after Ctrl-C (nothing of it joins the job: the server
    keeps a request's files only once its whole body has arrived)."""


class Interruption:
    """Ctrl-C as people expect it. The first one, during an upload, only sets ``stop`` (the
    upload loop winds down, see ``_upload_all``); elsewhere it raises KeyboardInterrupt as
    usual. A second one quits at once, printing ``advice`` (the resume command) first:
    waiting for threads or requests is exactly what it must not do."""

    def __init__(self):
        self.count = 0
        self.stop = threading.Event()    # start no more files
        self.abort = threading.Event()   # cut the requests in flight
        self.cooperative = False         # an upload loop is watching ``stop``
        self.advice = ""                 # what a user needs to know if the process ends now

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # main() called from a thread: leave it be
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            # os.write, not print: the main thread may be inside a write to stderr right now
            os.write(2, ("\nimageflow: interrupted again, quitting now"
                         + (f"\n{self.advice}" if self.advice else "") + "\n").encode("utf-8", "replace"))
            os._exit(EXIT_INTERRUPTED)
        if not self.cooperative:
            raise KeyboardInterrupt
        self.stop.set()


def _header_filename(name: str) -> str:
    """A file name as the multipart header carries it (and so as the server records it)."""
    return name.replace('"', "%22").replace("\r", " ").replace("\n", " ")


def resume_command(argv: list[str], job_id: str) -> tuple[str, bool]:
    """The command line that carries on this upload: the same arguments, any ``--resume``
    replaced by this job. An ``--api-key`` given on the command line is not echoed: the
    command reads it from $IMAGEFLOW_API_KEY (the second value says so)."""
    parts, hidden_key = ["imageflow"], False
    args = iter(argv)
    for arg in args:
        name, eq, _value = arg.partition("=")
        if len(name) >= 5 and "--resume".startswith(name):        # argparse takes unique prefixes
            if not eq:
                next(args, None)
            continue
        if len(name) >= 3 and "--api-key".startswith(name):
            if not eq:
                next(args, None)
            parts.append('--api-key "$IMAGEFLOW_API_KEY"')
            hidden_key = True
            continue
        parts.append(shlex.quote(arg))
    return " ".join([*parts, "--resume", job_id]), hidden_key


# -- the request body: files streamed from disk, with a progress callback ----------------
class MultipartBody:
    """A multipart/form-data body read from disk as it is sent. Its length is known up front
    (requests sends Content-Length) and ``on_read(n)`` is called as bytes go out. Each file is
    ``(field, path)``, or ``(field, path, filename)`` to send it under another name."""

    def __init__(self, fields: list[tuple[str, str]], files: list[tuple], on_read=lambda n: None,
                 boundary: str | None = None):
        self.boundary = boundary or "imageflow-" + secrets.token_hex(12)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._on_read = on_read
        self._parts: list[bytes | Path] = []
        for name, value in fields:
            self._parts.append(self._head(name) + value.encode("utf-8") + b"\r\n")
        for name, path, *sent_as in files:
            filename = sent_as[0] if sent_as else path.name
            mime = mimetypes.guess_type(filename)[0] or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._parts.append(self._head(name, filename, mime))
            self._parts.append(path)
            self._parts.append(b"\r\n")
        self._parts.append(f"--{self.boundary}--\r\n".encode())
        self.length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self._parts)
        self._index, self._open = 0, None

    def _head(self, name: str, filename: str | None = None, mime: str | None = None) -> bytes:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{_header_filename(filename)}"'
        head = f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n"
        if mime:
            head += f"Content-Type: {mime}\r\n"
        return (head + "\r\n").encode("utf-8")

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 1024 * 1024
        out = b""
        while len(out) < size and self._index < len(self._parts):
            part = self._parts[self._index]
            if isinstance(part, Path):
                if self._open is None:
                    self._open = open(part, "rb")
                chunk = self._open.read(size - len(out))
                if not chunk:
                    self._open.close()
                    self._open = None
                    self._index += 1
                out += chunk
            else:
                out += part
                self._index += 1
        self._on_read(len(out))
        return out


class FileRange:
    """``length`` bytes of a file from ``start``, read as they are sent (a resumable upload's chunk),
    calling ``on_read(n)`` as ``MultipartBody`` does."""

    def __init__(self, path: Path, start: int, length: int, on_read=lambda n: None):
        self._file = open(path, "rb")  # noqa: SIM115 -- read by requests as it sends; closed at the end
        self._file.seek(start)
        self.length, self._left, self._on_read = length, length, on_read

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        size = min(self._left, size if size and size > 0 else 1024 * 1024)
        data = self._file.read(size) if size else b""
        self._left -= len(data)
        if not self._left:
            self._file.close()
        self._on_read(len(data))
        return data


class UploadTracker:
    """Where each large file of a job is being sent (its upload link), kept on disk as gsutil keeps
    its tracker files, so that ``--resume`` carries a half-sent file on from its last confirmed byte
    rather than from its first. A file is known by its path, size and modification time."""

    def __init__(self, job_id: str):
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.path = cache / "imageflow" / "uploads" / f"{job_id}.json"
        self._lock = threading.Lock()
        try:
            self._entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._entries = {}

    @staticmethod
    def _key(path: Path) -> str:
        stat = path.stat()
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"

    def get(self, path: Path) -> dict | None:
        with self._lock:
            return self._entries.get(self._key(path))

    def put(self, path: Path, upload: dict | None) -> None:
        with self._lock:
            if upload is None:
                self._entries.pop(self._key(path), None)
            else:
                self._entries[self._key(path)] = upload
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text(json.dumps(self._entries))
                temporary.replace(self.path)
            except OSError:
                pass  # no cache directory: the upload still works, only a resume starts the file over

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _kept_range(response: requests.Response, size: int) -> int:
    """Bytes the upload session holds, from its answer: 308 with ``Range: bytes=0-<last>``
    (no Range: none yet), or 200/201 once the file is complete."""
    if response.status_code in (200, 201):
        return size
    last = response.headers.get("Range", "").rpartition("-")[2]
    return int(last) + 1 if last.isdigit() else 0


def _session_kept(client: Client, url: str, size: int) -> int:
    """Ask an upload session how many bytes of the file it holds (``Content-Range: bytes */<size>``)."""
    return _kept_range(client.request("PUT", url, retries=RETRIES, data=b"",
                                      headers={"Content-Range": f"bytes */{size}"}), size)


def send_resumable(client: Client, job_id: str, path: Path, tracker: UploadTracker, interruption,
                   on_read, note=lambda message: None) -> dict | None:
    """One large file to its upload link in CHUNK_BYTES chunks, carrying on a session the tracker
    knows (asking it how far it got) or asking the job for a new link. Returns the refusal (as the
    API words it) when the job will not take the file, else None once the session holds all of it.
    A dropped connection asks the session how far it got and sends the rest from there."""
    size = path.stat().st_size
    name = domain.display_name(_header_filename(path.name), "(unnamed)")
    upload, kept = tracker.get(path), 0
    if upload is not None and upload.get("complete"):
        on_read(size)
        return None  # sent whole before; it joins the job when its object's event is handled (or at close)
    if upload is not None:
        try:
            kept = _session_kept(client, upload["url"], size)
        except CliError:  # the link expired or the job moved on: start this file again
            upload = None
    if upload is None:
        answer = client.json("POST", f"/api/v1/jobs/{job_id}/files", retries=RETRIES, json={"files": [{
            "filename": name, "bytes": size, "content_type": mimetypes.guess_type(path.name)[0]}]})
        if answer["rejected"]:
            return answer["rejected"][0]
        upload = answer["uploads"][0]
        tracker.put(path, upload)
    shown = [0]  # bytes of this file the progress bar counts

    def show(n: int) -> None:
        if interruption.abort.is_set():
            raise _Cancelled()  # Ctrl-C, and the grace is over: cut the chunk
        shown[0] += n
        on_read(n)

    show(kept)  # already in the session: the bar starts from there
    if kept:
        note(f"{name}: carrying on from byte {kept:,} of {size:,} (sent before)")
    headers = dict(upload.get("headers") or {})
    failures = 0
    while kept < size:
        if interruption.stop.is_set():
            raise _Cancelled()  # between chunks: the session keeps what it has, --resume goes on from it
        length = min(CHUNK_BYTES, size - kept)
        try:
            kept = _kept_range(client.request(
                "PUT", upload["url"], data=FileRange(path, kept, length, show),
                headers={**headers, "Content-Range": f"bytes {kept}-{kept + length - 1}/{size}"},
                timeout=max(client.timeout, 600)), size)
            failures = 0
        except CliError as exc:
            failures += 1
            if failures > RETRIES or (exc.status is not None and exc.status < 500 and exc.status != 429):
                raise
            time.sleep(min(30, 2 ** failures))
            kept = _session_kept(client, upload["url"], size)
        on_read(kept - shown[0])  # settle on what the session confirmed
        shown[0] = kept
    tracker.put(path, {**upload, "complete": True})  # a --resume must not send it again before it joins
    return None


# -- the API client -----------------------------------------------------------------------
class Client:
    def __init__(self, server: str, api_key: str | None, timeout: float = 60.0):
        self.server = server.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.session = requests.Session()

    def _headers(self, url: str) -> dict:
        same_origin = urlsplit(url)[:2] == urlsplit(self.server)[:2]
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key and same_origin else {}

    def request(self, method: str, path_or_url: str, *, retries: int = 0, body=None, **kwargs) -> requests.Response:
        """One API call. With ``retries``, a dropped connection, a 429 or a 5xx is tried again
        after a pause (``body()`` makes a fresh request body for each try)."""
        url = path_or_url if "://" in path_or_url else f"{self.server}{path_or_url}"
        headers = {**self._headers(url), **kwargs.pop("headers", {})}
        timeout = kwargs.pop("timeout", self.timeout)
        for attempt in range(retries + 1):
            last = attempt == retries
            if body is not None:
                kwargs["data"] = body()
            try:
                response = self.session.request(method, url, headers=headers, timeout=timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not last:
                    time.sleep(min(30, 2 ** attempt))
                    continue
                if isinstance(exc, requests.Timeout):
                    raise CliError(f"ImageFlow at {self.server} did not answer in time")
                raise CliError(f"cannot reach ImageFlow at {self.server} (is it running? set --server or IMAGEFLOW_URL)")
            if not last and (response.status_code == 429 or response.status_code >= 500):
                wait = response.headers.get("Retry-After", "")
                time.sleep(min(60, int(wait)) if wait.isdigit() else min(30, 2 ** attempt))
                continue
            if response.status_code >= 400:
                raise CliError(_describe_error(response), status=response.status_code)
            return response
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs) -> dict:
        return self.request(method, path, **kwargs).json()


def _describe_error(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        message, code = error["message"], error["code"]
    except (ValueError, KeyError, TypeError):
        message, code = response.text.strip()[:300] or response.reason, "error"
    hint = ""
    if response.status_code == 401:
        hint = " (give the key with --api-key or IMAGEFLOW_API_KEY)"
    return f"{message}{hint} [HTTP {response.status_code} {code}]"


# -- commands -----------------------------------------------------------------------------
def _job_fields(args) -> list[tuple[str, str]]:
    fields = []
    if args.operations:
        text = args.operations
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text()
            except OSError as exc:
                raise CliError(f"cannot read the operations file: {exc}", EXIT_USAGE)
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise CliError(f"--operations is not valid JSON: {exc}", EXIT_USAGE)
        fields.append(("operations", text))
    for name in ("preset", "email", "webhook_url", "name"):
        value = getattr(args, name, None)
        if value:
            fields.append((name, value))
    return fields


def overlay_files(values: list[str] | None) -> list[tuple[str, Path, str]]:
    """``--overlay FILE`` or ``--overlay NAME=FILE`` as multipart parts ``("overlay", path, name)``:
    the API knows an overlay file by the name it is uploaded under, which the overlay op's
    ``image`` names (FILE's own name unless NAME is given)."""
    parts, names = [], set()
    for value in values or []:
        name, sep, file = value.partition("=")
        path = Path(value)
        if path.is_file() or not sep:  # a file whose name holds "=" is still a file
            name = path.name
        else:
            path = Path(file)
        if not name:
            raise CliError(f"--overlay {value}: give FILE or NAME=FILE", EXIT_USAGE)
        if not path.is_file():
            raise CliError(f"--overlay: no such file: {path}", EXIT_USAGE)
        if name in names:
            raise CliError(f"--overlay: two overlays named {name!r} (use NAME=FILE to tell them apart)", EXIT_USAGE)
        names.add(name)
        parts.append(("overlay", path, name))
    return parts


def image_files(paths: list[str], recursive: bool) -> list[Path]:
    """The files to upload: files as given, and the images inside directories (their
    subdirectories too with ``--recursive``), in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            walk = path.rglob("*") if recursive else path.glob("*")
            found += sorted(p for p in walk if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"no such file or directory: {raw}", EXIT_USAGE)
    return found


def cmd_submit(client: Client, args) -> int:
    if bool(args.paths) == bool(args.csv):
        raise CliError("give image files or directories to upload, or --csv FILE of image URLs (not both)",
                       EXIT_USAGE)
    if args.csv:
        created = _submit_csv(client, args)
    else:
        created = _submit_files(client, args)
    if not args.wait and not args.out:
        return EXIT_OK
    job = wait_for(client, created["job_id"], args)
    if args.out:
        download(client, job, Path(args.out), args)
    return _exit_for(job)


def _submit_csv(client: Client, args) -> dict:
    path = Path(args.csv)
    if not path.is_file():
        raise CliError(f"no such file: {path}", EXIT_USAGE)
    bar = tqdm(total=0, unit="B", unit_scale=True, desc="upload", disable=args.quiet, file=sys.stderr, leave=False)
    body = MultipartBody(_job_fields(args), [("csv", path), *overlay_files(args.overlay)], on_read=bar.update)
    bar.total = len(body)
    try:
        created = client.json("POST", "/api/v1/jobs", data=body, headers={"Content-Type": body.content_type},
                              timeout=max(client.timeout, 600))
    finally:
        bar.close()
    for rejected in created.get("rejected", []):
        _say(args, f"rejected: {rejected.get('filename') or rejected.get('url')}: {rejected['error']['message']}")
    _say(args, f"job {created['job_id']}: {created['total']} image(s) queued")
    _print_created(created, args)
    return created


def _print_created(created: dict, args) -> None:
    if created.get("webhook_secret"):
        _say(args, f"webhook secret (verify the X-ImageFlow-Signature header with it): {created['webhook_secret']}")
    print(json.dumps(created, indent=2) if args.json else created["job_id"], flush=True)


def _batches(files: list[Path]) -> list[list[Path]]:
    """Files grouped into upload requests of at most BATCH_FILES files and BATCH_BYTES bytes."""
    batches, current, size = [], [], 0
    for path in files:
        length = path.stat().st_size
        if current and (len(current) >= BATCH_FILES or size + length > BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(path)
        size += length
    if current:
        batches.append(current)
    return batches


def _submit_files(client: Client, args) -> dict:
    """Upload into an open job, several requests at a time, then close it. With ``--resume``
    the job's image list says which files it already holds: those are not sent again."""
    files = image_files(args.paths, args.recursive)
    overlays = overlay_files(args.overlay)
    if not files:
        raise CliError("no image files found" + ("" if args.recursive else " (use --recursive for subdirectories)"),
                       EXIT_USAGE)
    if args.resume:
        job = client.json("GET", f"/api/v1/jobs/{args.resume}")
        if job["status"] != "open":
            raise CliError(f"job {args.resume} is {job['status']}: it takes no more files", EXIT_ERROR)
        # by name and size: a file of that name but another size (a cut-off copy, another photo
        # under the same name) is not the local file; a pair the job holds n times accounts for n
        held = Counter((image["filename"], image.get("input_bytes")) for image in iter_images(client, job))
        pending = []
        for path in files:
            key = (domain.display_name(_header_filename(path.name), "(unnamed)"), path.stat().st_size)
            if held[key] > 0:
                held[key] -= 1
            else:
                pending.append(path)
        _say(args, f"job {job['job_id']}: {len(files) - len(pending)} file(s) already there, "
                   f"{len(pending)} to upload")
        if overlays:
            _say(args, "--overlay: the job's overlays were stored when it was opened; not sent again")
        created = {"job_id": job["job_id"], "links": job["links"]}
    elif overlays:  # the overlay files go with the job's opening (a multipart open job)
        pending = files
        boundary = "imageflow-" + secrets.token_hex(12)
        created = client.request(
            "POST", "/api/v1/jobs", retries=RETRIES, timeout=max(client.timeout, 600),
            body=lambda: MultipartBody([*_job_fields(args), ("open", "true")], overlays, boundary=boundary),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}).json()
    else:
        pending = files
        created = client.json("POST", "/api/v1/jobs", json={**_job_options(args), "open": True}, retries=RETRIES)
    job_id = created["job_id"]
    interruption: Interruption = args.interruption
    command, hidden_key = resume_command(args.argv, job_id)
    interruption.advice = (f"job {job_id} is still open with the files sent so far; send the rest with:\n"
                           f"  {command}\n"
                           + ("  (with IMAGEFLOW_API_KEY set to the key you gave: it is not printed)\n"
                              if hidden_key else "")
                           + f"or close it as it is: imageflow close {job_id}; or drop it: imageflow cancel {job_id}")
    if not args.json:
        print(job_id, flush=True)  # first, so an interrupted upload can be resumed with it
    if created.get("webhook_secret"):
        _say(args, f"webhook secret (verify the X-ImageFlow-Signature header with it): {created['webhook_secret']}")
    accepted, rejected = _upload_all(client, job_id, pending, args)
    for item in rejected:
        _say(args, f"rejected: {item.get('filename')}: {item['error']['message']}")
    closed = client.json("POST", f"/api/v1/jobs/{job_id}/close", retries=RETRIES)
    interruption.advice = (f"job {job_id} is closed and carries on without this command: "
                           f"imageflow status {job_id}, imageflow download {job_id} --wait")
    if not closed["total"]:
        raise CliError("none of the files could be accepted: "
                       + "; ".join(item["error"]["message"] for item in rejected[:5]))
    _say(args, f"job {job_id}: {closed['total']} image(s), {accepted} uploaded now, {len(rejected)} rejected")
    if args.json:
        print(json.dumps(closed, indent=2))
    return closed


def _job_options(args) -> dict:
    options = {}
    for name, value in _job_fields(args):
        options[name] = json.loads(value) if name == "operations" else value
    return options


def _upload_all(client: Client, job_id: str, files: list[Path], args) -> tuple[int, list[dict]]:
    """Every file into the job, ``--parallel`` requests at a time, with one progress bar that
    counts bytes (as they are sent) and files (as the API accepts them).

    The senders are daemon threads taking batches from a queue, so that Ctrl-C can end the
    upload without waiting for them all: after the first one no batch starts, the requests in
    flight get STOP_GRACE_SECONDS to finish, then are cut (their files do not join the job),
    and one still waiting for its answer after STOP_CANCEL_SECONDS more is left behind.
    Raises :class:`Interrupted`, saying what the job holds and how to carry on."""
    interruption: Interruption = args.interruption
    total_bytes = sum(p.stat().st_size for p in files)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="upload",
               disable=args.quiet, file=sys.stderr)
    lock = threading.Lock()
    done_files = [0]
    rejected: list[dict] = []
    errors: list[CliError] = []
    halt = threading.Event()  # a request failed for good: start no more
    cut = [0]                 # requests cut short after Ctrl-C
    batches: queue.SimpleQueue = queue.SimpleQueue()  # a list: one multipart request; a Path: a resumable upload
    large = {path for path in files if path.stat().st_size >= LARGE_FILE_BYTES}
    tracker = UploadTracker(job_id)
    for path in files:
        if path in large:
            batches.put(path)  # first: they take longest
    for batch in _batches([path for path in files if path not in large]):
        batches.put(batch)

    def sent(n: int) -> None:
        with lock:
            bar.update(n)

    def send(batch: list[Path]) -> None:
        progress = [0]  # bytes of this batch counted so far (a retried request counts again from zero)
        boundary = "imageflow-" + secrets.token_hex(12)

        def on_read(n: int) -> None:
            if interruption.abort.is_set():
                raise _Cancelled()
            progress[0] += n
            sent(n)

        def body():
            sent(-progress[0])
            progress[0] = 0
            return MultipartBody([], [("files", p) for p in batch], on_read=on_read, boundary=boundary)

        try:
            answer = client.request("POST", f"/api/v1/jobs/{job_id}/files", retries=RETRIES, body=body,
                                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                    timeout=max(client.timeout, 600))
        except BaseException:
            sent(-progress[0])  # not sent after all
            raise
        result = answer.json()
        with lock:
            # the body counted its multipart framing too: settle on the files' own size
            bar.update(sum(p.stat().st_size for p in batch) - progress[0])
            progress[0] = 0
            done_files[0] += len(result["images"])
            rejected.extend(result["rejected"])
            bar.set_postfix_str(f"{done_files[0]}/{len(files)} files", refresh=False)

    def send_large(path: Path) -> None:
        def note(message: str) -> None:
            if not args.quiet:
                with lock:
                    bar.write(f"imageflow: {message}", file=sys.stderr)

        refusal = send_resumable(client, job_id, path, tracker, interruption, sent, note)
        with lock:
            if refusal:
                rejected.append(refusal)
            else:
                done_files[0] += 1
            bar.set_postfix_str(f"{done_files[0]}/{len(files)} files", refresh=False)

    def worker() -> None:
        while not (halt.is_set() or interruption.stop.is_set()):
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            try:
                send_large(batch) if isinstance(batch, Path) else send(batch)
            except _Cancelled:
                with lock:
                    cut[0] += 1
                return
            except CliError as exc:
                if exc.status in (413, 415) and "no_valid_images" in str(exc):  # every file of a batch
                    with lock:
                        rejected.append({"filename": "(a batch)", "error": {"message": str(exc)}})
                    continue
                with lock:
                    errors.append(exc)
                halt.set()
            except Exception as exc:  # a bug or an unreadable file: reported, not lost in a thread
                with lock:
                    errors.append(CliError(f"{type(exc).__name__}: {exc}"))
                halt.set()

    workers = [threading.Thread(target=worker, name=f"upload-{n}", daemon=True)
               for n in range(max(1, min(args.parallel, batches.qsize())))]
    stopping_since = None
    interruption.cooperative = True
    try:
        for thread in workers:
            thread.start()
        while alive := [thread for thread in workers if thread.is_alive()]:
            alive[0].join(0.1)  # wakes for Ctrl-C too (the handler runs in this thread)
            if not interruption.stop.is_set():
                continue
            now = time.monotonic()
            if stopping_since is None:
                stopping_since = now
                with lock:
                    bar.write("imageflow: stopping: no new files; the requests in flight finish or are cut "
                              f"within {STOP_GRACE_SECONDS + STOP_CANCEL_SECONDS:g} s (Ctrl-C again to quit now)",
                              file=sys.stderr)
            elif now - stopping_since > STOP_GRACE_SECONDS + STOP_CANCEL_SECONDS:
                break  # a request whose body is all sent, still waiting for its answer: left behind
            elif now - stopping_since > STOP_GRACE_SECONDS:
                interruption.abort.set()
    finally:
        interruption.cooperative = False
        bar.close()
    if interruption.stop.is_set():
        left = sum(thread.is_alive() for thread in workers)
        raise Interrupted(f"{done_files[0]} of {len(files)} file(s) sent now"
                          + (f"; {cut[0]} request(s) cut short (their files were not kept)" if cut[0] else "")
                          + (f"; {left} request(s) left unfinished (the job may yet get their files: --resume checks)"
                             if left else "") + f".\n{interruption.advice}")
    if errors:
        raise CliError(f"{errors[0]} - the files sent so far are in job {job_id}; carry on with "
                       f"--resume {job_id}", errors[0].code)
    tracker.remove()
    return done_files[0], rejected


def iter_images(client: Client, job: dict, status: str | None = None):
    """Every image of a job, page by page (a job view carries only the first page)."""
    if status is None:
        yield from job.get("images", [])
        link = job["links"].get("next")
    else:
        link = f"/api/v1/jobs/{job['job_id']}/images?limit=1000&status={status}"
    while link:
        page = client.json("GET", link, retries=RETRIES)
        yield from page["images"]
        link = page["links"]["next"]


def wait_for(client: Client, job_id: str, args) -> dict:
    """Poll the job until it finishes, with a progress bar of finished images."""
    end = time.monotonic() + args.timeout if args.timeout else None
    job = client.json("GET", f"/api/v1/jobs/{job_id}", retries=RETRIES)
    bar = tqdm(total=job["total"], unit="img", desc="processing", disable=args.quiet, file=sys.stderr)
    try:
        while True:
            done = job["succeeded"] + job["failed"] + job.get("skipped", 0)
            bar.total = job["total"]
            bar.update(done - bar.n)
            bar.set_postfix(failed=job["failed"], refresh=False)
            if job["status"] in TERMINAL:
                break
            if end and time.monotonic() > end:
                raise CliError(f"job {job_id} is still {job['status']} after {args.timeout:g} s "
                               f"({done}/{job['total']} done); check later with: imageflow status {job_id}",
                               EXIT_TIMEOUT)
            time.sleep(args.poll)
            job = client.json("GET", f"/api/v1/jobs/{job_id}", retries=RETRIES)
    finally:
        bar.close()
    _say(args, f"job {job_id} {job['status']}: {job['succeeded']} succeeded, {job['failed']} failed"
               + (f", {job['skipped']} skipped" if job.get("skipped") else "")
               + (f"; saved {domain.human_bytes(job['bytes_in'] - job['bytes_out'])} ({job['saved_percent']:g} %)"
                  if job.get("saved_percent") is not None else ""))
    if job["failed"]:
        for image in iter_images(client, job, status="failed"):
            _say(args, f"  failed: {image.get('source_url') or image['filename']}: {image['error']}")
    return job


def _output_name(image: dict, output: dict, used: set[str]) -> str:
    """The name the API's downloads and zip give the output (domain.output_name), its extension
    told by its type."""
    ext = mimetypes.guess_extension(output.get("content_type") or "") or ".bin"
    ext = ".jpg" if ext in (".jpe", ".jpeg") else ext
    return domain.output_name(image["filename"], ext, output.get("variant") or "", used)


def download(client: Client, job: dict, out: Path, args) -> int:
    """Save every output of the job into ``out``, ``--parallel`` downloads at a time; returns how many."""
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    jobs = []
    for image in iter_images(client, job, status="succeeded"):
        items = image.get("outputs") or [{"url": image["output_url"], "content_type": image["content_type"],
                                          "variant": ""}]
        jobs += [(item["url"], out / _output_name(image, item, used)) for item in items if item.get("url")]

    def fetch(url: str, target: Path) -> None:
        response = client.request("GET", url, stream=True, retries=RETRIES)
        partial = target.with_name(target.name + ".part")
        with open(partial, "wb") as fh:
            for chunk in response.iter_content(1024 * 1024):
                fh.write(chunk)
        partial.replace(target)  # a file in ``out`` is always whole

    with ThreadPoolExecutor(max_workers=max(1, getattr(args, "parallel", 4)), thread_name_prefix="download") as pool:
        futures = [pool.submit(fetch, url, target) for url, target in jobs]
        for future in tqdm(as_completed(futures), total=len(futures), unit="file", desc="download",
                           disable=args.quiet, file=sys.stderr):
            future.result()
    _say(args, f"{len(jobs)} file(s) saved in {out}")
    return len(jobs)


def _exit_for(job: dict) -> int:
    return EXIT_OK if job["status"] == domain.COMPLETED else EXIT_FAILED_IMAGES


def cmd_status(client: Client, args) -> int:
    job = client.json("GET", f"/api/v1/jobs/{args.job_id}")
    if args.json:
        print(json.dumps(job, indent=2))
        return EXIT_OK
    print(f"job {job['job_id']}{' (' + job['name'] + ')' if job.get('name') else ''}: {job['status']}, "
          f"{job['succeeded']}/{job['total']} succeeded, {job['failed']} failed, created {job['created_at']}")
    if job.get("webhook_url"):
        print(f"webhook: {job['webhook_status']} after {len(job.get('webhook_attempts') or [])} attempt(s)")
    for image in iter_images(client, job):
        detail = image["error"] if image["status"] == "failed" else (
            f"{image['width']}x{image['height']} {image['content_type']}" if image["status"] == "succeeded" else "")
        print(f"  {image['status']:<9} {image.get('source_url') or image['filename']}  {detail}".rstrip())
    return EXIT_OK


def cmd_download(client: Client, args) -> int:
    job = client.json("GET", f"/api/v1/jobs/{args.job_id}")
    if args.wait:
        job = wait_for(client, args.job_id, args)
    elif job["status"] not in TERMINAL:
        _say(args, f"job {args.job_id} is {job['status']}: downloading what is finished (use --wait for all)")
    if not download(client, job, Path(args.out), args) and job["status"] in TERMINAL:
        raise CliError(f"job {args.job_id} has no outputs to download", EXIT_FAILED_IMAGES)
    return _exit_for(job) if job["status"] in TERMINAL else EXIT_OK


def cmd_list(client: Client, args) -> int:
    params = {"limit": args.limit, **({"status": args.status} if args.status else {})}
    page = client.json("GET", "/api/v1/jobs", params=params)
    if args.json:
        print(json.dumps(page, indent=2))
        return EXIT_OK
    for job in page["jobs"]:
        print(f"{job['job_id']}  {job['status']:<22} {job['succeeded']}/{job['total']:<5} {job['created_at']}  "
              f"{job.get('name') or ''}".rstrip())
    if page.get("next_cursor"):
        print(f"(more: {page['links']['next']})", file=sys.stderr)
    return EXIT_OK


def cmd_report(client: Client, args) -> int:
    response = client.request("GET", f"/api/v1/jobs/{args.job_id}/report.csv")
    if args.out:
        Path(args.out).write_bytes(response.content)
        _say(args, f"report saved in {args.out}")
    else:
        sys.stdout.write(response.content.decode("utf-8-sig"))
    return EXIT_OK


def cmd_delete(client: Client, args) -> int:
    client.request("DELETE", f"/api/v1/jobs/{args.job_id}")
    _say(args, f"job {args.job_id} deleted")
    return EXIT_OK


def _operations_value(args):
    """``--operations`` as parsed JSON (or None), read from @file like submit's."""
    fields = dict(_job_fields(args))
    return json.loads(fields["operations"]) if "operations" in fields else None


def _after_action(client: Client, job: dict, args) -> int:
    """Shared by close/cancel/retry/rerun: print the job id (or JSON), optionally wait and download."""
    print(json.dumps(job, indent=2) if args.json else job["job_id"])
    if not getattr(args, "wait", False) and not getattr(args, "out", None):
        return EXIT_OK
    done = wait_for(client, job["job_id"], args)
    if getattr(args, "out", None):
        download(client, done, Path(args.out), args)
    return EXIT_OK if done["status"] in (domain.COMPLETED, domain.CANCELLED) else EXIT_FAILED_IMAGES


def cmd_close(client: Client, args) -> int:
    job = client.json("POST", f"/api/v1/jobs/{args.job_id}/close", retries=RETRIES)
    _say(args, f"job {args.job_id}: closed with {job['total']} image(s); it completes (email, webhook) once "
               "every image has an outcome")
    return _after_action(client, job, args)


def cmd_cancel(client: Client, args) -> int:
    job = client.json("POST", f"/api/v1/jobs/{args.job_id}/cancel")
    _say(args, f"job {args.job_id}: cancel requested; images not started are skipped, those in flight finish")
    return _after_action(client, job, args)


def cmd_retry(client: Client, args) -> int:
    job = client.json("POST", f"/api/v1/jobs/{args.job_id}/retry")
    _say(args, f"job {args.job_id}: {job['retried']} image(s) queued again (run {job['run']})")
    return _after_action(client, job, args)


def cmd_rerun(client: Client, args) -> int:
    body = {"only": args.only}
    operations = _operations_value(args)
    if operations is not None:
        body["operations"] = operations
    for name in ("preset", "email", "webhook_url", "name"):
        if getattr(args, name, None):
            body[name] = getattr(args, name)
    created = client.json("POST", f"/api/v1/jobs/{args.job_id}/rerun", json=body)
    _say(args, f"job {created['job_id']}: re-runs {created['total']} image(s) of {args.job_id} (no upload)")
    return _after_action(client, created, args)


def cmd_estimate(client: Client, args) -> int:
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CliError(f"no such file: {', '.join(missing)}", EXIT_USAGE)
    body = MultipartBody([*_job_fields(args), ("estimate", "true")], [("files", p) for p in paths])
    answer = client.json("POST", "/api/v1/jobs", data=body, headers={"Content-Type": body.content_type},
                         timeout=max(client.timeout, 600))
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        totals = answer["totals"]
        for image in answer["images"]:
            print(f"  accepted {image['filename']}  {image['width']}x{image['height']} {image['format']}  "
                  f"{domain.human_bytes(image['input_bytes'])} -> ~{domain.human_bytes(image['predicted_output_bytes'])}")
        for refused in answer["refused"]:
            print(f"  refused  {refused['filename']}: {refused['error']['message']}")
        for reason in answer["reasons"]:
            print(f"  job refused: {reason['message']}")
        saved = totals.get("predicted_saved_percent")
        print(f"{totals['images']} image(s) accepted, {totals['refused']} refused; "
              f"{domain.human_bytes(totals['bytes_in'])} in, ~{domain.human_bytes(totals['predicted_bytes_out'])} out"
              + (f" (~{saved:g} % saved)" if saved is not None else "")
              + (f"; ~{totals['cpu_seconds']:.2f} CPU s, ~{totals['wall_seconds']:.1f} s wall on "
                 f"{answer['processor_slots']} processor slot(s)" if totals.get("cpu_seconds") is not None else ""))
    return EXIT_OK if answer["accepted"] else EXIT_ERROR


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imageflow", description="Command-line client of the ImageFlow API.",
                                     epilog="exit codes: 0 done, 1 request failed, 2 bad usage, "
                                            "3 some images failed, 4 --wait timed out")
    parser.add_argument("--server", default=os.environ.get("IMAGEFLOW_URL", DEFAULT_SERVER),
                        help="API base URL (env IMAGEFLOW_URL, default %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("IMAGEFLOW_API_KEY"),
                        help="API key (env IMAGEFLOW_API_KEY)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    sub = parser.add_subparsers(dest="command", required=True)

    def waiting(p):
        p.add_argument("--wait", action="store_true", help="wait until the job has finished")
        p.add_argument("--timeout", type=float, default=0, help="give up waiting after this many seconds")
        p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)

    def parallel(p):
        p.add_argument("--parallel", type=int, default=4, help="requests at a time (default %(default)s)")

    p = sub.add_parser("submit", help="upload images (or a CSV of image URLs) as a new job")
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files, or directories of them")
    p.add_argument("-r", "--recursive", action="store_true", help="include the images in subdirectories")
    p.add_argument("--resume", metavar="JOB", help="carry on uploading into this open job: files it holds are "
                                                   "not sent again")
    parallel(p)
    p.add_argument("--csv", help="a CSV of image URLs (a 'url' column, optional name/product columns)")
    p.add_argument("--preset", help="named operations: thumbnail, web, compress...")
    p.add_argument("--operations", help="operations as JSON, or @file.json")
    p.add_argument("--email", help="send the results link to this address")
    p.add_argument("--webhook-url", dest="webhook_url", help="POST job.completed to this URL")
    p.add_argument("--name", help="a name for the job")
    p.add_argument("--overlay", action="append", metavar="FILE|NAME=FILE",
                   help="an image for the overlay operations (a logo), stored once for the job; the op's "
                        "\"image\" names it by its file name, or by NAME (repeatable)")
    p.add_argument("--out", help="download the outputs into this directory (implies --wait)")
    p.add_argument("--json", action="store_true", help="print the API answer as JSON")
    waiting(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="show a job and its images")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("download", help="save a job's outputs")
    p.add_argument("job_id")
    p.add_argument("--out", default=".", help="directory (default: current)")
    waiting(p)
    parallel(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("list", help="your jobs, newest first")
    p.add_argument("--status", choices=domain.JOB_STATUSES)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("report", help="a job's CSV report (input and output URLs, status, error)")
    p.add_argument("job_id")
    p.add_argument("--out", help="file (default: stdout)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("delete", help="delete a finished job and its files")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("close", help="close an open job as it is: it takes no more files and completes "
                                     "(email, webhook) once its images are done")
    p.add_argument("job_id")
    p.add_argument("--out", help="download the outputs into this directory (implies --wait)")
    p.add_argument("--json", action="store_true")
    waiting(p)
    p.set_defaults(func=cmd_close)

    p = sub.add_parser("cancel", help="cancel a job: images not started are skipped, those in flight finish")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    waiting(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("retry", help="queue a finished job's failed images again (same operations)")
    p.add_argument("job_id")
    p.add_argument("--out", help="download the outputs into this directory (implies --wait)")
    p.add_argument("--json", action="store_true")
    waiting(p)
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("rerun", help="a new job over a job's stored originals, with other operations (no upload)")
    p.add_argument("job_id")
    p.add_argument("--only", choices=("all", "failed", "succeeded"), default="all",
                   help="which of its images (default: all)")
    p.add_argument("--preset", help="named operations (default: the job's own operations)")
    p.add_argument("--operations", help="operations as JSON, or @file.json")
    p.add_argument("--email", help="send the results link to this address")
    p.add_argument("--webhook-url", dest="webhook_url", help="POST job.completed to this URL")
    p.add_argument("--name", help="a name for the new job")
    p.add_argument("--out", help="download the outputs into this directory (implies --wait)")
    p.add_argument("--json", action="store_true")
    waiting(p)
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("estimate", help="what a job of these files would do: accepted/refused, bytes, time "
                                        "(creates nothing)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files")
    p.add_argument("--preset", help="named operations: thumbnail, web, compress...")
    p.add_argument("--operations", help="operations as JSON, or @file.json")
    p.add_argument("--json", action="store_true", help="print the API answer as JSON")
    p.set_defaults(func=cmd_estimate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imageflow`` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    args.interruption = interruption = Interruption()
    previous = signal.getsignal(signal.SIGINT)
    interruption.install()
    client = Client(args.server, args.api_key)
    try:
        return args.func(client, args)
    except Interrupted as exc:
        print(f"imageflow: interrupted: {exc}", file=sys.stderr)
        return exc.code
    except CliError as exc:
        print(f"imageflow: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("imageflow: interrupted" + (f"\n{interruption.advice}" if interruption.advice else ""),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    raise SystemExit(main())
