"""The ``imageflow`` command against the running local stack (keys off: the local default)."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from imageflow_cli import main
from tests.e2e.conftest import make_image
from tests.http_servers import ImageServer, png

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images():
    server = ImageServer({"/a.png": (png((300, 200)), "image/png")})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack_options():
    return {"env": {"PROGRESS_FLUSH_SECONDS": "0.2", "ACK_DEADLINE_SECONDS": "10", "FETCH_ALLOW_CIDRS": "127.0.0.1/32",
                    "FETCH_TIMEOUT_SECONDS": "3"}}


def run(stack_or_url, *args, timeout=120):
    """Run the command as a user would, in a child process; returns (exit code, stdout, stderr)."""
    server = stack_or_url if isinstance(stack_or_url, str) else stack_or_url.base_url
    proc = subprocess.run([sys.executable, "-m", "imageflow_cli", "--server", server, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_command_is_declared_in_the_project():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["imageflow"] == "imageflow_cli:main"


def test_submit_wait_and_download_with_progress(stack, tmp_path):
    files = []
    for name, fmt, size in (("beach.jpg", "JPEG", (1600, 1200)), ("logo.png", "PNG", (400, 300))):
        path = tmp_path / name
        path.write_bytes(make_image(fmt, size))
        files.append(str(path))
    out = tmp_path / "out"
    code, stdout, stderr = run(stack, "submit", *files, "--preset", "web", "--wait", "--out", str(out))
    assert code == 0, stderr
    job_id = stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert "upload" in stderr and "processing" in stderr and "100%" in stderr        # progress bars
    assert f"job {job_id} completed: 2 succeeded, 0 failed" in stderr
    saved = sorted(p.name for p in out.iterdir())
    assert len(saved) == 2 and saved[0].startswith("beach") and saved[1].startswith("logo")
    with Image.open(out / saved[0]) as im:
        assert max(im.size) <= 1600

    code, stdout, _ = run(stack, "status", job_id)
    assert code == 0 and f"job {job_id}: completed, 2/2 succeeded" in stdout and "beach.jpg" in stdout

    again = tmp_path / "again"
    code, _, stderr = run(stack, "-q", "download", job_id, "--out", str(again))
    assert code == 0 and stderr == "" and sorted(p.name for p in again.iterdir()) == saved


def test_submit_a_csv_of_urls_reports_failed_images_with_exit_code_3(stack, images, tmp_path):
    urls = tmp_path / "urls.csv"
    urls.write_text(f"url,name\n{images.url('/a.png')},hero\n{images.url('/missing.png')},gone\n"
                    "http://10.0.0.1/x.png,private\n")
    code, stdout, stderr = run(stack, "submit", "--csv", str(urls), "--operations",
                               '[{"op": "resize", "width": 100}]', "--wait", "--out", str(tmp_path / "o"))
    assert code == 3, stderr
    assert "1 succeeded, 2 failed" in stderr and "404" in stderr and "10.0.0.1" in stderr
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["hero.png"]
    job_id = stdout.strip()
    code, report, _ = run(stack, "report", job_id)
    assert code == 0 and report.count("\n") == 4 and '"gone"' in report


def test_clear_errors_and_exit_codes(stack, tmp_path):
    code, _, stderr = run(stack, "status", "0" * 32)
    assert code == 1 and "no job with id" in stderr and "HTTP 404" in stderr
    code, _, stderr = run(stack, "submit", str(tmp_path / "nope.jpg"))
    assert code == 2 and "no such file" in stderr
    code, _, stderr = run(stack, "submit")
    assert code == 2 and "--csv" in stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    code, _, stderr = run(stack, "submit", str(bad))
    assert code == 1 and "none of the files could be accepted" in stderr and "HTTP 415" in stderr
    code, _, stderr = run(stack, "submit", str(bad), "--operations", "{not json")
    assert code == 2 and "not valid JSON" in stderr
    code, _, stderr = run("http://127.0.0.1:9", "status", "0" * 32)
    assert code == 1 and "cannot reach ImageFlow" in stderr


def test_wait_times_out_with_exit_code_4(stack, images, tmp_path, capsys):
    urls = tmp_path / "urls.csv"
    urls.write_text(images.url("/slow") + "\n")
    code = main(["--server", stack.base_url, "-q", "submit", "--csv", str(urls), "--wait", "--timeout", "0.5"])
    assert code == 4
    assert "check later with: imageflow status" in capsys.readouterr().err


def test_submit_a_directory_recursively_in_parallel_then_resume(stack, tmp_path):
    """A folder of photos goes into an open job several requests at a time; an interrupted
    upload carries on with --resume and sends only the files the job does not hold."""
    shoot = tmp_path / "shoot"
    for n in range(12):
        folder = shoot / ("day1" if n < 6 else "day2/raw")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{n:02d}.jpg").write_bytes(make_image("JPEG", (200 + n, 150)))
    (shoot / "notes.txt").write_text("not a photo")
    code, stdout, stderr = run(stack, "submit", str(shoot), "--recursive", "--parallel", "4", "--preset",
                               "thumbnail", "--wait", "--out", str(tmp_path / "out"))
    assert code == 0, stderr
    # One bar counts the bytes sent (all of them) and the files accepted.
    size = sum(p.stat().st_size for p in shoot.rglob("*.jpg")) / 1024
    assert "upload: 100%" in stderr and f"{size:.1f}k/{size:.1f}k" in stderr and "12/12 files" in stderr
    assert f"job {stdout.strip()} completed: 12 succeeded, 0 failed" in stderr
    assert len(list((tmp_path / "out").iterdir())) == 12

    # An open job that already holds 5 of the files: --resume sends the other 7.
    import requests
    job = requests.post(f"{stack.base_url}/api/v1/jobs", json={"open": True, "preset": "thumbnail"}, timeout=10).json()
    held = sorted(shoot.rglob("*.jpg"))[:5]
    files = [("files", (p.name, p.read_bytes())) for p in held]
    assert requests.post(job["links"]["files"], files=files, timeout=30).status_code == 200
    code, stdout, stderr = run(stack, "submit", str(shoot), "-r", "--resume", job["job_id"], "--wait")
    assert code == 0, stderr
    assert "5 file(s) already there, 7 to upload" in stderr and "12 image(s), 7 uploaded now" in stderr
    names = sorted(i["filename"] for i in requests.get(f"{stack.base_url}/api/v1/jobs/{job['job_id']}",
                                                       timeout=10).json()["images"])
    assert names == sorted(p.name for p in shoot.rglob("*.jpg"))


# -- --overlay (issue 17): the logo goes with the job, in both ways the CLI creates one ----
BLUE = (0, 0, 255)


def _corner_and_centre(path: Path) -> tuple[tuple, tuple]:
    """The pixel inside a 12 px logo placed northeast with a 2 px margin, and the centre."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        return rgb.getpixel((rgb.width - 8, 8)), rgb.getpixel((rgb.width // 2, rgb.height // 2))


def _is_blue(pixel) -> bool:
    return pixel[2] > 200 and pixel[0] < 60 and pixel[1] < 60  # JPEG keeps it close, not exact


def test_submit_a_folder_with_an_overlay_named_on_the_command_line(stack, tmp_path):
    """The big flow: the logo is sent when the open job is opened (multipart), then the photos
    follow in parallel; every output carries it. NAME=FILE uploads it under the op's name."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(5):
        (photos / f"p{n}.jpg").write_bytes(make_image("JPEG", (200, 150), color=(128, 128, 128)))
    logo = tmp_path / "brand-final-v3.png"
    Image.new("RGBA", (12, 12), BLUE + (255,)).save(logo, "PNG")
    ops = '[{"op": "overlay", "image": "logo", "position": "northeast", "margin": 2}]'
    code, stdout, stderr = run(stack, "submit", str(photos), "--parallel", "3", "--overlay", f"logo={logo}",
                               "--operations", ops, "--wait", "--out", str(tmp_path / "out"))
    assert code == 0, stderr
    assert f"job {stdout.strip()} completed: 5 succeeded, 0 failed" in stderr
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in outputs] == [f"p{n}.jpg" for n in range(5)]   # the logo is not an image of the job
    for path in outputs:
        corner, centre = _corner_and_centre(path)
        assert _is_blue(corner) and not _is_blue(centre), (path.name, corner, centre)


def test_submit_a_csv_with_an_overlay_file(stack, images, tmp_path):
    """The one-request flow: the CSV of URLs and the logo in one multipart request; the op
    names the logo by its file name."""
    urls = tmp_path / "urls.csv"
    urls.write_text(f"url,name\n{images.url('/a.png')},hero\n")
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (12, 12), BLUE + (255,)).save(logo, "PNG")
    code, stdout, stderr = run(stack, "submit", "--csv", str(urls), "--overlay", str(logo), "--operations",
                               '[{"op": "overlay", "image": "logo.png", "position": "northeast", "margin": 2}]',
                               "--wait", "--out", str(tmp_path / "o"))
    assert code == 0, stderr
    corner, centre = _corner_and_centre(tmp_path / "o" / "hero.png")
    assert corner == BLUE and centre == (200, 40, 40)


def test_overlay_mistakes_are_clear(stack, tmp_path):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(make_image("JPEG", (60, 40)))
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (8, 8), BLUE + (255,)).save(logo, "PNG")
    ops = '[{"op": "overlay", "image": "logo.png"}]'
    code, _, stderr = run(stack, "submit", str(photo), "--overlay", str(tmp_path / "nope.png"), "--operations", ops)
    assert code == 2 and "--overlay: no such file" in stderr
    code, _, stderr = run(stack, "submit", str(photo), "--overlay", str(logo), "--overlay", f"logo.png={photo}",
                          "--operations", ops)
    assert code == 2 and "two overlays named 'logo.png'" in stderr
    # The server's own check reaches the user: a logo under a name no op uses, before any photo is sent.
    code, stdout, stderr = run(stack, "submit", str(photo), "--overlay", f"brand.png={logo}", "--operations", ops)
    assert code == 1 and stdout == ""
    assert "'logo.png' was not sent" in stderr and "HTTP 422" in stderr


# -- Ctrl-C during an upload (issue 25) ------------------------------------------------------
# The CLI uploads through a proxy whose uplink stalls after the first two batches: the upload is
# then in flight for as long as the test wants, without any timing. SHOOT_FILES noise PNGs of
# ~120 KB go 8 to a request (BATCH_FILES), --parallel 2.
SHOOT_FILES = 40


def _shoot(tmp_path: Path, large: int | None = None) -> list[Path]:
    """The shoot; file number ``large`` is a 12 MP photo (~9 MB), more than the sender's socket
    buffer (at most 4 MB here) and the proxy's hold: its request is still being sent at Ctrl-C."""
    from tests.http_servers import noise_png

    shoot = tmp_path / "shoot"
    shoot.mkdir()
    for n in range(SHOOT_FILES):
        size = (1700, 1700) if n == large else (200, 200)
        (shoot / f"img{n:03d}.png").write_bytes(noise_png(size, seed=n))
    return sorted(shoot.iterdir())


def _job(stack, job_id: str) -> dict:
    import requests
    return requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}", timeout=10).json()


def _wait_until(condition, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def _interrupt(proc) -> tuple[int, float]:
    """Ctrl-C the CLI: its exit code and the seconds it took to exit (killed past 15 s)."""
    try:
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = proc.wait(timeout=15)
        return code, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stalled_upload(stack, tmp_path, files: list[Path], parallel: int = 2, trickle: int = 0):
    """The CLI uploading the shoot into a new job through a stalling proxy, stuck after the first
    two batches were acknowledged: (process, proxy, job id, stderr file, the CLI's arguments)."""
    from imageflow_cli import BATCH_FILES
    from tests.http_servers import StallingProxy

    # two whole batches, then less than one more: the two in flight next never finish
    budget = sum(p.stat().st_size for p in files[:2 * BATCH_FILES]) + 100_000
    proxy = StallingProxy(stack.port, budget, trickle)
    args = ["--server", proxy.base_url, "submit", str(files[0].parent), "--parallel", str(parallel),
            "--preset", "thumbnail", "--wait"]
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "imageflow_cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=err, text=True)
    job_id = proc.stdout.readline().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id), stderr.read_text()
    # the first files are acknowledged (in the job) and the uplink has stalled
    _wait_until(lambda: _job(stack, job_id)["total"] >= 2 * BATCH_FILES and proxy.budget <= 0,
                "the first batches to land and the upload to stall")
    return proc, proxy, job_id, stderr, args


def test_ctrl_c_stops_the_upload_and_prints_the_resume_command(stack, tmp_path):
    import shlex
    from collections import Counter

    from imageflow_cli import BATCH_FILES

    # One request at a time: the third, with the large photo, is the one in flight at Ctrl-C,
    # crawling at ~1.3 MB/s (7 s for its 9 MB): the CLI cuts it rather than wait.
    files = _shoot(tmp_path, large=2 * BATCH_FILES)
    proc, proxy, job_id, stderr, args = _stalled_upload(stack, tmp_path, files, parallel=1, trickle=65536)
    code, elapsed = _interrupt(proc)
    output = stderr.read_text()
    print(f"first Ctrl-C to exit: {elapsed:.2f} s")
    assert code == 130, output
    assert elapsed < 15, elapsed   # the design: STOP_GRACE_SECONDS (2 s), then the request is cut
    assert "stopping: no new files" in output
    assert f"{2 * BATCH_FILES} of {SHOOT_FILES} file(s) sent now; 1 request(s) cut short" in output, output
    expected = "imageflow " + shlex.join([*args, "--resume", job_id])
    assert f"\n  {expected}\n" in output, output
    assert f"imageflow close {job_id}" in output and f"imageflow cancel {job_id}" in output

    proxy.release()  # the stalled requests are cut off at the server: their files never join
    job = _job(stack, job_id)
    assert job["status"] == "open"
    assert 0 < job["total"] < SHOOT_FILES, job["total"]
    held = job["total"]

    # The printed command, run as printed (through the proxy, now passing everything).
    resumed = subprocess.run([sys.executable, "-m", "imageflow_cli", *shlex.split(expected)[1:]], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{held} file(s) already there, {SHOOT_FILES - held} to upload" in resumed.stderr
    assert f"job {job_id} completed: {SHOOT_FILES} succeeded, 0 failed" in resumed.stderr
    import requests
    images = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}/images?limit=1000", timeout=10).json()["images"]
    assert Counter(i["filename"] for i in images) == Counter(p.name for p in files)   # each exactly once
    proxy.stop()


def test_ctrl_c_mid_way_through_a_large_file_and_the_resume_sends_only_the_rest(stack, tmp_path):
    """A 19 MB photo (past LARGE_FILE_BYTES: sent to its upload link in 8 MiB chunks, resumably) and two small
    ones. The uplink crawls after the first chunk; Ctrl-C cuts the second. The printed command carries the
    large file on from the last byte the server confirmed (its upload link kept in the tracker file), so the
    bytes sent by the resume are the rest, not the whole file; the job ends with each photo once, whole."""
    import json
    import shlex

    import requests

    from imageflow_cli import CHUNK_BYTES, LARGE_FILE_BYTES
    from tests.http_servers import StallingProxy, noise_png

    shoot = tmp_path / "shoot"
    shoot.mkdir()
    (shoot / "big.png").write_bytes(noise_png((2500, 2500), seed=7))
    for n in range(2):
        (shoot / f"small{n}.png").write_bytes(noise_png((200, 200), seed=n))
    big = (shoot / "big.png").read_bytes()
    assert len(big) >= LARGE_FILE_BYTES
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proxy = StallingProxy(stack.port, CHUNK_BYTES + 2_000_000, trickle=65536)
    args = ["--server", proxy.base_url, "submit", str(shoot), "--parallel", "1", "--preset", "thumbnail", "--wait"]
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "imageflow_cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=err, text=True, env=env)
    try:
        job_id = proc.stdout.readline().strip()
        assert re.fullmatch(r"[0-9a-f]{32}", job_id), stderr.read_text()
        tracker = tmp_path / "cache" / "imageflow" / "uploads" / f"{job_id}.json"

        def confirmed() -> int:
            if not tracker.exists() or not json.loads(tracker.read_text()):
                return 0
            [upload] = json.loads(tracker.read_text()).values()
            status = requests.put(upload["url"].replace(proxy.base_url, stack.base_url), timeout=10,
                                  headers={"Content-Range": f"bytes */{len(big)}"})
            return int(status.headers.get("Range", "bytes=0--1").rsplit("-", 1)[1]) + 1

        _wait_until(lambda: confirmed() >= CHUNK_BYTES and proxy.budget <= 0, "the first chunk to be confirmed")
        code, elapsed = _interrupt(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = stderr.read_text()
    print(f"Ctrl-C during a large file to exit: {elapsed:.2f} s")
    assert code == 130 and elapsed < 15, output
    expected = "imageflow " + shlex.join([*args, "--resume", job_id])
    assert f"\n  {expected}\n" in output, output
    proxy.release()  # the cut chunk's connection closes: the server keeps what of it arrived
    before = proxy.forwarded
    resumed = subprocess.run([sys.executable, "-m", "imageflow_cli", *shlex.split(expected)[1:]], cwd=REPO,
                             capture_output=True, text=True, timeout=300, env=env)
    sent = proxy.forwarded - before
    proxy.stop()
    assert resumed.returncode == 0, resumed.stderr
    carried = re.search(r"big\.png: carrying on from byte ([\d,]+) of ([\d,]+)", resumed.stderr)
    assert carried and int(carried[2].replace(",", "")) == len(big), resumed.stderr
    kept = int(carried[1].replace(",", ""))
    print(f"resume sent {sent:,} bytes for a {len(big):,}-byte file of which {kept:,} were kept")
    assert CHUNK_BYTES <= kept < len(big)
    assert sent < len(big) - kept + 1_000_000, (sent, kept)   # the rest, the small files, the API calls
    assert f"job {job_id} completed: 3 succeeded, 0 failed" in resumed.stderr, resumed.stderr
    images = requests.get(f"{stack.base_url}/api/v1/jobs/{job_id}/images", timeout=10).json()["images"]
    assert sorted(i["filename"] for i in images) == ["big.png", "small0.png", "small1.png"]   # each once
    [stored] = [i for i in images if i["filename"] == "big.png"]
    assert requests.get(stored["input_url"], timeout=30).content == big
    assert not tracker.exists()  # done: the tracker file is gone


def test_a_second_ctrl_c_quits_at_once_and_close_finishes_the_job(stack, tmp_path):

    files = _shoot(tmp_path)
    proc, proxy, job_id, stderr, _args = _stalled_upload(stack, tmp_path, files)
    try:
        proc.send_signal(signal.SIGINT)
        _wait_until(lambda: "stopping: no new files" in stderr.read_text(), "the first Ctrl-C to be heard", 15)
        code, elapsed = _interrupt(proc)
    finally:
        proxy.stop()
    output = stderr.read_text()
    print(f"second Ctrl-C to exit: {elapsed:.2f} s")
    assert code == 130, output
    assert "interrupted again, quitting now" in output and "file(s) sent now" not in output
    assert f"--resume {job_id}\n" in output
    held = _job(stack, job_id)["total"]
    assert 0 < held < SHOOT_FILES

    # The job is left open; `imageflow close` finishes it with what it holds.
    code, stdout, err = run(stack, "close", job_id, "--wait")
    assert code == 0, err
    assert stdout.strip() == job_id and f"job {job_id}: closed with {held} image(s)" in err
    assert f"job {job_id} completed: {held} succeeded, 0 failed" in err
