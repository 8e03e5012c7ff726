"""Direct uploads closed at once (issue 22): ask for N upload targets, PUT every file, close
immediately, wait for the job, count the images it kept. Against a running stack:

    ./scripts.sh up &                          # or ./scripts.sh up --emulators
    python -m bench.close_race --base-url http://127.0.0.1:8080 --rounds 20 --files 20

Prints one line per round and the total kept; exits 1 if any image was lost. With two CPU
burners running (``for i in 1 2; do (while :; do :; done) & done``) this is the issue's
"loaded machine" run."""
from __future__ import annotations

import argparse
import io
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image


def _png(index: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64 + index, 48), (index * 7 % 256, 80, 160)).save(buf, "PNG")
    return buf.getvalue()


def wait_finished(base_url: str, job_id: str, timeout: float, headers: dict) -> dict:
    end = time.monotonic() + timeout
    while True:
        job = requests.get(f"{base_url}/api/v1/jobs/{job_id}", headers=headers, timeout=30).json()
        if job["status"] not in ("open", "queued", "processing") or time.monotonic() > end:
            return job
        time.sleep(0.3)


def one_round(base_url: str, files: int, *, headers: dict | None = None, timeout: float = 180.0,
              finish: str = "close") -> dict:
    """One client doing what docs/api.md says: targets, PUT all (in parallel), close at once
    (``finish="cancel"``: cancel at once, which closes the job too). Returns the finished job document."""
    headers = headers or {}
    job = requests.post(f"{base_url}/api/v1/jobs", json={"open": True, "preset": "thumbnail"},
                        headers=headers, timeout=30).json()
    data = {f"photo-{i:03d}.png": _png(i) for i in range(files)}
    answer = requests.post(job["links"]["files"], headers=headers, timeout=60, json={"files": [
        {"filename": name, "bytes": len(body), "content_type": "image/png"} for name, body in data.items()]})
    answer.raise_for_status()

    def put(target):
        response = requests.put(target["url"], data=data[target["filename"]], headers=target["headers"], timeout=60)
        response.raise_for_status()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, answer.json()["uploads"]))
    closed = requests.post(f"{base_url}/api/v1/jobs/{job['job_id']}/{finish}", headers=headers, timeout=120)
    closed.raise_for_status()
    return wait_finished(base_url, job["job_id"], timeout, headers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    kept = 0
    for number in range(args.rounds):
        job = one_round(args.base_url, args.files, headers=headers)
        kept += job["succeeded"]
        print(f"round {number + 1}: {job['status']} {job['succeeded']}/{args.files} succeeded, total {job['total']}",
              flush=True)
    print(f"kept {kept} of {args.rounds * args.files} images")
    return 0 if kept == args.rounds * args.files else 1


if __name__ == "__main__":
    sys.exit(main())
