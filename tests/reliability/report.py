"""Render docs/reliability.md from the reliability suites' results (.test-artifacts/reliability.json).

    ./scripts.sh test tests/reliability                 # default subset (what CI runs)
    ./scripts.sh test --slow tests/reliability          # plus the long runs
    .venv/bin/python -m tests.reliability.report        # writes docs/reliability.md

The document only says what a run recorded: each check's outcome, what held, its figures,
and when, where and on which commit it ran. Never edit the generated file by hand.

``--baseline FILE`` (repeatable) adds a before/after table: the figures a check recorded in a run
on an earlier commit (a reliability.json kept in tests/reliability/baselines/) beside this run's.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = REPO_ROOT / ".test-artifacts" / "reliability.json"
OUTPUT = REPO_ROOT / "docs" / "reliability.md"
ORDER = ["Fault injection (local stack)", "Fault injection (GCP emulators)", "Load", "Abuse", "Budgets"]
OUTCOME = {"passed": "held", "failed": "**FAILED**", "error": "**ERROR**", "skipped": "not run",
           "xfailed": "**known failure**", "xpassed": "passed (unexpectedly)"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _series_table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    columns.sort(key=lambda c: not c.startswith("t "))  # time first (the results file sorts keys)
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(_value(row.get(c, ""))) for c in columns) + " |" for row in rows]
    return lines


def _budgets() -> list[tuple[str, str, str]]:
    """Each budget with its setting and default, read from the code (imageflow.settings, engine.limits)."""
    from imageflow.engine.limits import Limits
    from imageflow.safe_http import CHUNK_BYTES
    from imageflow.settings import Settings

    s, limits, mib = Settings(), Limits(), 1024 * 1024
    return [
        ("multipart request body (any route, chunked too)", "MAX_REQUEST_BYTES", f"{s.max_request_bytes // mib} MiB"),
        ("any other request body (JSON, PATCH)", "MAX_JSON_BYTES", f"{s.max_json_bytes // mib} MiB"),
        ("one file", "MAX_UPLOAD_BYTES", f"{s.max_upload_bytes // mib} MiB"),
        ("uploaded files per job; URLs per job (URL lists stop parsing past it)", "MAX_FILES_PER_JOB, MAX_URLS_PER_JOB",
         f"{s.max_files_per_job}, {s.max_urls_per_job}"),
        ("request headers (else 408)", "REQUEST_HEADER_TIMEOUT", "10 s"),
        ("request body: per read, and in all with the minimum rate (else 408)",
         "REQUEST_BODY_TIMEOUT, REQUEST_BODY_MIN_BYTES_PER_SECOND",
         f"{s.request_body_timeout_seconds:g} s, {s.request_body_min_bytes_per_second // 1024} KiB/s"),
        ("error details listed", "(code)", "20, then details_omitted"),
        ("one frame, an operation's result, a watermark text layer", "MAX_IMAGE_PIXELS",
         f"{s.max_image_pixels / 1e6:g} MP"),
        ("everything a render holds at once (frames, variants)", "(engine Limits)",
         f"{limits.max_animation_pixels / 1e6:g} MP"),
        ("a render's time", "RENDER_TIMEOUT_SECONDS", f"{s.render_timeout_seconds:g} s"),
        ("a render worker's resident memory (one per PROCESSOR_CONCURRENCY slot)", "PROCESSOR_WORKER_MEMORY_MB",
         f"{s.processor_worker_memory_mb} MB"),
        ("deliveries of any message before its dead-letter topic", "MAX_DELIVERY_ATTEMPTS",
         str(s.max_delivery_attempts)),
        ("wait before a nacked message comes back", "RETRY_MIN_BACKOFF_SECONDS, RETRY_MAX_BACKOFF_SECONDS",
         f"{s.retry_min_backoff_seconds:g} s doubling to {s.retry_max_backoff_seconds:g} s"),
        ("a URL download (streamed to storage; past the size it is aborted and nothing is kept)",
         "FETCH_MAX_BYTES, FETCH_TIMEOUT_SECONDS", f"{s.fetch_max_bytes // mib} MiB, {s.fetch_timeout_seconds:g} s"),
        ("URL download bytes in one processor's memory at once, all downloads together (reserved per "
         f"{CHUNK_BYTES // 1024} KiB chunk; a download waits for budget, never fails for it)",
         "FETCH_MAX_IN_FLIGHT_BYTES", f"{s.fetch_max_in_flight_bytes // mib} MiB"),
    ]


def _baseline_section(checks: list[dict], baselines: dict[str, dict]) -> list[str]:
    """Each check that a baseline run recorded too: its figures then and now."""
    out = []
    for c in checks:
        before = baselines.get(c["id"])
        if not before:
            continue
        names = [k for k in dict.fromkeys([*before["figures"], *c["figures"]])
                 if not isinstance(before["figures"].get(k, c["figures"].get(k)), list)]
        out += ["", f"### {c['title']}", "",
                f"- Before: commit `{before['commit']}`, {before['run_at']}, `{before['command']}`: "
                f"*{OUTCOME.get(before['outcome'], before['outcome'])}*"
                + (f" ({_cell(before['failure'])})" if before.get("failure") else "") + ".",
                f"- After: commit `{c['commit']}`, {c['run_at']}: *{OUTCOME.get(c['outcome'], c['outcome'])}*.", ""]
        if before.get("note"):
            out += [before["note"], ""]
        out += ["| Figure | Before | After |", "|---|---|---|"]
        out += [f"| {_cell(k)} | {_cell(_value(before['figures'].get(k, '')))} | "
                f"{_cell(_value(c['figures'].get(k, '')))} |" for k in names]
    return ["", "## Before and after (baseline runs)"] + out if out else []


def render(data: dict, baselines: dict[str, dict] | None = None, report_command: str = "") -> str:
    checks = [c for c in data.get("checks", {}).values() if c["suite"] in ORDER]
    checks.sort(key=lambda c: (ORDER.index(c["suite"]), c["id"]))
    runs: dict[tuple, list[str]] = {}
    for c in checks:
        if c["outcome"] != "skipped":
            runs.setdefault((c["commit"], c["machine"], c["command"]), []).append(c["run_at"])
    commands = list(dict.fromkeys(command for _, _, command in sorted(runs, key=lambda k: min(runs[k]))))
    out = ["# Reliability: what was tried and what held", "",
           "Generated by `python -m tests.reliability.report` from the results the reliability suites "
           "(`tests/reliability/`) recorded in `.test-artifacts/reliability.json`. Do not edit by hand: run the "
           "suites and regenerate.", "",
           "This version comes from these runs (from the repository root, `pytest` being "
           "`.venv/bin/python -m pytest`), then the report:", ""]
    out += [f"    {command}" for command in commands]
    out += [f"    {report_command or '.venv/bin/python -m tests.reliability.report'}", "",
            "To regenerate:", "",
           "- Default subset (CI): `./scripts.sh test tests/reliability`",
           "- With the long runs: `./scripts.sh test --slow tests/reliability` (sets `IMAGEFLOW_SLOW_TESTS=1`)",
           "- Load run on its own: `.venv/bin/python -m bench.load --images 2000`", "",
           "Each check runs the real processes (`devtools.stack`) on 127.0.0.1 and checks what a user would "
           "see: every image back exactly once (succeeded with a correct output, or failed with a reason), the job "
           "complete, one email, nothing orphaned or duplicated in storage.", "",
           "## Summary", "", "| Suite | Check | Result | Time (s) | Ran |", "|---|---|---|---|---|"]
    for c in checks:
        slow = " (slow)" if c.get("slow") else ""
        out.append(f"| {c['suite']} | {_cell(c['title'])}{slow} | {OUTCOME.get(c['outcome'], c['outcome'])} | "
                   f"{c['duration_s']:g} | {c['run_at']} |")
    out += ["", "## Budgets in force", "", "The limits every input is held to (defaults; each is a setting):", "",
            "| Budget | Setting | Default |", "|---|---|---|"]
    out += [f"| {what} | `{name}` | {value} |" for what, name, value in _budgets()]
    out += ["", "Runs recorded here:", ""]
    for (commit, machine, command), times in sorted(runs.items(), key=lambda item: min(item[1])):
        span = min(times) if min(times) == max(times) else f"{min(times)} to {max(times)[-9:]}"
        out.append(f"- {span}, commit `{commit}`, {machine}: `{command}` ({len(times)} checks)")
    out += _baseline_section(checks, baselines or {})
    for suite in ORDER:
        members = [c for c in checks if c["suite"] == suite]
        if not members:
            continue
        out += ["", f"## {suite}"]
        for c in members:
            out += ["", f"### {c['title']}", "", f"*{OUTCOME.get(c['outcome'], c['outcome'])}* — `{c['id']}`, "
                    f"{c['duration_s']:g} s, {c['run_at']}, commit `{c['commit']}`", ""]
            if c["tried"]:
                out += [f"**Tried:** {c['tried']}", ""]
            if c["outcome"] in ("failed", "error", "xfailed", "skipped") and c.get("failure"):
                out += [f"**What did not hold:** {_cell(c['failure'])}", ""]
            if c["held"]:
                out += ["**Held:**", ""] + [f"- {h}" for h in c["held"]] + [""]
            figures = {k: v for k, v in c["figures"].items() if not isinstance(v, list)}
            if figures:
                out += ["| Figure | Value |", "|---|---|"]
                out += [f"| {_cell(k)} | {_cell(_value(v))} |" for k, v in figures.items()] + [""]
            for name, rows in c["figures"].items():
                if isinstance(rows, list) and rows and isinstance(rows[0], dict):
                    out += [f"**{name}**", ""] + _series_table(rows) + [""]
    return "\n".join(out).rstrip() + "\n"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=ARTIFACT)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="a reliability.json recorded on an earlier commit, shown beside this run")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        print(f"no results at {args.input}: run ./scripts.sh test tests/reliability first", file=sys.stderr)
        return 1
    baselines: dict[str, dict] = {}
    for path in args.baseline:
        baselines.update(json.loads(path.read_text()).get("checks", {}))
    command = " ".join([".venv/bin/python -m tests.reliability.report",
                        *(f"--baseline {_relative(path)}" for path in args.baseline)])
    args.output.write_text(render(json.loads(args.input.read_text()), baselines, command))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
