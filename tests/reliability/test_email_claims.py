"""The email function's per-job claim: once sent, never again; a send that died mid-way is
taken over after the lease instead of being lost."""
from __future__ import annotations

import pytest

from functions.email_notifier import main as fn

JOB = "cd" * 16


def test_claim_is_taken_once_then_marked_sent(tmp_path):
    claims = fn.FileClaims(tmp_path)
    assert claims.claim(JOB)
    claims.mark_sent(JOB)
    assert not claims.claim(JOB)


def test_a_send_in_progress_asks_for_a_retry_then_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("EMAIL_CLAIM_LEASE_SECONDS", "60")
    claims = fn.FileClaims(tmp_path)
    assert claims.claim(JOB)                       # this instance dies before mark_sent
    with pytest.raises(fn.TransientError, match="retry later"):
        claims.claim(JOB)
    now = fn.time.time()
    monkeypatch.setattr(fn.time, "time", lambda: now + 61)
    assert claims.claim(JOB)                       # the lease ran out: taken over, mailed
    claims.mark_sent(JOB)
    assert not claims.claim(JOB)


def test_claims_from_before_the_states_count_as_sent(tmp_path):
    (tmp_path / JOB).touch()
    assert not fn.FileClaims(tmp_path).claim(JOB)
    assert [p.name for p in tmp_path.iterdir()] == [JOB]  # no temp file left behind
