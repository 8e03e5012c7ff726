"""The page's component tests run against a copy of GET /api/v1/operations
(frontend/src/test/fixtures/operations.json): it must be what the server answers today, or the
tests check the page against a server that no longer exists (a new input format went unnoticed)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_frontend_fixture_is_the_servers_answer():
    spec = importlib.util.spec_from_file_location("dump_operations", ROOT / "frontend/scripts/dump_operations.py")
    dump = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dump)
    assert dump.TARGET.read_text(encoding="utf-8") == dump.fixture_text(), \
        "stale fixture: run `cd frontend && npm run fixture` and commit it"
