"""Screenshots of the web page, taken in headless Chromium against a real local stack:

    python -m devtools.screenshots docs/screenshots [--photos 300]

starts the whole system on free ports (a fresh data dir), then with Debian's Chromium
(frontend/e2e/jobpage.mjs, playwright-core): the upload page on a desktop and on a phone,
a setting refused before upload, the job page and the lightbox, the contact sheet of a named
job with its lightbox zoomed to 100 % and the phone's swipe slider (frontend/e2e/contact_sheet.mjs),
and the job page of a 300-photo job chosen through the page's file input, scrolled from top to
bottom (``--skip-big`` leaves that one out). It writes
JPEGs (1280x800 or 375x800, quality 80) and README.md with what the job page downloaded.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from devtools.browser_scripts import all_images, big_job_photos, finished_named_job, landscape, missing, run_script

STACK_ENV = {"PROGRESS_FLUSH_SECONDS": "0.3", "ACK_DEADLINE_SECONDS": "10", "PROCESSOR_CONCURRENCY": "2"}


def kb(n: float) -> str:
    return f"{n / 1024:,.0f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MB"


def readme(big: dict, inputs: int, outputs: int, seconds: float) -> str:
    total = big["total"]
    return f"""# Screenshots of the web page

Taken by `python -m devtools.screenshots docs/screenshots` (headless Debian Chromium against the
local stack started on free ports, two processor threads; {seconds:.0f} s for the whole run).

| file | what it shows |
|---|---|
| `upload.jpg` | the upload page on a desktop (1280x800), three photos chosen |
| `upload-phone.jpg` | the same page on a phone (375x800, touch): no "drag" wording |
| `upload-error-before-upload.jpg` | a background colour "blurple" refused by `POST /api/v1/operations/validate`, beside its field, before any photo was sent |
| `job.jpg` | the job page of those three photos, as a contact sheet |
| `lightbox.jpg` | the lightbox: before and after side by side, their sizes and the saving |
| `contact-sheet.jpg` | the contact sheet of a named job of 24 photos on a 1440x900 desktop: 8 a row, by name, previews only |
| `lightbox-previews.jpg` | the photo opened from the sheet with the keyboard (arrows, Enter): the previews, before and after |
| `lightbox-zoomed.jpg` | the same zoomed to 100 % (Z) and panned: only now the full-size result is loaded |
| `lightbox-phone-slider.jpg` | on a phone (390x844, touch): before and after compared with a swipe slider |
| `job-{total}.jpg` | the job page of a {total}-photo job chosen through the page's file input, first screen |
| `job-{total}-grid.jpg` | its grid of cards (previews, sizes, saving, Compare and Download) |
| `job-{total}-placeholders.jpg` | further down on a slow network (1.5 s latency): BlurHash placeholders until the previews come |
| `job-{total}-end.jpg` | the same job page scrolled to the end |

## What the {total}-photo job page downloaded

Counted by Chromium (DevTools protocol, bytes on the wire: headers plus compressed bodies), from
the moment the page moved to `/jobs/<id>` to the end of the scroll:

| figure | value |
|---|---|
| photos (800x600 JPEG, preset "web": WebP) | {total}: {kb(inputs)} of originals, {kb(outputs)} of results |
| upload through the page | {big['upload_requests']} requests, {big['upload_ms'] / 1000:.1f} s |
| upload start to all done | {big['done_ms'] / 1000:.1f} s |
| polling while it ran (job view and pages of `/images`) | {big['polls']} requests ({big['polls_not_modified']} answered 304), {kb(big['poll_bytes'])} |
| first screen | {big['first_view_cards']} cards in the DOM, {kb(big['first_view_picture_bytes'])} of pictures; {kb(big['first_view_bytes'])} in all since the page opened |
| scrolled top to bottom | {big['scroll_steps']} screens, at most {big['most_cards_in_dom']} cards in the DOM at once, {big['cards_seen']} cards seen |
| previews loaded | {big['preview_requests']} requests, {kb(big['preview_bytes'])} |
| originals or full results loaded as thumbnails | {big['full_picture_requests']} |
| **all the job page downloaded** | **{kb(big['job_page_bytes'])}** in {big['job_page_requests']} requests, against {kb(inputs + outputs)} of originals and results |
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--photos", type=int, default=300, help="photos in the big job (default 300)")
    parser.add_argument("--skip-big", action="store_true",
                        help="stop after the tour and the contact sheet (README.md is left as it is)")
    args = parser.parse_args(argv)
    reason = missing()
    if reason:
        parser.error(reason)
    from devtools.stack import Stack

    outdir = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imageflow-screenshots-") as tmp:
        tmp = Path(tmp)
        stack = Stack.on_free_ports(tmp / "data", env=STACK_ENV, python=sys.executable)
        stack.start()
        try:
            photos = [landscape(tmp / name, seed, (1600, 1200)) for seed, name in
                      enumerate(["harbour.jpg", "meadow.jpg", "dunes.jpg"], start=7)]
            run_script("jobpage.mjs", "tour", "--base-url", stack.base_url, "--photos", ",".join(map(str, photos)),
                       "--shots", str(outdir), timeout=900)
            shoot = [landscape(tmp / f"IMG_{n:04d}.jpg", 20 + n, (2400, 1600)) for n in range(1, 25)]
            named = finished_named_job(stack.base_url, shoot, "Harbour, spring shoot", [{"op": "format", "format": "webp"}])
            sheet = run_script("contact_sheet.mjs", "--base-url", stack.base_url, "--job-id", named,
                               "--name", "Harbour, spring shoot", "--shots", str(outdir), timeout=900)
            print(json.dumps(sheet))
            if args.skip_big:
                return 0
            big_job_photos(tmp / "big", args.photos)
            big = run_script("jobpage.mjs", "bigjob", "--base-url", stack.base_url, "--files", str(tmp / "big"),
                             "--total", str(args.photos), "--shots", str(outdir), timeout=900)
            images = all_images(stack.base_url, big["job_id"])
        finally:
            stack.stop()
    inputs = sum(image["input_bytes"] or 0 for image in images)
    outputs = sum(image["bytes"] or 0 for image in images)
    (outdir / "README.md").write_text(readme(big, inputs, outputs, time.monotonic() - started))
    print(json.dumps({**big, "input_bytes": inputs, "output_bytes": outputs}, indent=2))
    print(f"screenshots and README.md in {outdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
